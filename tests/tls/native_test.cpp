// Native references and ownership: ssl_ref holds the live SSL*, lookups by reference, adopted SSL*
// freed exactly once, borrowed SSL_CTX* never freed; STARTTLS against Python; resumption; certificates.
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <thread>

#include "comm/stream.hpp"
#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using namespace std::chrono_literals;

comm::open_tcp_stream_options tls_client(comm::client_ssl_ctx_spec ctx) {
  comm::open_tcp_stream_options o;
  o.ssl_ctx = std::move(ctx);
  o.handshake_timeout = 5s;
  o.read_timeout = 5s;
  o.write_timeout = 5s;
  return o;
}

std::string roundtrip(comm::socket_stream& s, const std::string& line) {
  s.write_all(line + "\n");
  s.flush();
  return s.read_line().value_or("<eof>");
}

// s_server -rev reverses each line.
std::string reversed(std::string s) { return {s.rbegin(), s.rend()}; }

TEST(OpenSslNative, SslRefHoldsTheLiveSslAndFindsItsConnection) {
  openssl_server server(s_server_args(pki().good));
  auto s = comm::open_tcp_stream("localhost", server.port, tls_client(trusting_client(comm::ssl_implementation::openssl)));
  comm::ssl_ref ref = comm::ssl_connection_ssl_ref(s);
  auto* p = std::get_if<comm::ssl_pointer>(&ref);
  ASSERT_NE(p, nullptr);
  ASSERT_NE(p->ptr, nullptr);
  EXPECT_EQ(SSL_is_init_finished(p->ptr), 1);
  EXPECT_EQ(std::string(SSL_get_cipher_name(p->ptr)), comm::ssl_connection_cipher(s));
  EXPECT_EQ(comm::find_ssl_connection_from_ssl_ref(ref), &s);
  comm::socket_stream moved = std::move(s);
  EXPECT_EQ(comm::find_ssl_connection_from_ssl_ref(ref), &moved);
  moved.close();
  EXPECT_EQ(comm::find_ssl_connection_from_ssl_ref(ref), nullptr);
  auto ctx_ref = comm::ssl_ctx_ref{};
  EXPECT_TRUE(std::holds_alternative<comm::ssl_ctx_pointer>(ctx_ref));
}

TEST(OpenSslNative, BorrowedSslCtxIsNeverFreed) {
  openssl_server server(s_server_args(pki().good));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_EQ(SSL_CTX_load_verify_locations(ctx, pki().ca_file.c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  {
    auto s = comm::open_tcp_stream("localhost", server.port, tls_client(comm::ssl_ctx_pointer{ctx}));
    auto ctx_ref = comm::ssl_connection_ctx_ref(s);
    EXPECT_EQ(std::get<comm::ssl_ctx_pointer>(ctx_ref).ptr, ctx);
    EXPECT_EQ(roundtrip(s, "borrowed"), reversed("borrowed"));
  }
  // Used again after the first connection is gone: comm did not free it (s_server serves one
  // client at a time, so a second server).
  openssl_server second(s_server_args(pki().good));
  auto s = comm::open_tcp_stream("localhost", second.port, tls_client(comm::ssl_ctx_pointer{ctx}));
  EXPECT_EQ(roundtrip(s, "again"), reversed("again"));
  s.close();
  SSL_CTX_free(ctx);  // ours: ASan reports a double free if comm had freed it
}

TEST(OpenSslNative, AdoptedSslIsUsedAsConfiguredAndFreedOnce) {
  openssl_server server(s_server_args(pki().good));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, pki().ca_file.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_CTX_free(ctx);  // the SSL keeps its own reference
  SSL_set_tlsext_host_name(ssl, "localhost");
  SSL_set1_host(ssl, "localhost");
  SSL_set_ciphersuites(ssl, "TLS_AES_128_GCM_SHA256");  // comm must not override this
  comm::socket_stream s(comm::connect_to_tcp_server("127.0.0.1", server.port), {.read_timeout = 5s});
  comm::attach_ssl_options a;
  a.ssl_ctx = comm::adopted_ssl_pointer(ssl);
  a.ssl_side = comm::ssl_side::client;
  a.handshake_timeout = 5s;
  comm::ssl_ref ref = comm::attach_ssl(s, std::move(a));
  EXPECT_EQ(std::get<comm::ssl_pointer>(ref).ptr, ssl);
  EXPECT_EQ(comm::ssl_connection_cipher(s), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(comm::ssl_connection_server_name(s), "localhost");
  EXPECT_EQ(roundtrip(s, "adopted"), reversed("adopted"));
  s.close();  // frees the SSL; ASan reports a leak or a double free otherwise
}

TEST(OpenSslNative, AdoptedSslIsFreedWhenAttachingFails) {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  std::thread garbage([&] {
    auto c = listener.accept(5s);
    if (c) {
      ::send(c->get(), "not tls at all\r\n\r\n", 18, MSG_NOSIGNAL);
      char b[1024];
      (void)::recv(c->get(), b, sizeof b, 0);
    }
  });
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  SSL_CTX_free(ctx);
  comm::socket_stream s(comm::connect_to_tcp_server("127.0.0.1", std::to_string(listener.local_port())),
                        {.read_timeout = 5s});
  comm::attach_ssl_options a;
  a.ssl_ctx = comm::adopted_ssl_pointer(ssl);
  a.ssl_side = comm::ssl_side::client;
  a.handshake_timeout = 5s;
  EXPECT_THROW(comm::attach_ssl(s, std::move(a)), comm::ssl_failure);
  EXPECT_FALSE(s.is_ssl());
  garbage.join();
}

TEST(OpenSslNative, ConfigureCallbacksSeeNativeHandles) {
  openssl_server server(s_server_args(pki().good));
  SSL_CTX* seen_ctx = nullptr;
  SSL* seen_ssl = nullptr;
  auto ctx = trusting_client(comm::ssl_implementation::openssl, [&](comm::ssl_context_options& o) {
    o.openssl_ctx_configure_callback = [&](comm::ssl_ctx_pointer p) { seen_ctx = p.ptr; };
    o.openssl_ssl_configure_callback = [&](comm::ssl_pointer p) { seen_ssl = p.ptr; };
  });
  auto s = comm::open_tcp_stream("localhost", server.port, tls_client(ctx));
  EXPECT_EQ(std::get<comm::ssl_pointer>(comm::ssl_connection_ssl_ref(s)).ptr, seen_ssl);
  EXPECT_EQ(std::get<comm::ssl_ctx_pointer>(comm::ssl_connection_ctx_ref(s)).ptr, seen_ctx);
}

class Native : public ::testing::TestWithParam<comm::ssl_implementation> {};

TEST_P(Native, StartTlsAndBackAgainstPython) {
  python_server peer("tls_peer.py", {"starttls", pki().good.cert_file, pki().good.key_file});
  auto s = comm::open_tcp_stream("127.0.0.1", peer.port, {.read_timeout = 5s, .write_timeout = 5s});
  EXPECT_EQ(roundtrip(s, "hello"), "plain ok");
  EXPECT_EQ(roundtrip(s, "STARTTLS"), "go ahead");
  comm::attach_ssl_options a;
  a.ssl_ctx = trusting_client(GetParam());
  a.ssl_side = comm::ssl_side::client;
  a.tlsext_host_name = "localhost";
  a.handshake_timeout = 5s;
  comm::attach_ssl(s, std::move(a));
  EXPECT_EQ(roundtrip(s, "secret"), "tls: secret");
  EXPECT_EQ(roundtrip(s, "STOPTLS"), "stopping");
  comm::detach_ssl(s);
  EXPECT_FALSE(s.is_ssl());
  EXPECT_EQ(roundtrip(s, "after"), "plain again");
  EXPECT_EQ(peer.process.wait_for("^DONE$"), "DONE");
}

TEST_P(Native, SecondConnectResumesTheSession) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam());
  for (int i = 0; i < 2; ++i) {
    auto s = comm::open_tcp_stream("localhost", server.port, tls_client(ctx));
    EXPECT_EQ(comm::ssl_connection_session_reused(s), i == 1) << "connection " << i;
    EXPECT_EQ(roundtrip(s, "resume"), reversed("resume"));  // TLS 1.3 tickets arrive after the handshake
    s.close();
  }
}

TEST_P(Native, PeerCertificateData) {
  openssl_server server(s_server_args(pki().good));
  auto s = comm::open_tcp_stream("localhost", server.port, tls_client(trusting_client(GetParam())));
  auto certs = comm::ssl_connection_get_peer_certificates_data(s);
  ASSERT_EQ(certs.size(), 2u);  // leaf, intermediate
  const auto& leaf = certs[0];
  EXPECT_EQ(leaf.subject_common_name, "localhost");
  EXPECT_EQ(leaf.issuer_common_name, "comm test intermediate CA");
  EXPECT_NE(leaf.subject.find("localhost"), std::string::npos);
  EXPECT_EQ(leaf.dns_names, std::vector<std::string>{"localhost"});
  EXPECT_EQ(leaf.ip_addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
  EXPECT_FALSE(leaf.serial_number.empty());
  EXPECT_EQ(leaf.serial_number.find_first_not_of("0123456789ABCDEF"), std::string::npos) << leaf.serial_number;
  EXPECT_LT(leaf.not_before, std::chrono::system_clock::now());
  EXPECT_GT(leaf.not_after, std::chrono::system_clock::now());
  EXPECT_EQ(leaf.pem.rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  EXPECT_NE(pki().good.cert_pem.find(leaf.pem), std::string::npos);
  EXPECT_EQ(certs[1].subject_common_name, "comm test intermediate CA");
  EXPECT_EQ(certs[1].issuer_common_name, "comm test root CA");

  auto natives = comm::ssl_connection_copy_peer_certificates(s);
  ASSERT_EQ(natives.size(), 2u);
  if (GetParam() == comm::ssl_implementation::openssl) {
    ASSERT_NE(natives[0].x509(), nullptr);
    EXPECT_EQ(natives[0].gnutls_crt(), nullptr);
  } else {
    ASSERT_NE(natives[0].gnutls_crt(), nullptr);
  }
  s.close();
  natives.clear();  // the copies outlive the connection and are freed here
}

INSTANTIATE_TEST_SUITE_P(Implementations, Native, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

}  // namespace
}  // namespace comm_test
