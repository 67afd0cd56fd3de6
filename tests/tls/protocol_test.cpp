// Protocol versions, key exchange groups and ALPN against openssl s_server.
#include <poll.h>

#include <chrono>

#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using comm::ssl_protocol_version;

class Protocol : public ::testing::TestWithParam<comm::ssl_implementation> {};

TEST_P(Protocol, Tls12OnlyPeerNegotiatesTls12) {
  openssl_server server(s_server_args(pki().good, {"-tls1_2"}));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), ssl_protocol_version::tls_v1_2);
  EXPECT_FALSE(comm::ssl_connection_cipher(c).empty());
  c.write_all("x\n");
  EXPECT_EQ(c.read_exact(2), "x\n");
}

TEST_P(Protocol, Tls13OnlyPeerNegotiatesTls13) {
  openssl_server server(s_server_args(pki().good, {"-tls1_3"}));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), ssl_protocol_version::tls_v1_3);
  EXPECT_EQ(comm::to_string(comm::ssl_connection_protocol_version(c)), "TLSv1.3");
}

TEST_P(Protocol, ClientMinimumAbovePeerMaximumFailsClearly) {
  openssl_server server(s_server_args(pki().good, {"-tls1_2"}));
  auto ctx = trusting_client(GetParam(), [](auto& o) { o.protocol_version.min = ssl_protocol_version::tls_v1_3; });
  engine_connection c(connect_loopback(server.port), ctx, client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_failure& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("TLS handshake with 127.0.0.1"), std::string::npos) << what;
    EXPECT_NE(what.find("protocol version"), std::string::npos) << what;
  }
}

TEST_P(Protocol, MaximumBelowMinimumIsRejectedAtCreation) {
  EXPECT_THROW(trusting_client(GetParam(), [](auto& o) {
                 o.protocol_version = {ssl_protocol_version::tls_v1_3, ssl_protocol_version::tls_v1_2};
               }),
               comm::ssl_failure);
}

TEST_P(Protocol, AlpnAgreedOnTheServersPreference) {
  openssl_server server(s_server_args(pki().good, {"-alpn", "h2,http/1.1"}));
  engine_connection c(connect_loopback(server.port),
                      trusting_client(GetParam(), [](auto& o) { o.alpn_protocols = {"http/1.1", "h2"}; }),
                      client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_alpn_protocol(c), "h2");
}

TEST_P(Protocol, AlpnRefusedByThePeerFailsTheHandshake) {
  openssl_server server(s_server_args(pki().good, {"-alpn", "imap"}));
  engine_connection c(connect_loopback(server.port),
                      trusting_client(GetParam(), [](auto& o) { o.alpn_protocols = {"h2"}; }), client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_failure& e) {
    EXPECT_NE(std::string(e.what()).find("no application protocol"), std::string::npos) << e.what();
  }
}

TEST_P(Protocol, NoAlpnOfferedMeansNoneAgreed) {
  openssl_server server(s_server_args(pki().good, {"-alpn", "h2"}));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_alpn_protocol(c), "");
}

TEST_P(Protocol, CipherAndTls13SuiteChosenByOptions) {
  openssl_server server(s_server_args(pki().good, {"-tls1_3"}));
  engine_connection c(connect_loopback(server.port),
                      trusting_client(GetParam(), [](auto& o) { o.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256"; }), client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_cipher(c), "TLS_CHACHA20_POLY1305_SHA256");
}

// A server that takes only P-256 gets it: from the client's second key share (GnuTLS sends X25519
// and P-256) or by asking for it (HelloRetryRequest; OpenSSL sends X25519 alone).
TEST_P(Protocol, ServerWithoutX25519StillCompletesTheHandshake) {
  openssl_server server(s_server_args(pki().good, {"-tls1_3", "-groups", "P-256"}));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params());
  c.handshake();
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), ssl_protocol_version::tls_v1_3);
  c.write_all("x\n");
  EXPECT_EQ(c.read_exact(2), "x\n");
}

// A TLS 1.2 server asking to renegotiate (a HelloRequest: s_server's "r" command) is declined:
// comm's client answers with a no_renegotiation warning, which s_server logs as an error (it then
// ends the connection), and never sends a second ClientHello.
TEST_P(Protocol, ServerRequestToRenegotiateIsDeclined) {
  openssl_server server({"-cert", pki().good.cert_file, "-key", pki().good.key_file, "-cert_chain", pki().good.chain_file,
                         "-tls1_2"});
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params());
  c.handshake();
  c.write_all("first\n");
  server.process.wait_for("^first$");
  server.process.write_stdin("r\n");
  pollfd p{c.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no HelloRequest came";
  try {
    c.read_exact(1, std::chrono::milliseconds(500));  // handles the HelloRequest; nothing else comes
  } catch (const std::exception&) {  // the server's close or the read's timeout: either is fine here
  }
  EXPECT_TRUE(server.process.wait_for_text("ssl3_read_bytes:no renegotiation")) << server.process.output();
}

INSTANTIATE_TEST_SUITE_P(Implementations, Protocol, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

}  // namespace
}  // namespace comm_test
