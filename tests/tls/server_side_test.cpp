// comm as the TLS server against openssl s_client: SNI, choosing a context by SNI, client
// certificates; and comm as a client with certificates against s_server -Verify.
#include <future>
#include <thread>

#include "comm/stream.hpp"
#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using namespace std::chrono_literals;

// openssl s_client to 127.0.0.1:port with the given extra arguments; stdin is sent to the server.
std::unique_ptr<peer_process> s_client(std::uint16_t port, std::vector<std::string> extra) {
  std::vector<std::string> argv{"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-quiet",
                                "-CAfile", pki().ca_file, "-verify_return_error"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<peer_process>(argv);
}

comm::attach_ssl_options server_attach(comm::ssl_abstract_context ctx) {
  comm::attach_ssl_options a;
  a.ssl_ctx = std::move(ctx);
  a.ssl_side = comm::ssl_side::server;
  a.handshake_timeout = 5s;
  return a;
}

struct tls_listener {
  comm::tcp_listener listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  std::uint16_t port() const { return listener.local_port(); }
  comm::socket_stream accept(comm::ssl_abstract_context ctx) {
    auto s = listener.accept(5s);
    if (!s) throw std::runtime_error("no client connected in time");
    return comm::socket_stream(std::move(*s), {.read_timeout = 5s, .write_timeout = 5s}, server_attach(std::move(ctx)));
  }
};

class ServerSide : public ::testing::TestWithParam<comm::ssl_implementation> {};

TEST_P(ServerSide, SniSeenByTheServerAndDataBothWays) {
  tls_listener l;
  auto client = s_client(l.port(), {"-servername", "localhost"});
  auto s = l.accept(server_with(GetParam(), pki().good));
  EXPECT_EQ(comm::ssl_connection_server_name(s), "localhost");
  client->write_stdin("from client\n");
  EXPECT_EQ(s.read_line(), "from client");
  s.write_all("from server\n");
  s.flush();
  EXPECT_EQ(client->wait_for("^from server$"), "from server");
}

TEST_P(ServerSide, ClientHelloCallbackPicksAContextBySni) {
  auto alt = server_with(GetParam(), pki().alt_host);
  std::string seen;
  auto main_ctx = server_with(GetParam(), pki().good, [&](comm::ssl_context_options& o) {
    o.client_hello_callback = [&](comm::ssl_connection&, std::string_view name) {
      seen = name;
      comm::client_hello_decision d;
      if (name == "alt.example.com") d.use_context = alt;
      return d;
    };
  });
  tls_listener l;
  auto client = s_client(l.port(), {"-servername", "alt.example.com", "-verify_hostname", "alt.example.com"});
  auto s = l.accept(main_ctx);
  EXPECT_EQ(seen, "alt.example.com");
  client->write_stdin("hi\n");
  EXPECT_EQ(s.read_line(), "hi");  // s_client verified alt.example.com's certificate
}

TEST_P(ServerSide, ClientHelloCallbackRejectionFailsTheHandshake) {
  auto ctx = server_with(GetParam(), pki().good, [](comm::ssl_context_options& o) {
    o.client_hello_callback = [](comm::ssl_connection&, std::string_view) {
      comm::client_hello_decision d;
      d.accept = false;
      return d;
    };
  });
  tls_listener l;
  auto client = s_client(l.port(), {"-servername", "localhost"});
  try {
    l.accept(ctx);
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::client_hello_callback) << e.what();
  }
  EXPECT_NE(client->wait_exit(5s).value_or(0), 0);
}

comm::ssl_abstract_context requiring_client_cert(comm::ssl_implementation impl) {
  return server_with(impl, pki().good, [](comm::ssl_context_options& o) {
    o.verify = comm::peer_verification::required;
    o.trusted_file = pki().ca_file;
  });
}

TEST_P(ServerSide, RequiredClientCertificateMissingFailsOnBothSides) {
  tls_listener l;
  auto client = s_client(l.port(), {});
  client->write_stdin("x\n");
  try {
    l.accept(requiring_client_cert(GetParam()));
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::no_certificate) << e.what();
  }
  EXPECT_NE(client->wait_exit(5s).value_or(0), 0);
  EXPECT_NE(client->output().find("alert"), std::string::npos) << client->output();
}

TEST_P(ServerSide, RequiredClientCertificateGoodIsAccepted) {
  tls_listener l;
  auto client = s_client(l.port(), {"-cert", pki().client.cert_file, "-cert_chain", pki().client.chain_file, "-key",
                                    pki().client.key_file});
  auto s = l.accept(requiring_client_cert(GetParam()));
  auto v = comm::ssl_connection_verify(s);
  EXPECT_TRUE(v.ok) << v.message;
  auto certs = comm::ssl_connection_get_peer_certificates_data(s);
  ASSERT_FALSE(certs.empty());
  EXPECT_EQ(certs[0].subject_common_name, "comm test client");
  client->write_stdin("with cert\n");
  EXPECT_EQ(s.read_line(), "with cert");
}

TEST_P(ServerSide, RequiredClientCertificateUntrustedIsRefused) {
  tls_listener l;
  auto client = s_client(l.port(), {"-cert", pki().untrusted_client.cert_file, "-key", pki().untrusted_client.key_file});
  client->write_stdin("x\n");
  try {
    l.accept(requiring_client_cert(GetParam()));
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::unknown_issuer) << e.what();
  }
  EXPECT_NE(client->wait_exit(5s).value_or(0), 0);
}

// A server keeps verified client chains too (ssl_context_options::verified_chain_cache): the same
// certificate again is accepted from the cache, another one is checked in full.
TEST_P(ServerSide, ClientCertificateVerifiedOnceIsAcceptedFromTheCache) {
  tls_listener l;
  auto ctx = requiring_client_cert(GetParam());
  for (int i = 0; i < 2; ++i) {
    auto client = s_client(l.port(), {"-cert", pki().client.cert_file, "-cert_chain", pki().client.chain_file, "-key",
                                      pki().client.key_file});
    auto s = l.accept(ctx);
    auto v = comm::ssl_connection_verify(s);
    EXPECT_TRUE(v.ok) << v.message;
    EXPECT_EQ(v.from_cache, i == 1);
    client->write_stdin("with cert\n");
    EXPECT_EQ(s.read_line(), "with cert");
  }
  auto client = s_client(l.port(), {"-cert", pki().untrusted_client.cert_file, "-key", pki().untrusted_client.key_file});
  client->write_stdin("x\n");
  try {
    l.accept(ctx);
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::unknown_issuer) << e.what();
  }
}

// comm as the client, s_server demanding a certificate.
TEST_P(ServerSide, CommClientPresentsItsCertificateWhenAsked) {
  openssl_server server({"-cert", pki().good.cert_file, "-cert_chain", pki().good.chain_file, "-key",
                         pki().good.key_file, "-Verify", "2", "-verify_return_error", "-CAfile", pki().ca_file, "-rev"});
  int asked = 0;
  auto ctx = trusting_client(GetParam(), [&](comm::ssl_context_options& o) {
    o.cert_file = pki().client.cert_file;
    o.key_file = pki().client.key_file;
    if (GetParam() == comm::ssl_implementation::openssl)
      o.cert_request_callback = [&](comm::ssl_connection&) { return ++asked > 0; };
  });
  comm::open_tcp_stream_options o;
  o.ssl_ctx = ctx;
  o.handshake_timeout = 5s;
  o.read_timeout = 5s;
  o.tlsext_host_name = "localhost";
  auto s = comm::open_tcp_stream("localhost", server.port, o);
  s.write_all("abc\n");
  s.flush();
  EXPECT_EQ(s.read_line(), "cba");
  if (GetParam() == comm::ssl_implementation::openssl) {
    EXPECT_EQ(asked, 1);
  }
}

TEST_P(ServerSide, CommClientWithoutCertificateIsRefusedByTheServer) {
  openssl_server server({"-cert", pki().good.cert_file, "-cert_chain", pki().good.chain_file, "-key",
                         pki().good.key_file, "-Verify", "2", "-verify_return_error", "-CAfile", pki().ca_file, "-rev"});
  comm::open_tcp_stream_options o;
  o.ssl_ctx = trusting_client(GetParam());
  o.handshake_timeout = 5s;
  o.read_timeout = 5s;
  // TLS 1.3: the client's handshake ends before the server judges its certificate; the refusal
  // arrives as an alert on the first read.
  EXPECT_THROW(
      {
        auto s = comm::open_tcp_stream("localhost", server.port, o);
        s.write_all("abc\n");
        s.flush();
        (void)s.read_line();
      },
      comm::ssl_condition);
}

// A server with ALPN protocols refuses a client whose offer shares none of them (RFC 7301's
// no_application_protocol), naming that; a client that offers no ALPN at all is served, with none
// agreed.
TEST_P(ServerSide, AlpnWithoutOverlapFailsTheHandshakeAndNoOfferIsServed) {
  auto ctx = server_with(GetParam(), pki().good, [](comm::ssl_context_options& o) { o.alpn_protocols = {"h2"}; });
  {
    tls_listener l;
    auto client = s_client(l.port(), {"-servername", "localhost", "-alpn", "http/1.1"});
    try {
      auto s = l.accept(ctx);
      ADD_FAILURE() << "handshake succeeded with ALPN '" << comm::ssl_connection_alpn_protocol(s) << "'";
    } catch (const comm::ssl_failure& e) {
      const std::string cause = GetParam() == comm::ssl_implementation::openssl
                                    ? ": no application protocol: "
                                    : ": No common application protocol could be negotiated: ";
      EXPECT_EQ(std::string(e.what()).rfind("TLS handshake with 127.0.0.1:", 0), 0u) << e.what();
      EXPECT_NE(std::string(e.what()).find(cause), std::string::npos) << e.what();
    }
    EXPECT_TRUE(client->wait_exit(5s).has_value());
  }
  tls_listener l;
  auto client = s_client(l.port(), {"-servername", "localhost"});
  auto s = l.accept(ctx);
  EXPECT_EQ(comm::ssl_connection_alpn_protocol(s), "");
  s.write_all("served\n");
  s.flush();
  EXPECT_EQ(client->wait_for("^served$"), "served");
}

INSTANTIATE_TEST_SUITE_P(Implementations, ServerSide, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

}  // namespace
}  // namespace comm_test
