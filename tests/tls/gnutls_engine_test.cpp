// The GnuTLS engine on its own: GnuTLS client and server in one process over loopback TCP, driven
// through the engine interface (independent of socket_stream).
#include <gnutls/gnutls.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "peers/certificates.hpp"
#include "peers/engine_connection.hpp"

namespace {

using namespace comm;
using comm_test::engine_connection;
using comm_test::pki;

ssl_context_options server_options(const comm_test::credential& c = pki().good) {
  ssl_context_options o;
  o.implementation = ssl_implementation::gnutls;
  o.cert_file = c.cert_file;
  o.key_file = c.key_file;
  return o;
}
ssl_context_options client_options() {
  ssl_context_options o;
  o.implementation = ssl_implementation::gnutls;
  o.trusted_file = pki().ca_file;
  return o;
}
detail::engine_params client_params(const std::string& host = "localhost") {
  detail::engine_params p;
  p.side = ssl_side::client;
  p.sni = host;
  p.host_name = host;
  return p;
}
detail::engine_params server_params() {
  detail::engine_params p;
  p.side = ssl_side::server;
  return p;
}

// Runs `serve` on an accepted server connection in a thread; the future has its result/exception.
template <class F>
std::future<void> serve_one(comm_test::loopback_listener& l, ssl_abstract_context ctx, F serve) {
  return std::async(std::launch::async, [&l, ctx, serve]() mutable {
    engine_connection conn(l.accept_one(), ctx, server_params());
    serve(conn);
  });
}

TEST(GnuTLSEngine, HandshakeEchoAndCleanClose) {
  comm_test::loopback_listener l;
  auto server_ctx = create_ssl_server_context(server_options());
  auto done = serve_one(l, server_ctx, [](engine_connection& s) {
    s.handshake();
    std::string got = s.read_exact(5);
    s.write_all(got + got);
    EXPECT_EQ(s.read_some(), "");  // the client's close_notify
    s.shutdown();
  });
  engine_connection c(comm_test::connect_loopback(l.port), create_ssl_client_context(client_options()), client_params());
  c.handshake();
  c.write_all("hello");
  EXPECT_EQ(c.read_exact(10), "hellohello");
  EXPECT_EQ(ssl_connection_protocol_version(c), ssl_protocol_version::tls_v1_3);
  EXPECT_EQ(ssl_connection_implementation(c), ssl_implementation::gnutls);
  EXPECT_EQ(ssl_connection_cipher(c), "TLS_AES_256_GCM_SHA384");
  verify_result v = ssl_connection_verify(c);
  EXPECT_TRUE(v.ok) << v.message;
  EXPECT_EQ(v.reason, verify_reason::ok);
  auto certs = ssl_connection_get_peer_certificates_data(c);
  ASSERT_EQ(certs.size(), 2u);
  EXPECT_EQ(certs[0].subject_common_name, "localhost");
  EXPECT_EQ(certs[0].dns_names, std::vector<std::string>{"localhost"});
  EXPECT_EQ(certs[0].ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_NE(certs[0].pem.find("-----BEGIN CERTIFICATE-----"), std::string::npos);
  ssl_ref ref = ssl_connection_ssl_ref(c);
  ASSERT_TRUE(std::holds_alternative<gnutls_session_ref>(ref));
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(ref), &c);
  c.shutdown(true);
  done.get();
}

TEST(GnuTLSEngine, Tls12CipherAndFacts) {
  comm_test::loopback_listener l;
  auto so = server_options();
  so.alpn_protocols = {"h2", "http/1.1"};
  auto done = serve_one(l, create_ssl_server_context(so), [](engine_connection& s) {
    s.handshake();
    EXPECT_EQ(ssl_connection_server_name(s), "localhost");
    EXPECT_EQ(ssl_connection_alpn_protocol(s), "http/1.1");
    s.write_all("x");
  });
  auto co = client_options();
  co.protocol_version.max = ssl_protocol_version::tls_v1_2;
  co.ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256";
  co.alpn_protocols = {"http/1.1"};
  engine_connection c(comm_test::connect_loopback(l.port), create_ssl_client_context(co), client_params());
  c.handshake();
  EXPECT_EQ(c.read_exact(1), "x");
  EXPECT_EQ(ssl_connection_protocol_version(c), ssl_protocol_version::tls_v1_2);
  EXPECT_EQ(ssl_connection_cipher(c), "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(ssl_connection_alpn_protocol(c), "http/1.1");
  done.get();
}

}  // namespace
