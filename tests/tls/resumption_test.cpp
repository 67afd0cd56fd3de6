// Client session resumption at engine level, for each implementation and protocol version. The
// first connection ends without close_notify (the engine destroyed without shutdown, as the
// async layer does when it closes a connection it was not asked to shut down): its session must
// still resume the next connection.
#include <gtest/gtest.h>

#include <tuple>

#include "engine_pair.hpp"

namespace {

using params = std::tuple<comm::ssl_implementation, comm::ssl_protocol_version>;

class EngineResumption : public ::testing::TestWithParam<params> {
 protected:
  void SetUp() override {
    const auto [impl, version] = GetParam();
    const auto creds = comm::make_demo_credentials("localhost");
    comm::ssl_context_options so;
    so.implementation = impl;
    so.cert_pem = creds.cert_pem;
    so.key_pem = creds.key_pem;
    so.protocol_version.max = version;
    comm::ssl_context_options co;
    co.implementation = impl;
    co.trusted_pem = creds.ca_cert_pem;
    co.protocol_version.max = version;
    server_options = so;
    server_ctx = comm::create_ssl_server_context(so);
    client_ctx = comm::create_ssl_client_context(co);
  }
  comm::ssl_context_options server_options;
  comm::ssl_abstract_context server_ctx, client_ctx;
};

TEST_P(EngineResumption, ResumesAfterAConnectionClosedWithoutCloseNotify) {
  {
    comm_test::engine_pair first(client_ctx, server_ctx, "localhost:443");
    ASSERT_TRUE(first.handshake());
    EXPECT_FALSE(first.client->session_reused());
    ASSERT_EQ(first.server_to_client("hello"), "hello");  // TLS 1.3 tickets come before it
    EXPECT_FALSE(first.client->close_notify_sent());
  }  // both engines freed without shutdown: an aborted connection
  comm_test::engine_pair second(client_ctx, server_ctx, "localhost:443");
  ASSERT_TRUE(second.handshake());
  EXPECT_TRUE(second.client->session_reused());
  EXPECT_TRUE(second.server->session_reused());
  EXPECT_EQ(second.server_to_client("again"), "again");
}

TEST_P(EngineResumption, ResumesAfterACleanClose) {
  {
    comm_test::engine_pair first(client_ctx, server_ctx, "localhost:443");
    ASSERT_TRUE(first.handshake());
    ASSERT_EQ(first.server_to_client("hello"), "hello");
    EXPECT_EQ(first.client->shutdown().status, comm::detail::tls_status::done);
    EXPECT_TRUE(first.client->close_notify_sent());
  }
  comm_test::engine_pair second(client_ctx, server_ctx, "localhost:443");
  ASSERT_TRUE(second.handshake());
  EXPECT_TRUE(second.client->session_reused());
}

TEST_P(EngineResumption, AnotherKeyDoesNotResume) {
  {
    comm_test::engine_pair first(client_ctx, server_ctx, "localhost:443");
    ASSERT_TRUE(first.handshake());
    ASSERT_EQ(first.server_to_client("hello"), "hello");
  }
  comm_test::engine_pair second(client_ctx, server_ctx, "localhost:8443");
  ASSERT_TRUE(second.handshake());
  EXPECT_FALSE(second.client->session_reused());
}

// A server context with session_resumption off issues no tickets and keeps no session cache: the
// client, which caches sessions, makes a full handshake every time.
TEST_P(EngineResumption, AServerWithoutResumptionMakesEveryHandshakeFull) {
  comm::ssl_context_options so = server_options;
  so.session_resumption = false;
  const auto no_resumption = comm::create_ssl_server_context(so);
  for (int i = 0; i < 2; ++i) {
    comm_test::engine_pair pair(client_ctx, no_resumption, "localhost:443");
    ASSERT_TRUE(pair.handshake());
    EXPECT_FALSE(pair.client->session_reused()) << "connection " << i;
    EXPECT_FALSE(pair.server->session_reused()) << "connection " << i;
    ASSERT_EQ(pair.server_to_client("hello"), "hello");
    EXPECT_EQ(pair.client->shutdown().status, comm::detail::tls_status::done);
  }
}

INSTANTIATE_TEST_SUITE_P(Implementations, EngineResumption,
                         ::testing::Combine(::testing::Values(comm::ssl_implementation::openssl,
                                                              comm::ssl_implementation::gnutls),
                                            ::testing::Values(comm::ssl_protocol_version::tls_v1_2,
                                                              comm::ssl_protocol_version::tls_v1_3)),
                         [](const ::testing::TestParamInfo<params>& info) {
                           return std::string(comm::to_string(std::get<0>(info.param))) + "_" +
                                  (std::get<1>(info.param) == comm::ssl_protocol_version::tls_v1_3 ? "tls13" : "tls12");
                         });

}  // namespace
