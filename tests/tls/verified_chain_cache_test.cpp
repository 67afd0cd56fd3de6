// The verified-chain cache (ssl_context_options::verified_chain_cache): a comm client against
// openssl s_server. A chain that verified for a name is accepted again from the cache; another
// name, another chain, a failure, a configure callback or a zero lifetime each go through the
// library's full verification, with its exact reason.
#include <atomic>
#include <vector>

#include "tls/tls_test_util.hpp"
#include "tls/verified_chain_cache.hpp"

namespace comm_test {
namespace {

using comm::verify_reason;

class VerifiedChainCache : public ::testing::TestWithParam<comm::ssl_implementation> {};

struct seen {
  bool ok;
  bool from_cache;
};

// A trusting client whose verify_callback records each verdict; accept_all: connect even when
// verification failed (else the library's verdict stands).
comm::ssl_abstract_context recording_client(comm::ssl_implementation impl, std::vector<seen>& calls, bool accept_all) {
  return trusting_client(impl, [&calls, accept_all](auto& o) {
    o.verify_callback = [&calls, accept_all](comm::ssl_connection&, const comm::verify_result& r) {
      calls.push_back({r.ok, r.from_cache});
      return accept_all || r.ok;
    };
  });
}

// One handshake of `ctx` against the server with `params`, then a line echoed (s_server -rev).
comm::verify_result connect_and_echo(const openssl_server& server, const comm::ssl_abstract_context& ctx,
                                     comm::detail::engine_params params = client_params()) {
  engine_connection c(connect_loopback(server.port), ctx, std::move(params));
  c.handshake();
  c.write_all("abc\n");
  EXPECT_EQ(c.read_exact(4), "cba\n");
  return comm::ssl_connection_verify(c);
}

void expect_verdict(const comm::verify_result& v, verify_reason reason, bool from_cache) {
  EXPECT_EQ(v.ok, reason == verify_reason::ok);
  EXPECT_EQ(v.reason, reason);
  EXPECT_EQ(v.from_cache, from_cache);
}

verify_reason refusal(const openssl_server& server, const comm::ssl_abstract_context& ctx,
                      comm::detail::engine_params params = client_params()) {
  engine_connection c(connect_loopback(server.port), ctx, std::move(params));
  try {
    c.handshake();
  } catch (const comm::ssl_verification_failure& e) {
    return e.reason();
  }
  ADD_FAILURE() << "handshake succeeded";
  return verify_reason::ok;
}

TEST_P(VerifiedChainCache, TheSameChainForTheSameNameIsAcceptedFromTheCache) {
  openssl_server server(s_server_args(pki().good));
  std::vector<seen> calls;
  auto ctx = recording_client(GetParam(), calls, false);
  expect_verdict(connect_and_echo(server, ctx), verify_reason::ok, false);
  for (int i = 0; i < 3; ++i) expect_verdict(connect_and_echo(server, ctx), verify_reason::ok, true);
  // The user's callback runs on every handshake and is told where the verdict came from.
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_TRUE(calls[0].ok && !calls[0].from_cache);
  for (int i = 1; i < 4; ++i) EXPECT_TRUE(calls[i].ok && calls[i].from_cache) << i;
}

TEST_P(VerifiedChainCache, AnotherNameIsCheckedAgain) {
  openssl_server server(s_server_args(pki().good));  // DNS localhost, IP 127.0.0.1
  auto ctx = trusting_client(GetParam());
  EXPECT_FALSE(connect_and_echo(server, ctx).from_cache);
  EXPECT_TRUE(connect_and_echo(server, ctx).from_cache);
  // The same chain for a name it does not carry is refused, cached or not.
  EXPECT_EQ(refusal(server, ctx, client_params("other.example.com")), verify_reason::host_name_mismatch);
  EXPECT_EQ(refusal(server, ctx, client_params("other.example.com")), verify_reason::host_name_mismatch);
  // A name it carries is its own entry.
  EXPECT_FALSE(connect_and_echo(server, ctx, client_params("127.0.0.1")).from_cache);
  EXPECT_TRUE(connect_and_echo(server, ctx, client_params("127.0.0.1")).from_cache);
}

TEST_P(VerifiedChainCache, AnotherChainForTheSameNameIsCheckedAgain) {
  auto ctx = trusting_client(GetParam());
  {
    openssl_server good(s_server_args(pki().good));
    connect_and_echo(good, ctx);
    EXPECT_TRUE(connect_and_echo(good, ctx).from_cache);
  }
  // Same name (localhost), other chains: each fails for its own reason.
  openssl_server untrusted(s_server_args(pki().untrusted));
  EXPECT_EQ(refusal(untrusted, ctx), verify_reason::unknown_issuer);
  openssl_server self_signed(s_server_args(pki().self_signed));
  EXPECT_EQ(refusal(self_signed, ctx), verify_reason::self_signed);
  openssl_server expired(s_server_args(pki().expired));
  EXPECT_EQ(refusal(expired, ctx), verify_reason::expired);
}

TEST_P(VerifiedChainCache, FailuresAreNeverCached) {
  openssl_server expired(s_server_args(pki().expired));
  std::vector<seen> calls;
  // The callback accepts everything, so failed chains still connect and can be seen again.
  auto ctx = recording_client(GetParam(), calls, true);
  for (int i = 0; i < 2; ++i) expect_verdict(connect_and_echo(expired, ctx), verify_reason::expired, false);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(!calls[0].ok && !calls[0].from_cache);
  EXPECT_TRUE(!calls[1].ok && !calls[1].from_cache);
}

TEST_P(VerifiedChainCache, ZeroTurnsItOff) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam(), [](auto& o) { o.verified_chain_cache = std::chrono::seconds(0); });
  for (int i = 0; i < 2; ++i) expect_verdict(connect_and_echo(server, ctx), verify_reason::ok, false);
}

TEST_P(VerifiedChainCache, AConnectionConfigureCallbackBypassesIt) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam());
  EXPECT_FALSE(connect_and_echo(server, ctx).from_cache);
  std::atomic<int> configured{0};
  auto params = client_params();
  params.ssl_configure = [&](const comm::ssl_ref&) { ++configured; };
  EXPECT_FALSE(connect_and_echo(server, ctx, params).from_cache);
  EXPECT_EQ(configured.load(), 1);
  // Connections without one still use it.
  EXPECT_TRUE(connect_and_echo(server, ctx).from_cache);
}

TEST_P(VerifiedChainCache, ACtxConfigureCallbackTurnsItOffForTheContext) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam());
  connect_and_echo(server, ctx);
  EXPECT_TRUE(connect_and_echo(server, ctx).from_cache);
  auto params = client_params();
  params.ctx_configure = [](const comm::ssl_ctx_ref&) {};  // may have changed the shared trust
  EXPECT_FALSE(connect_and_echo(server, ctx, params).from_cache);
  EXPECT_FALSE(connect_and_echo(server, ctx).from_cache);
}

TEST_P(VerifiedChainCache, NativeConfigureCallbacksInTheOptionsTurnItOff) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam(), [impl = GetParam()](auto& o) {
    if (impl == comm::ssl_implementation::openssl)
      o.openssl_ssl_configure_callback = [](comm::ssl_pointer) {};
    else
      o.gnutls_session_configure_callback = [](comm::gnutls_session_ref) {};
  });
  for (int i = 0; i < 2; ++i) EXPECT_FALSE(connect_and_echo(server, ctx).from_cache);
}

TEST_P(VerifiedChainCache, AResetStartsEmpty) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam());
  connect_and_echo(server, ctx);
  EXPECT_TRUE(connect_and_echo(server, ctx).from_cache);
  comm::reset_ssl_abstract_context(ctx);  // trust files are read again
  EXPECT_FALSE(connect_and_echo(server, ctx).from_cache);
  EXPECT_TRUE(connect_and_echo(server, ctx).from_cache);
}

INSTANTIATE_TEST_SUITE_P(Implementations, VerifiedChainCache, ::testing::ValuesIn(tested_implementations()),
                         [](const auto& info) { return std::string(comm::to_string(info.param)); });

// The cache itself, with explicit times.
using cache = comm::detail::verified_chain_cache;

TEST(VerifiedChainCacheEntries, LastUntilTheLifetimeOrTheEarliestExpiry) {
  const auto t0 = cache::clock::now();
  cache c(std::chrono::seconds(60));
  c.insert("ttl", t0, cache::clock::time_point::max());
  EXPECT_TRUE(c.contains("ttl", t0 + std::chrono::seconds(59)));
  EXPECT_FALSE(c.contains("ttl", t0 + std::chrono::seconds(60)));
  EXPECT_FALSE(c.contains("ttl", t0));  // an expired entry is dropped when found
  c.insert("cert", t0, t0 + std::chrono::seconds(5));  // a certificate expires first
  EXPECT_TRUE(c.contains("cert", t0 + std::chrono::seconds(4)));
  EXPECT_FALSE(c.contains("cert", t0 + std::chrono::seconds(5)));
  c.insert("gone", t0, t0);  // already expired: not kept
  EXPECT_FALSE(c.contains("gone", t0 - std::chrono::seconds(1)));
  c.insert("unknown", t0, cache::clock::time_point::min());
  EXPECT_EQ(c.size(), 0u);
}

TEST(VerifiedChainCacheEntries, KeysTellTheirPartsApart) {
  auto k = [](comm::ssl_side side, const char* host, std::vector<std::string> certs) {
    std::string key = cache::key(side, host);
    for (const auto& der : certs)
      cache::add_certificate(key, {reinterpret_cast<const unsigned char*>(der.data()), der.size()});
    return key;
  };
  EXPECT_NE(k(comm::ssl_side::client, "a", {"bc"}), k(comm::ssl_side::client, "ab", {"c"}));
  EXPECT_NE(k(comm::ssl_side::client, "a", {"b", "c"}), k(comm::ssl_side::client, "a", {"bc"}));
  EXPECT_NE(k(comm::ssl_side::client, "", {"x"}), k(comm::ssl_side::server, "", {"x"}));
  EXPECT_EQ(k(comm::ssl_side::client, "a", {"b", "c"}), k(comm::ssl_side::client, "a", {"b", "c"}));
}

TEST(VerifiedChainCacheEntries, StayBoundedWhenFull) {
  const auto t0 = cache::clock::now();
  cache c(std::chrono::seconds(60), 4);
  for (int i = 0; i < 4; ++i) c.insert("old" + std::to_string(i), t0, t0 + std::chrono::seconds(1));
  // Full of expired entries: they make room.
  c.insert("new", t0 + std::chrono::seconds(2), cache::clock::time_point::max());
  EXPECT_EQ(c.size(), 1u);
  for (int i = 0; i < 10; ++i) c.insert("live" + std::to_string(i), t0, cache::clock::time_point::max());
  EXPECT_LE(c.size(), 4u);
  EXPECT_TRUE(c.contains("live9", t0));
}

}  // namespace
}  // namespace comm_test
