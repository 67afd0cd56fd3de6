// GnuTLS beside OpenSSL: both implementations in one process talking to each other, GnuTLS
// against independent peers (gnutls-serv / gnutls-cli, openssl s_client), native-reference
// dispatch with std::visit, and adopted gnutls_session_t handles.
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <random>

#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using comm::ssl_implementation;

std::string random_bytes(std::size_t n) {
  std::mt19937 gen(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen());
  return s;
}

// gnutls-serv has no ephemeral port: take a free one, and try again if another process won it.
struct gnutls_server {
  explicit gnutls_server(const std::vector<std::string>& args) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::string candidate;
      {
        loopback_listener probe;
        candidate = probe.port;
      }
      std::vector<std::string> argv{"gnutls-serv", "-p", candidate};
      argv.insert(argv.end(), args.begin(), args.end());
      auto p = std::make_unique<peer_process>(argv);
      try {
        p->wait_for(R"(listening on IPv4.*port )" + candidate);
        process = std::move(p);
        port = candidate;
        return;
      } catch (const std::runtime_error&) {
        // bind failed (port taken meanwhile): next candidate
      }
    }
    throw std::runtime_error("gnutls-serv did not start");
  }
  std::unique_ptr<peer_process> process;
  std::string port;
};

struct cross_case {
  ssl_implementation client, server;
};
class CrossImplementation : public ::testing::TestWithParam<cross_case> {};

TEST_P(CrossImplementation, OneMegabyteEchoedWithMatchingFacts) {
  const auto client_impl = GetParam().client;
  const auto server_impl = GetParam().server;
  const std::string data = random_bytes(1 << 20);
  loopback_listener l;
  std::string server_cipher;
  comm::ssl_protocol_version server_version{};
  auto done = serve_one(l, server_with(server_impl, pki().good), [&](engine_connection& s) {
    s.handshake();
    EXPECT_EQ(comm::ssl_connection_implementation(s), server_impl);
    server_cipher = comm::ssl_connection_cipher(s);
    server_version = comm::ssl_connection_protocol_version(s);
    std::string got = s.read_exact(data.size(), milliseconds(20000));
    s.write_all(got, milliseconds(20000));
    EXPECT_EQ(s.read_some(), "");
    s.shutdown();
  });
  engine_connection c(connect_loopback(l.port), trusting_client(client_impl), client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_implementation(c), client_impl);
  // One thread at a time per connection, as the engine requires: the server reads the whole
  // megabyte before it echoes, so writing it all first cannot deadlock.
  c.write_all(data, milliseconds(20000));
  EXPECT_TRUE(c.read_exact(data.size(), milliseconds(20000)) == data);
  c.shutdown(true);
  done.get();
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), comm::ssl_protocol_version::tls_v1_3);
  EXPECT_EQ(server_version, comm::ssl_protocol_version::tls_v1_3);
  EXPECT_EQ(comm::ssl_connection_cipher(c), server_cipher);
}

INSTANTIATE_TEST_SUITE_P(Pairs, CrossImplementation,
                         ::testing::Values(cross_case{ssl_implementation::openssl, ssl_implementation::gnutls},
                                           cross_case{ssl_implementation::gnutls, ssl_implementation::openssl}),
                         [](const auto& info) {
                           return std::string(comm::to_string(info.param.client)) + "_client_" +
                                  std::string(comm::to_string(info.param.server)) + "_server";
                         });

TEST(GnuTLSInterop, Tls12BetweenImplementationsNamesTheSameSuite) {
  loopback_listener l;
  std::string server_cipher;
  auto done = serve_one(l, server_with(ssl_implementation::openssl, pki().good), [&](engine_connection& s) {
    s.handshake();
    server_cipher = comm::ssl_connection_cipher(s);
    s.write_all("ok");
  });
  engine_connection c(connect_loopback(l.port), trusting_client(ssl_implementation::gnutls, [](auto& o) {
                        o.protocol_version.max = comm::ssl_protocol_version::tls_v1_2;
                      }),
                      client_params());
  c.handshake();
  EXPECT_EQ(c.read_exact(2), "ok");
  done.get();
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), comm::ssl_protocol_version::tls_v1_2);
  EXPECT_EQ(comm::ssl_connection_cipher(c), server_cipher);
  EXPECT_EQ(server_cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
}

TEST(GnuTLSInterop, ClientAgainstGnutlsServ) {
  gnutls_server server({"--echo", "--x509certfile", pki().good.cert_file, "--x509keyfile", pki().good.key_file});
  engine_connection c(connect_loopback(server.port), trusting_client(ssl_implementation::gnutls), client_params());
  c.handshake();
  EXPECT_TRUE(comm::ssl_connection_verify(c).ok);
  c.write_all("ping over gnutls-serv\n");
  EXPECT_EQ(c.read_exact(22), "ping over gnutls-serv\n");
  c.shutdown();
}

TEST(GnuTLSInterop, ServerAgainstGnutlsCli) {
  loopback_listener l;
  auto done = serve_one(l, server_with(ssl_implementation::gnutls, pki().good), [](engine_connection& s) {
    s.handshake();
    std::string line = s.read_exact(6);
    s.write_all("echo:" + line);
    EXPECT_EQ(s.read_some(), "");  // gnutls-cli sends close_notify at the end of its input
    s.shutdown();
  });
  peer_process cli({"gnutls-cli", "-p", l.port, "--x509cafile", pki().ca_file, "--verify-hostname", "localhost",
                    "127.0.0.1"});
  cli.wait_for("Handshake was completed");
  cli.write_stdin("hello\n");
  EXPECT_TRUE(cli.wait_for_text("echo:hello")) << cli.output();
  cli.close_stdin();
  done.get();
  EXPECT_EQ(cli.wait_exit(), 0) << cli.output();
}

TEST(GnuTLSInterop, ServerAgainstOpensslSClient) {
  loopback_listener l;
  auto done = serve_one(l, server_with(ssl_implementation::gnutls, pki().good, [](auto& o) {
                          o.alpn_protocols = {"h2"};
                        }),
                        [](engine_connection& s) {
                          s.handshake();
                          EXPECT_EQ(comm::ssl_connection_alpn_protocol(s), "h2");
                          EXPECT_EQ(comm::ssl_connection_server_name(s), "localhost");
                          std::string line = s.read_exact(6);
                          s.write_all("echo:" + line);
                        });
  peer_process cli({"openssl", "s_client", "-connect", "127.0.0.1:" + l.port, "-CAfile", pki().ca_file, "-servername",
                    "localhost", "-verify_hostname", "localhost", "-verify_return_error", "-alpn", "h2", "-quiet"});
  cli.write_stdin("hello\n");
  EXPECT_TRUE(cli.wait_for_text("echo:hello")) << cli.output();
  done.get();
  cli.close_stdin();
  cli.wait_exit();
}

TEST(GnuTLSInterop, PeerCertificateDataIsTheSameFromBothImplementations) {
  openssl_server server(s_server_args(pki().good));
  std::vector<std::vector<comm::certificate_data>> seen;
  std::vector<comm::verify_result> verdicts;
  for (auto impl : {ssl_implementation::openssl, ssl_implementation::gnutls}) {
    engine_connection c(connect_loopback(server.port), trusting_client(impl), client_params());
    c.handshake();
    seen.push_back(comm::ssl_connection_get_peer_certificates_data(c));
    verdicts.push_back(comm::ssl_connection_verify(c));
  }
  ASSERT_EQ(seen[0].size(), 2u);
  ASSERT_EQ(seen[1].size(), seen[0].size());
  for (std::size_t i = 0; i < seen[0].size(); ++i) {
    const auto &o = seen[0][i], &g = seen[1][i];
    EXPECT_EQ(g.subject, o.subject);
    EXPECT_EQ(g.subject_common_name, o.subject_common_name);
    EXPECT_EQ(g.issuer, o.issuer);
    EXPECT_EQ(g.issuer_common_name, o.issuer_common_name);
    EXPECT_EQ(g.serial_number, o.serial_number);
    EXPECT_EQ(g.not_before, o.not_before);
    EXPECT_EQ(g.not_after, o.not_after);
    EXPECT_EQ(g.dns_names, o.dns_names);
    EXPECT_EQ(g.ip_addresses, o.ip_addresses);
    EXPECT_EQ(g.pem, o.pem);
  }
  EXPECT_EQ(verdicts[0].ok, verdicts[1].ok);
  EXPECT_EQ(verdicts[0].reason, verdicts[1].reason);
  EXPECT_EQ(verdicts[0].message, verdicts[1].message);
}

// A self-signed certificate whose serial starts with a zero nibble (0x0ABC), made with GnuTLS.
std::pair<std::string, std::string> small_serial_certificate() {
  gnutls_x509_privkey_t key = nullptr;
  gnutls_x509_crt_t crt = nullptr;
  gnutls_x509_privkey_init(&key);
  gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
  gnutls_x509_crt_init(&crt);
  gnutls_x509_crt_set_version(crt, 3);
  const unsigned char serial[] = {0x0A, 0xBC};
  gnutls_x509_crt_set_serial(crt, serial, sizeof serial);
  gnutls_x509_crt_set_dn(crt, "CN=localhost", nullptr);
  gnutls_x509_crt_set_activation_time(crt, time(nullptr) - 3600);
  gnutls_x509_crt_set_expiration_time(crt, time(nullptr) + 3600);
  gnutls_x509_crt_set_key(crt, key);
  gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
  gnutls_datum_t c{}, k{};
  gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &c);
  gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &k);
  std::pair<std::string, std::string> out{std::string(reinterpret_cast<char*>(c.data), c.size),
                                          std::string(reinterpret_cast<char*>(k.data), k.size)};
  gnutls_free(c.data);
  gnutls_free(k.data);
  gnutls_x509_crt_deinit(crt);
  gnutls_x509_privkey_deinit(key);
  return out;
}

TEST(GnuTLSInterop, SerialNumbersAreWrittenAsOpenSSLWritesThem) {
  auto [cert, key] = small_serial_certificate();
  comm::ssl_context_options so;
  so.implementation = ssl_implementation::gnutls;
  so.cert_pem = cert;
  so.key_pem = key;
  auto server = comm::create_ssl_server_context(so);
  for (auto impl : {ssl_implementation::openssl, ssl_implementation::gnutls}) {
    loopback_listener l;
    auto done = serve_one(l, server, [](engine_connection& s) { s.handshake(); });
    engine_connection c(connect_loopback(l.port), trusting_client(impl, [](auto& o) {
                          o.verify = comm::peer_verification::none;
                        }),
                        client_params());
    c.handshake();
    EXPECT_EQ(comm::ssl_connection_get_peer_certificates_data(c).at(0).serial_number, "0ABC") << comm::to_string(impl);
    EXPECT_EQ(comm::ssl_connection_verify(c).reason, comm::verify_reason::self_signed) << comm::to_string(impl);
    done.get();
  }
}

// The way user code dispatches on the native reference (Lisp's typecase): the cipher read natively
// from each implementation's own object equals comm's answer.
std::string native_cipher(const comm::ssl_ref& ref) {
  return std::visit(
      [](const auto& r) -> std::string {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, comm::ssl_pointer>) {
          return SSL_get_cipher_name(r.ptr);
        } else if constexpr (std::is_same_v<T, comm::gnutls_session_ref>) {
          return gnutls_ciphersuite_get(r.ptr);
        } else {
          return "apple";
        }
      },
      ref);
}

TEST(GnuTLSInterop, VisitOnSslRefCallsEachImplementationNatively) {
  openssl_server server(s_server_args(pki().good, {"-tls1_3"}));
  for (auto impl : {ssl_implementation::openssl, ssl_implementation::gnutls}) {
    engine_connection c(connect_loopback(server.port), trusting_client(impl), client_params());
    c.handshake();
    comm::ssl_ref ref = comm::ssl_connection_ssl_ref(c);
    EXPECT_EQ(ref.index(), impl == ssl_implementation::openssl ? 0u : 1u);
    EXPECT_EQ(native_cipher(ref), comm::ssl_connection_cipher(c)) << comm::to_string(impl);
    if (auto* g = std::get_if<comm::gnutls_session_ref>(&ref)) {
      EXPECT_EQ(gnutls_protocol_get_version(g->ptr), GNUTLS_TLS1_3);
      EXPECT_EQ(std::get<comm::gnutls_credentials_ref>(comm::ssl_connection_ctx_ref(c)).ptr != nullptr, true);
    }
    EXPECT_EQ(comm::find_ssl_connection_from_ssl_ref(ref), &c);
    c.shutdown();
  }
}

// A session the user made and configured (trust, host name check, SNI); comm only adds the transport.
gnutls_session_t user_session(gnutls_certificate_credentials_t cred, const char* verify_host) {
  gnutls_session_t s = nullptr;
  EXPECT_EQ(gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
  gnutls_set_default_priority(s);
  gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
  gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9);
  gnutls_session_set_verify_cert(s, verify_host, 0);
  return s;
}

struct user_credentials {
  user_credentials() {
    gnutls_certificate_allocate_credentials(&cred);
    gnutls_certificate_set_x509_trust_file(cred, pki().ca_file.c_str(), GNUTLS_X509_FMT_PEM);
  }
  ~user_credentials() { gnutls_certificate_free_credentials(cred); }
  gnutls_certificate_credentials_t cred = nullptr;
};

TEST(GnuTLSInterop, AdoptedSessionKeepsTheUsersSettings) {
  user_credentials uc;
  openssl_server server(s_server_args(pki().good));
  gnutls_session_t s = user_session(uc.cred, "localhost");
  engine_connection c(connect_loopback(server.port), comm::adopted_gnutls_session(s), client_params());
  comm::ssl_ref ref = comm::ssl_connection_ssl_ref(c);
  ASSERT_TRUE(std::holds_alternative<comm::gnutls_session_ref>(ref));
  EXPECT_EQ(std::get<comm::gnutls_session_ref>(ref).ptr, s);
  c.handshake();
  EXPECT_EQ(std::get<comm::gnutls_credentials_ref>(comm::ssl_connection_ctx_ref(c)).ptr, uc.cred);
  c.write_all("adopted\n");
  EXPECT_EQ(c.read_exact(8), "detpoda\n");
}  // the engine frees the session once (the ASan build checks it)

TEST(GnuTLSInterop, AdoptedSessionVerificationFailureNamesTheReason) {
  user_credentials uc;
  openssl_server server(s_server_args(pki().good));
  engine_connection c(connect_loopback(server.port),
                      comm::adopted_gnutls_session(user_session(uc.cred, "wrong.example.com")), client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::host_name_mismatch) << e.what();
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::verification);
  }
}

TEST(GnuTLSInterop, AdoptedNullSessionIsRejected) {
  EXPECT_THROW(comm::adopted_gnutls_session(nullptr), std::invalid_argument);
}

TEST(GnuTLSInterop, AdoptedHandleMovesAndFreesOnce) {
  user_credentials uc;
  comm::adopted_gnutls_session a(user_session(uc.cred, "localhost"));
  comm::adopted_gnutls_session moved = std::move(a);
  EXPECT_EQ(a.get(), nullptr);
  comm::adopted_gnutls_session other(user_session(uc.cred, "localhost"));
  other = std::move(moved);  // frees the session `other` held
  EXPECT_NE(other.get(), nullptr);
}

TEST(GnuTLSInterop, AdoptedSessionIsFreedWhenAttachingFails) {
  user_credentials uc;
  loopback_listener l;
  auto params = client_params();
  params.ssl_configure = [](comm::ssl_ref) { throw std::runtime_error("configure failed"); };
  // The engine owns the session from the call on: the failure frees it (ASan reports a leak or a
  // double free otherwise).
  EXPECT_THROW(engine_connection(connect_loopback(l.port), comm::adopted_gnutls_session(user_session(uc.cred, "localhost")),
                                 params),
               std::runtime_error);
}

}  // namespace
}  // namespace comm_test
