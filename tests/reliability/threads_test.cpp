// Threaded use that must be race-free (scripts/tsan.sh runs these under ThreadSanitizer): TLS
// contexts shared by handshakes on many threads while another thread resets them (certificate
// rotation), and work posted to several running wait-state collections from many threads.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "comm/async.hpp"
#include "comm/tls.hpp"
#include "tls/engine.hpp"
#include "tls/engine_pair.hpp"

namespace {

using comm::detail::tls_status;

// A memory pipe between two engines (each thread has its own).
using mem_end = comm_test::memory_end;

bool handshake_pair(const comm::ssl_abstract_context& client_ctx, const comm::ssl_abstract_context& server_ctx) {
  std::string c2s, s2c;
  mem_end ct(&s2c, &c2s), st(&c2s, &s2c);
  comm::detail::engine_params cp;
  cp.side = comm::ssl_side::client;
  cp.sni = cp.host_name = "localhost";
  comm::detail::engine_params sp;
  sp.side = comm::ssl_side::server;
  auto c = comm::detail::make_engine(comm::ssl_ctx_spec(client_ctx), cp, ct);
  auto s = comm::detail::make_engine(comm::ssl_ctx_spec(server_ctx), sp, st);
  for (int i = 0; i < 50 && !(c->handshake_done() && s->handshake_done()); ++i) {
    if (c->handshake().status == tls_status::error || s->handshake().status == tls_status::error) return false;
  }
  if (!c->handshake_done() || !s->handshake_done()) return false;
  const char msg[] = "shared";
  if (c->write(msg, sizeof msg).status != tls_status::done) return false;
  char buf[64];
  auto r = s->read(buf, sizeof buf);
  return r.status == tls_status::done && r.bytes == sizeof msg && std::memcmp(buf, msg, sizeof msg) == 0;
}

TEST(Threads, ContextsSharedAcrossThreadsWhileAnotherThreadResetsThem) {
  const auto creds = comm::make_demo_credentials("localhost");
  for (auto impl : {comm::ssl_implementation::openssl, comm::ssl_implementation::gnutls}) {
    if (!comm::ssl_implementation_available(impl)) continue;
    SCOPED_TRACE(std::string(comm::to_string(impl)));
    comm::ssl_context_options so;
    so.implementation = impl;
    so.cert_pem = creds.cert_pem;
    so.key_pem = creds.key_pem;
    auto server_ctx = comm::create_ssl_server_context(so);
    comm::ssl_context_options co;
    co.implementation = impl;
    co.trusted_pem = creds.ca_cert_pem;
    co.session_resumption = false;
    auto client_ctx = comm::create_ssl_client_context(co);

    std::atomic<int> ok{0}, failed{0};
    std::atomic<bool> done{false};
    std::thread resetter([&] {
      for (int i = 0; i < 200 && !done; ++i) {
        comm::reset_ssl_abstract_context(server_ctx);
        comm::reset_ssl_abstract_context(client_ctx);
        std::this_thread::yield();
      }
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < 6; ++t)
      workers.emplace_back([&] {
        for (int i = 0; i < 8; ++i) (handshake_pair(client_ctx, server_ctx) ? ok : failed)++;
      });
    for (auto& w : workers) w.join();
    done = true;
    resetter.join();
    EXPECT_EQ(ok.load(), 48);
    EXPECT_EQ(failed.load(), 0);
  }
}

TEST(Threads, WorkPostedFromManyThreadsToSeveralCollectionsRunsOnceInOrder) {
  constexpr int collections = 3, posters = 4, per_poster = 2000;
  std::vector<std::shared_ptr<comm::wait_state_collection>> loops;
  for (int i = 0; i < collections; ++i)
    loops.push_back(comm::create_and_run_wait_state_collection("post " + std::to_string(i)));
  // Touched only in each loop's own thread: a race would show under TSan, a loss in the counts.
  std::vector<std::vector<int>> last_seen(collections, std::vector<int>(posters, -1));
  std::vector<int> runs(collections, 0);
  std::atomic<int> out_of_order{0}, wrong_thread{0};

  std::vector<std::thread> threads;
  for (int p = 0; p < posters; ++p)
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_poster; ++i)
        for (int c = 0; c < collections; ++c)
          comm::apply_in_wait_state_collection_process(*loops[c], [&, c, p, i] {
            if (!loops[c]->in_loop_thread()) ++wrong_thread;
            if (last_seen[c][p] != i - 1) ++out_of_order;
            last_seen[c][p] = i;
            ++runs[c];
          });
    });
  for (auto& t : threads) t.join();
  for (int c = 0; c < collections; ++c) {
    std::promise<int> total;
    comm::apply_in_wait_state_collection_process(*loops[c], [&, c] { total.set_value(runs[c]); });
    EXPECT_EQ(total.get_future().get(), posters * per_poster) << "collection " << c;
  }
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_EQ(wrong_thread.load(), 0);
  for (auto& l : loops) comm::wait_state_collection_stop_loop(*l);
  for (auto& l : loops) EXPECT_FALSE(comm::wait_state_collection_alive_p(*l));
}

}  // namespace
