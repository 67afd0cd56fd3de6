// keylog_callback: NSS key log lines (what Wireshark reads to decrypt a capture) from both
// implementations, for TLS 1.2 and 1.3. Client and server of one connection derive the same
// secrets, so their lines must be identical; each line names the connection by its client random.
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <tuple>

#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using params = std::tuple<comm::ssl_implementation, comm::ssl_protocol_version>;

struct keylog_sink {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::set<const comm::ssl_connection*> connections;
  comm::keylog_callback callback() {
    return [this](const comm::ssl_connection& conn, std::string_view line) {
      std::lock_guard lock(mutex);
      lines.emplace_back(line);
      connections.insert(&conn);
    };
  }
};

// label -> secret, checking the NSS format and that one client random names every line.
std::map<std::string, std::string> parse(const std::vector<std::string>& lines, std::string& client_random) {
  static const std::regex nss("^([A-Z0-9_]+) ([0-9a-f]{64}) ([0-9a-f]{64,})$");
  std::map<std::string, std::string> out;
  for (const auto& line : lines) {
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, nss)) << "not an NSS key log line: " << line;
    if (m.empty()) continue;
    if (client_random.empty()) client_random = m[2];
    EXPECT_EQ(m[2], client_random) << line;
    out[m[1]] = m[3];
  }
  return out;
}

class Keylog : public ::testing::TestWithParam<params> {};

TEST_P(Keylog, BothSidesLogTheSameSecretsInNssFormat) {
  const auto impl = std::get<0>(GetParam());
  const auto version = std::get<1>(GetParam());
  keylog_sink client_log, server_log;
  auto server_ctx = server_with(impl, pki().good, [&](comm::ssl_context_options& o) {
    o.protocol_version.max = version;
    o.keylog_callback = server_log.callback();
  });
  auto client_ctx = trusting_client(impl, [&](comm::ssl_context_options& o) {
    o.protocol_version.max = version;
    o.session_resumption = false;
    o.keylog_callback = client_log.callback();
  });
  loopback_listener l;
  const comm::ssl_connection* server_conn = nullptr;
  auto served = std::async(std::launch::async, [&] {
    engine_connection s(l.accept_one(), server_ctx, server_params());
    server_conn = &s;
    s.handshake();
    s.write_all(s.read_exact(4));
    EXPECT_EQ(s.read_some(), "");  // the client's close_notify
    s.shutdown();
  });
  engine_connection c(connect_loopback(l.port), client_ctx, client_params());
  c.handshake();
  c.write_all("ping");
  EXPECT_EQ(c.read_exact(4), "ping");
  c.shutdown(true);
  served.get();
  EXPECT_EQ(comm::ssl_connection_protocol_version(c), version);

  std::string client_random, server_side_random;
  const auto client_secrets = parse(client_log.lines, client_random);
  const auto server_secrets = parse(server_log.lines, server_side_random);
  EXPECT_EQ(client_random, server_side_random);
  EXPECT_EQ(client_log.connections, std::set<const comm::ssl_connection*>{&c});
  EXPECT_EQ(server_log.connections, std::set<const comm::ssl_connection*>{server_conn});
  if (version == comm::ssl_protocol_version::tls_v1_2) {
    ASSERT_EQ(client_secrets.count("CLIENT_RANDOM"), 1u);
    EXPECT_EQ(client_secrets.at("CLIENT_RANDOM").size(), 96u);  // the 48-byte master secret
    EXPECT_EQ(server_secrets.count("CLIENT_RANDOM"), 1u);
    EXPECT_EQ(client_secrets.at("CLIENT_RANDOM"), server_secrets.at("CLIENT_RANDOM"));
  } else {
    for (const char* label : {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                              "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"}) {
      ASSERT_EQ(client_secrets.count(label), 1u) << label;
      ASSERT_EQ(server_secrets.count(label), 1u) << label;
      EXPECT_EQ(client_secrets.at(label), server_secrets.at(label)) << label;
    }
    EXPECT_EQ(client_secrets.count("CLIENT_RANDOM"), 0u);
  }
}

// Off by default: a context without the callback logs nothing (and nothing breaks).
TEST_P(Keylog, OffByDefault) {
  const auto impl = std::get<0>(GetParam());
  const auto version = std::get<1>(GetParam());
  comm::ssl_context_options o;
  EXPECT_FALSE(o.keylog_callback);
  auto server_ctx = server_with(impl, pki().good, [&](comm::ssl_context_options& so) { so.protocol_version.max = version; });
  loopback_listener l;
  auto served = std::async(std::launch::async, [&] {
    engine_connection s(l.accept_one(), server_ctx, server_params());
    s.handshake();
  });
  engine_connection c(connect_loopback(l.port), trusting_client(impl), client_params());
  c.handshake();
  served.get();
  EXPECT_FALSE(server_ctx.options().keylog_callback);
}

INSTANTIATE_TEST_SUITE_P(Implementations, Keylog,
                         ::testing::Combine(::testing::Values(comm::ssl_implementation::openssl,
                                                              comm::ssl_implementation::gnutls),
                                            ::testing::Values(comm::ssl_protocol_version::tls_v1_2,
                                                              comm::ssl_protocol_version::tls_v1_3)),
                         [](const ::testing::TestParamInfo<params>& info) {
                           return std::string(comm::to_string(std::get<0>(info.param))) + "_" +
                                  (std::get<1>(info.param) == comm::ssl_protocol_version::tls_v1_3 ? "tls13" : "tls12");
                         });

}  // namespace
}  // namespace comm_test
