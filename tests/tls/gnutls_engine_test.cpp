// The GnuTLS engine and backend on their own: GnuTLS client and server in one process over loopback
// TCP, driven through the engine interface. Options that only GnuTLS maps (or rejects) are here;
// behaviour common to both implementations lives in the parameterised suite.
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/socket.h>

#include <future>

#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using comm::ssl_implementation;
constexpr auto gnutls = ssl_implementation::gnutls;

// Sets the process-wide default for one test and puts the previous one back, also on failure.
struct default_implementation_guard {
  explicit default_implementation_guard(ssl_implementation impl) { comm::set_ssl_default_implementation(impl); }
  ~default_implementation_guard() { comm::set_ssl_default_implementation(before); }
  ssl_implementation before = comm::ssl_default_implementation();
};

TEST(GnuTLSEngine, HandshakeEchoFactsAndCleanClose) {
  loopback_listener l;
  auto done = serve_one(l, server_with(gnutls, pki().good), [](engine_connection& s) {
    s.handshake();
    EXPECT_EQ(comm::ssl_connection_server_name(s), "localhost");
    std::string got = s.read_exact(5);
    s.write_all(got + got);
    EXPECT_EQ(s.read_some(), "");  // the client's close_notify
    s.shutdown();
  });
  engine_connection c(connect_loopback(l.port), trusting_client(gnutls), client_params());
  c.handshake();
  c.write_all("hello");
  EXPECT_EQ(c.read_exact(10), "hellohello");
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), comm::ssl_protocol_version::tls_v1_3);
  EXPECT_EQ(comm::ssl_connection_cipher(c), "TLS_AES_256_GCM_SHA384");
  EXPECT_FALSE(comm::ssl_connection_session_reused(c));
  auto certs = comm::ssl_connection_get_peer_certificates_data(c);
  ASSERT_EQ(certs.size(), 2u);
  EXPECT_EQ(certs[0].subject_common_name, "localhost");
  EXPECT_EQ(certs[0].dns_names, std::vector<std::string>{"localhost"});
  EXPECT_EQ(certs[0].ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_EQ(certs[0].issuer_common_name, certs[1].subject_common_name);
  EXPECT_LT(certs[0].not_before, std::chrono::system_clock::now());
  EXPECT_GT(certs[0].not_after, std::chrono::system_clock::now());
  EXPECT_FALSE(certs[0].serial_number.empty());
  EXPECT_EQ(certs[0].serial_number.find_first_not_of("0123456789ABCDEF"), std::string::npos);
  EXPECT_EQ(certs[0].pem.rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  auto natives = comm::ssl_connection_copy_peer_certificates(c);
  ASSERT_EQ(natives.size(), 2u);
  ASSERT_NE(natives[0].gnutls_crt(), nullptr);
  char cn[64];
  size_t cn_size = sizeof cn;
  ASSERT_EQ(gnutls_x509_crt_get_dn_by_oid(natives[0].gnutls_crt(), GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cn_size), 0);
  EXPECT_STREQ(cn, "localhost");
  c.shutdown(true);
  done.get();
}

TEST(GnuTLSEngine, Tls12SuiteAlpnAndServerPreference) {
  loopback_listener l;
  auto done = serve_one(l, server_with(gnutls, pki().good, [](auto& o) { o.alpn_protocols = {"h2", "http/1.1"}; }),
                        [](engine_connection& s) {
                          s.handshake();
                          EXPECT_EQ(comm::ssl_connection_alpn_protocol(s), "h2");
                          s.write_all("x");
                        });
  engine_connection c(connect_loopback(l.port), trusting_client(gnutls, [](auto& o) {
                        o.protocol_version.max = comm::ssl_protocol_version::tls_v1_2;
                        o.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
                        o.alpn_protocols = {"http/1.1", "h2"};
                      }),
                      client_params());
  c.handshake();
  EXPECT_EQ(c.read_exact(1), "x");
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), comm::ssl_protocol_version::tls_v1_2);
  EXPECT_EQ(comm::ssl_connection_cipher(c), "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(comm::ssl_connection_alpn_protocol(c), "h2");
  done.get();
}

TEST(GnuTLSEngine, IpLiteralsMatchIpSansOnlyAndSendNoSni) {
  openssl_server server(s_server_args(pki().good));
  for (const char* ip : {"127.0.0.1", "::1"}) {
    engine_connection c(connect_loopback(server.port), trusting_client(gnutls), client_params(ip));
    c.handshake();
    EXPECT_TRUE(comm::ssl_connection_verify(c).ok) << ip;
    EXPECT_EQ(comm::ssl_connection_server_name(c), "") << ip;
  }
  engine_connection c(connect_loopback(server.port), trusting_client(gnutls), client_params("127.0.0.2"));
  try {
    c.handshake();
    FAIL() << "127.0.0.2 accepted";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::host_name_mismatch) << e.what();
  }
}

TEST(GnuTLSEngine, OptionsGnuTLSCannotMapAreRejectedNamingThem) {
  auto expect_rejected = [](const options_edit& edit, const std::string& option) {
    try {
      trusting_client(gnutls, edit);
      FAIL() << option << " accepted";
    } catch (const comm::ssl_failure& e) {
      EXPECT_EQ(e.code(), comm::ssl_code{}) << e.what();
      EXPECT_EQ(errc_of(e), comm::ssl_errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("GnuTLS"), std::string::npos) << e.what();
    }
  };
  expect_rejected([](auto& o) { o.ciphers = "HIGH:!aNULL"; }, "ciphers");
  expect_rejected([](auto& o) { o.ciphersuites = "TLS_NOT_A_SUITE"; }, "ciphersuites");
  expect_rejected([](auto& o) { o.groups = "P-999"; }, "groups");
  // GnuTLS priority elements are accepted as they are.
  EXPECT_NO_THROW(trusting_client(gnutls, [](auto& o) { o.ciphers = "-CIPHER-ALL:+AES-128-GCM"; }));
}

TEST(GnuTLSEngine, SessionResumptionTls13AndTls12) {
  for (auto max : {comm::ssl_protocol_version::tls_v1_3, comm::ssl_protocol_version::tls_v1_2}) {
    loopback_listener l;
    auto server = server_with(gnutls, pki().good);
    auto client = trusting_client(gnutls, [&](auto& o) { o.protocol_version.max = max; });
    for (int round = 0; round < 2; ++round) {
      auto done = serve_one(l, server, [&](engine_connection& s) {
        s.handshake();
        EXPECT_EQ(comm::ssl_connection_session_reused(s), round == 1);
        s.write_all("data");  // after the TLS 1.3 ticket
        EXPECT_EQ(s.read_some(), "");
      });
      engine_connection c(connect_loopback(l.port), client, client_params("localhost", "localhost:" + l.port));
      c.handshake();
      EXPECT_EQ(c.read_exact(4), "data");
      EXPECT_EQ(comm::ssl_connection_session_reused(c), round == 1) << comm::to_string(max) << " round " << round;
      EXPECT_EQ(comm::ssl_connection_protocol_version(c), max);
      c.shutdown();
      done.get();
    }
  }
}

TEST(GnuTLSEngine, ClientCertificateRequired) {
  auto server = server_with(gnutls, pki().good, [](auto& o) {
    o.verify = comm::peer_verification::required;
    o.trusted_file = pki().ca_file;
  });
  struct outcome {
    bool client_ok, server_ok;
    comm::verify_reason server_reason;
  };
  auto attempt = [&](const credential* cred) {
    loopback_listener l;
    outcome out{false, false, comm::verify_reason::ok};
    auto done = serve_one(l, server, [&](engine_connection& s) {
      try {
        s.handshake();
        out.server_ok = true;
        auto certs = comm::ssl_connection_get_peer_certificates_data(s);
        EXPECT_EQ(certs.at(0).subject_common_name, "comm test client");
        s.write_all("ok");
      } catch (const comm::ssl_verification_failure& e) {
        out.server_reason = e.reason();
      }
    });
    try {
      engine_connection c(connect_loopback(l.port), trusting_client(gnutls, [&](auto& o) {
                            if (cred) o.cert_file = cred->cert_file, o.key_file = cred->key_file;
                          }),
                          client_params());
      c.handshake();
      out.client_ok = c.read_exact(2) == "ok";
    } catch (const comm::ssl_condition&) {
    }
    done.get();
    return out;
  };
  outcome good = attempt(&pki().client);
  EXPECT_TRUE(good.client_ok && good.server_ok);
  outcome missing = attempt(nullptr);
  EXPECT_FALSE(missing.client_ok || missing.server_ok);
  EXPECT_EQ(missing.server_reason, comm::verify_reason::no_certificate);
  outcome untrusted = attempt(&pki().untrusted_client);
  EXPECT_FALSE(untrusted.client_ok || untrusted.server_ok);
  // The server names the CAs it accepts; a GnuTLS client sends no certificate from another CA.
  EXPECT_EQ(untrusted.server_reason, comm::verify_reason::no_certificate);
}

TEST(GnuTLSEngine, EncryptedKeyPasswordAndCallback) {
  auto with_key = [](const options_edit& edit) {
    comm::ssl_context_options o = options(edit);
    o.implementation = gnutls;
    o.cert_file = pki().good.cert_file;
    o.key_file = pki().encrypted_key_file;
    return comm::create_ssl_server_context(o);
  };
  EXPECT_THROW(with_key({}), comm::ssl_error);
  EXPECT_NO_THROW(with_key([](auto& o) { o.password = pki().key_password; }));
  int calls = 0;
  EXPECT_NO_THROW(with_key([&](auto& o) { o.password_callback = [&] { ++calls; return pki().key_password; }; }));
  EXPECT_EQ(calls, 1);
  // Not asked for an unencrypted key.
  server_with(gnutls, pki().good, [&](auto& o) { o.password_callback = [&] { ++calls; return std::string(); }; });
  EXPECT_EQ(calls, 1);
  try {
    with_key([](auto& o) { o.password = "wrong"; });
    FAIL() << "wrong password accepted";
  } catch (const comm::ssl_error& e) {
    EXPECT_NE(std::string(e.what()).find(pki().encrypted_key_file), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("wrong password"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("wrong\""), std::string::npos);
  }
}

TEST(GnuTLSEngine, ClientHelloCallbackPicksAContextByNameOrRefuses) {
  auto alt = server_with(gnutls, pki().alt_host);
  std::vector<std::string> names;
  auto server = server_with(gnutls, pki().good, [&](auto& o) {
    o.client_hello_callback = [&](comm::ssl_connection&, std::string_view name) {
      names.emplace_back(name);
      if (name == "refused.example.com") return comm::client_hello_decision{false, {}};
      return comm::client_hello_decision{true, name == "alt.example.com" ? alt : comm::ssl_abstract_context{}};
    };
  });
  {
    loopback_listener l;
    auto done = serve_one(l, server, [](engine_connection& s) { s.handshake(); s.write_all("alt"); });
    engine_connection c(connect_loopback(l.port), trusting_client(gnutls), client_params("alt.example.com"));
    c.handshake();
    EXPECT_EQ(c.read_exact(3), "alt");
    EXPECT_EQ(comm::ssl_connection_get_peer_certificates_data(c).at(0).subject_common_name, "alt.example.com");
    done.get();
  }
  {
    loopback_listener l;
    comm::ssl_code server_code;
    auto done = serve_one(l, server, [&](engine_connection& s) {
      try {
        s.handshake();
      } catch (const comm::ssl_failure& e) {
        server_code = e.code();
      }
    });
    engine_connection c(connect_loopback(l.port), trusting_client(gnutls), client_params("refused.example.com"));
    EXPECT_THROW(c.handshake(), comm::ssl_failure);
    done.get();
    EXPECT_EQ(server_code.kind, comm::ssl_code_kind::client_hello_callback);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"alt.example.com", "refused.example.com"}));
}

TEST(GnuTLSEngine, CertRequestCallbackCanRefuse) {
  loopback_listener l;
  auto server = server_with(gnutls, pki().good, [](auto& o) { o.verify = comm::peer_verification::optional; });
  auto done = serve_one(l, server, [](engine_connection& s) { EXPECT_THROW(s.handshake(), comm::ssl_condition); });
  int calls = 0;
  engine_connection c(connect_loopback(l.port), trusting_client(gnutls, [&](auto& o) {
                        o.cert_request_callback = [&](comm::ssl_connection&) { return ++calls, false; };
                      }),
                      client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::cert_request_callback) << e.what();
  }
  EXPECT_EQ(calls, 1);
  c.release_socket();  // closing the socket ends the server's handshake
  done.get();
}

TEST(GnuTLSEngine, CertRequestCallbackAcceptsAndTheCertificateIsSent) {
  openssl_server server({"-cert", pki().good.cert_file, "-cert_chain", pki().good.chain_file, "-key",
                         pki().good.key_file, "-Verify", "2",
                         "-verify_return_error", "-CAfile", pki().ca_file, "-rev"});
  int calls = 0;
  engine_connection c(connect_loopback(server.port), trusting_client(gnutls, [&](auto& o) {
                        o.cert_file = pki().client.cert_file;
                        o.key_file = pki().client.key_file;
                        o.cert_request_callback = [&](comm::ssl_connection& conn) {
                          EXPECT_EQ(&conn, static_cast<comm::ssl_connection*>(&c));
                          return ++calls > 0;
                        };
                      }),
                      client_params());
  c.handshake();
  c.write_all("abc\n");
  EXPECT_EQ(c.read_exact(4), "cba\n");  // s_server verified the client certificate (-verify_return_error)
  EXPECT_EQ(calls, 1);
}

TEST(GnuTLSEngine, TruncationAndCloseNotifyLeavePlainBytesInTheSocket) {
  loopback_listener l;
  std::promise<void> truncate;
  auto done = serve_one(l, server_with(gnutls, pki().good), [&](engine_connection& s) {
    s.handshake();
    s.write_all("before");
    truncate.get_future().wait();
    ::shutdown(s.fd(), SHUT_RDWR);  // TCP ends, no close_notify
  });
  engine_connection c(connect_loopback(l.port), trusting_client(gnutls), client_params());
  c.handshake();
  EXPECT_EQ(c.read_exact(6), "before");
  truncate.set_value();
  try {
    c.read_some();
    FAIL() << "clean end reported";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(errc_of(e), comm::ssl_errc::truncated) << e.what();
  }
  done.get();

  // close_notify then plain text: the engine reads no further than the alert (STARTTLS detach).
  loopback_listener l2;
  auto done2 = serve_one(l2, server_with(gnutls, pki().good), [&](engine_connection& s) {
    s.handshake();
    s.shutdown();
    EXPECT_EQ(::send(s.fd(), "PLAIN", 5, MSG_NOSIGNAL), 5);
  });
  engine_connection c2(connect_loopback(l2.port), trusting_client(gnutls), client_params());
  c2.handshake();
  EXPECT_EQ(c2.read_some(), "");
  EXPECT_TRUE(c2.tls_engine_()->close_notify_received());
  c2.shutdown();
  done2.get();
  int fd = c2.release_socket();
  char buf[16];
  EXPECT_EQ(::recv(fd, buf, sizeof buf, MSG_WAITALL), 5);
  EXPECT_EQ(std::string(buf, 5), "PLAIN");
  ::close(fd);
}

TEST(GnuTLSEngine, ConfigureCallbacksSeeTheNativeObjects) {
  int credential_calls = 0;
  gnutls_session_t configured = nullptr;
  auto client = trusting_client(gnutls, [&](auto& o) {
    o.gnutls_credentials_configure_callback = [&](comm::gnutls_credentials_ref r) { credential_calls += r.ptr != nullptr; };
    o.gnutls_session_configure_callback = [&](comm::gnutls_session_ref r) { configured = r.ptr; };
    o.openssl_ctx_configure_callback = [](comm::ssl_ctx_pointer) { ADD_FAILURE() << "OpenSSL callback ran for GnuTLS"; };
  });
  EXPECT_EQ(credential_calls, 1);
  openssl_server server(s_server_args(pki().good));
  engine_connection c(connect_loopback(server.port), client, client_params());
  EXPECT_EQ(std::get<comm::gnutls_session_ref>(comm::ssl_connection_ssl_ref(c)).ptr, configured);
  c.handshake();
}

TEST(GnuTLSEngine, ReadCertificatesIntoALiveConnection) {
  loopback_listener l;
  auto done = serve_one(l, server_with(gnutls, pki().good), [](engine_connection& s) {
    comm::ssl_connection_read_certificates(s, pki().alt_host.key_file, {.cert_file = pki().alt_host.cert_file, .password = {}, .password_callback = {}});
    s.handshake();
    s.write_all("y");
  });
  engine_connection c(connect_loopback(l.port), trusting_client(gnutls), client_params("alt.example.com"));
  c.handshake();
  EXPECT_EQ(c.read_exact(1), "y");
  EXPECT_EQ(comm::ssl_connection_get_peer_certificates_data(c).at(0).subject_common_name, "alt.example.com");
  done.get();
}

TEST(GnuTLSEngine, DefaultClientContextVerifiesAgainstTheSystemStore) {
  default_implementation_guard guard(gnutls);
  openssl_server server(s_server_args(pki().good));
  try {
    engine_connection c(connect_loopback(server.port), comm::ssl_protocol_keyword::default_, client_params());
    EXPECT_EQ(comm::ssl_connection_implementation(c), gnutls);
    c.handshake();
    ADD_FAILURE() << "the test root is not in the system store";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::unknown_issuer) << e.what();
  }
}

TEST(GnuTLSEngine, DefaultServerContextTakesItsIdentityFromTheConfigureCallback) {
  default_implementation_guard guard(gnutls);
  loopback_listener l;
  auto done = std::async(std::launch::async, [&] {
    auto params = server_params();
    params.ctx_configure = [](comm::ssl_ctx_ref ref) {
      auto* cred = std::get_if<comm::gnutls_credentials_ref>(&ref);
      ASSERT_NE(cred, nullptr);
      ASSERT_EQ(gnutls_certificate_set_x509_key_file(cred->ptr, pki().good.cert_file.c_str(),
                                                     pki().good.key_file.c_str(), GNUTLS_X509_FMT_PEM),
                0);
    };
    engine_connection s(l.accept_one(), comm::ssl_protocol_keyword::tls_v1_2, params);
    s.handshake();
    EXPECT_EQ(comm::ssl_connection_protocol_version(s), comm::ssl_protocol_version::tls_v1_2);
    s.write_all("default");
  });
  engine_connection c(connect_loopback(l.port), trusting_client(ssl_implementation::openssl), client_params());
  c.handshake();
  EXPECT_EQ(c.read_exact(7), "default");
  done.get();
}

TEST(GnuTLSEngine, Tls12RenegotiationByTheClientIsRefused) {
  loopback_listener l;
  auto done = serve_one(l, server_with(gnutls, pki().good, [](auto& o) {
                          o.protocol_version.max = comm::ssl_protocol_version::tls_v1_2;
                        }),
                        [](engine_connection& s) {
                          s.handshake();
                          try {
                            s.read_some();
                            ADD_FAILURE() << "renegotiation accepted";
                          } catch (const comm::ssl_failure& e) {
                            EXPECT_NE(std::string(e.what()).find("renegotiation is refused"), std::string::npos)
                                << e.what();
                          }
                        });
  peer_process cli({"gnutls-cli", "-p", l.port, "--x509cafile", pki().ca_file, "--rehandshake", "127.0.0.1"});
  EXPECT_TRUE(cli.wait_for_text("ReHandshake has failed")) << cli.output();
  EXPECT_TRUE(cli.wait_for_text("No renegotiation is allowed")) << cli.output();
  done.get();
}

}  // namespace
}  // namespace comm_test
