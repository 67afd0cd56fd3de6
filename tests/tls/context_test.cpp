// Abstract contexts: PEM in memory, protocol keywords, certificate rotation with
// reset_ssl_abstract_context, certificates loaded into a live connection, roles chosen later.
#include <openssl/ssl.h>

#include <fstream>
#include <thread>

#include "comm/stream.hpp"
#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using namespace std::chrono_literals;

class Contexts : public ::testing::TestWithParam<comm::ssl_implementation> {};

comm::attach_ssl_options side(comm::ssl_ctx_spec ctx, comm::ssl_side s, std::string host = {}) {
  comm::attach_ssl_options a;
  a.ssl_ctx = std::move(ctx);
  a.ssl_side = s;
  a.tlsext_host_name = std::move(host);
  a.handshake_timeout = 5s;
  return a;
}

// Runs a TLS server handshake on one end of a loopback pair in a thread, the client here.
struct tls_pair {
  comm::socket_stream client, server;
  tls_pair() {
    auto l = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
    client = comm::socket_stream(comm::connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port())),
                                 {.read_timeout = 5s, .write_timeout = 5s});
    server = comm::socket_stream(std::move(*l.accept(5s)), {.read_timeout = 5s, .write_timeout = 5s});
  }
  // Attaches both ends; the server's error (if any) is rethrown after the client's.
  void attach(comm::attach_ssl_options server_side, comm::attach_ssl_options client_side) {
    std::exception_ptr server_error;
    std::thread t([&] {
      try {
        comm::attach_ssl(server, std::move(server_side));
      } catch (...) {
        server_error = std::current_exception();
      }
    });
    try {
      comm::attach_ssl(client, std::move(client_side));
    } catch (...) {
      server.close();
      t.join();
      throw;
    }
    t.join();
    if (server_error) std::rethrow_exception(server_error);
  }
};

TEST_P(Contexts, CertificateKeyAndTrustFromMemory) {
  auto server_ctx = comm::create_ssl_server_context(options([&](auto& o) {
    o.implementation = GetParam();
    o.cert_pem = pki().good.cert_pem;
    o.key_pem = pki().good.key_pem;
  }));
  auto client_ctx = comm::create_ssl_client_context(options([&](auto& o) {
    o.implementation = GetParam();
    o.trusted_pem = pki().ca_pem;
  }));
  tls_pair p;
  p.attach(side(server_ctx, comm::ssl_side::server), side(client_ctx, comm::ssl_side::client, "localhost"));
  EXPECT_TRUE(comm::ssl_connection_verify(p.client).ok);
  EXPECT_EQ(comm::ssl_connection_server_name(p.server), "localhost");
}

TEST_P(Contexts, ResetRereadsRotatedCertificateFiles) {
  const std::string cert = pki().dir + "/rotating-" + std::string(comm::to_string(GetParam())) + ".crt";
  const std::string key = pki().dir + "/rotating-" + std::string(comm::to_string(GetParam())) + ".key";
  auto put = [&](const credential& c) {
    std::ofstream(cert, std::ios::trunc) << c.cert_pem;
    std::ofstream(key, std::ios::trunc) << c.key_pem;
  };
  put(pki().good);
  auto server_ctx = comm::create_ssl_server_context(options([&](auto& o) {
    o.implementation = GetParam();
    o.cert_file = cert;
    o.key_file = key;
  }));
  auto client_ctx = trusting_client(GetParam(), [](auto& o) { o.verify = comm::peer_verification::none; });
  auto leaf_cn = [&] {
    tls_pair p;
    p.attach(side(server_ctx, comm::ssl_side::server), side(client_ctx, comm::ssl_side::client, "localhost"));
    return comm::ssl_connection_get_peer_certificates_data(p.client).at(0).subject_common_name;
  };
  EXPECT_EQ(leaf_cn(), "localhost");
  put(pki().alt_host);
  EXPECT_EQ(leaf_cn(), "localhost");  // cached until reset
  comm::reset_ssl_abstract_context(server_ctx);
  EXPECT_EQ(leaf_cn(), "alt.example.com");
}

TEST_P(Contexts, ReadCertificatesIntoALiveServerConnection) {
  // A server context whose certificate comes later, per connection (e.g. picked by SNI).
  auto server_ctx = server_with(GetParam(), pki().good);
  tls_pair p;
  comm::attach_ssl_options s = side(server_ctx, comm::ssl_side::server);
  s.defer_handshake = true;
  comm::attach_ssl(p.server, std::move(s));
  comm::ssl_connection_read_certificates(p.server, pki().alt_host.key_file, {pki().alt_host.cert_file, "", {}});
  std::thread t([&] { EXPECT_TRUE(comm::socket_stream_handshake(p.server, 5s)); });
  auto c = side(trusting_client(GetParam()), comm::ssl_side::client, "alt.example.com");
  comm::attach_ssl(p.client, std::move(c));
  t.join();
  EXPECT_EQ(comm::ssl_connection_get_peer_certificates_data(p.client).at(0).subject_common_name, "alt.example.com");
}

TEST_P(Contexts, SessionResumptionCanBeTurnedOff) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam(), [](auto& o) { o.session_resumption = false; });
  for (int i = 0; i < 2; ++i) {
    comm::open_tcp_stream_options o;
    o.ssl_ctx = ctx;
    o.handshake_timeout = 5s;
    o.read_timeout = 5s;
    auto s = comm::open_tcp_stream("localhost", server.port, o);
    s.write_all("x\n");
    s.flush();
    EXPECT_EQ(s.read_line(), "x");
    EXPECT_FALSE(comm::ssl_connection_session_reused(s));
  }
}

INSTANTIATE_TEST_SUITE_P(Implementations, Contexts, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

TEST(OpenSslContexts, ProtocolKeywordClientVerifiesAgainstTheSystemStore) {
  openssl_server server(s_server_args(pki().good));
  comm::open_tcp_stream_options o;
  o.ssl_ctx = comm::ssl_protocol_keyword::tls_v1_2;
  o.handshake_timeout = 5s;
  try {
    comm::open_tcp_stream("localhost", server.port, o);
    FAIL() << "the test CA is not in the system store";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::unknown_issuer) << e.what();
  }
}

TEST(OpenSslContexts, ProtocolKeywordWithCtxConfigureCallback) {
  openssl_server server(s_server_args(pki().good));
  comm::open_tcp_stream_options o;
  o.ssl_ctx = comm::ssl_protocol_keyword::tls_v1_2;
  o.handshake_timeout = 5s;
  o.read_timeout = 5s;
  o.ctx_configure_callback = [](comm::ssl_ctx_ref ref) {
    SSL_CTX* ctx = std::get<comm::ssl_ctx_pointer>(ref).ptr;
    SSL_CTX_load_verify_locations(ctx, pki().ca_file.c_str(), nullptr);
  };
  auto s = comm::open_tcp_stream("localhost", server.port, o);
  EXPECT_EQ(comm::ssl_connection_protocol_version(s), comm::ssl_protocol_version::tls_v1_2);
  EXPECT_TRUE(comm::ssl_connection_verify(s).ok);
}

TEST(OpenSslContexts, SideBothChoosesItsRoleThroughTheNativeHandle) {
  tls_pair p;
  auto server_ctx = server_with(comm::ssl_implementation::openssl, pki().good);
  std::thread t([&] {
    comm::attach_ssl_options a = side(server_ctx, comm::ssl_side::both);
    comm::attach_ssl(p.server, std::move(a));
    SSL_set_accept_state(std::get<comm::ssl_pointer>(comm::ssl_connection_ssl_ref(p.server)).ptr);
    EXPECT_TRUE(comm::socket_stream_handshake(p.server, 5s));
  });
  comm::attach_ssl(p.client, side(trusting_client(comm::ssl_implementation::openssl), comm::ssl_side::client, "localhost"));
  t.join();
  EXPECT_TRUE(comm::ssl_connection_verify(p.client).ok);
}

}  // namespace
}  // namespace comm_test
