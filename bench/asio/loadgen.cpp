// The neutral load generator for the server-side workloads (idle memory, scale, multi-core).
// Where only the server is measured, both servers (comm's and Asio's) must face the very same
// client, so this one program drives them all. It is an ordinary Asio + OpenSSL TLS client.
//
//   --mode=memory     open --stage1 connections, print "STAGE 1", wait for a line on stdin,
//                     open up to --stage2, print "STAGE 2", wait, then close all and exit.
//   --mode=scale      open --conns connections, print "STAGE connected", then each one echoes
//                     --msg bytes once per --interval-ms for --millis; prints the counts.
//   --mode=throughput open --conns connections, then each echoes back to back for --millis;
//                     --threads io_contexts share the connections (so the client is not the limit).
// Every connection first does a handshake and a one-byte echo, so the server has finished its side.
#include <cstdio>
#include <list>
#include <memory>
#include <random>
#include <vector>

#include "asio_common.hpp"

using namespace bench_asio;

struct shared_counts {
  std::atomic<long> opened{0}, open_errors{0}, echoes{0}, echo_errors{0}, late{0};
};

class conn : public std::enable_shared_from_this<conn> {
 public:
  conn(asio::io_context& io, asio::ssl::context& ctx, shared_counts& c, std::size_t msg)
      : stream_(io, ctx), timer_(io), counts_(c), out_(msg, 'e'), in_(msg) {}

  template <class Done>
  void open(tcp::endpoint target, Done done) {
    auto self = shared_from_this();
    stream_.lowest_layer().async_connect(target, [self, done](std::error_code ec) {
      if (ec) return self->opened(false, done);
      self->stream_.lowest_layer().set_option(tcp::no_delay(true));
      self->stream_.async_handshake(asio::ssl::stream_base::client, [self, done](std::error_code ec2) {
        if (ec2) return self->opened(false, done);
        asio::async_write(self->stream_, asio::buffer(self->out_.data(), 1), [self, done](std::error_code ec3, std::size_t) {
          if (ec3) return self->opened(false, done);
          asio::async_read(self->stream_, asio::buffer(self->in_.data(), 1),
                           [self, done](std::error_code ec4, std::size_t) { self->opened(!ec4, done); });
        });
      });
    });
  }

  // One echo now and then every interval until the deadline (scale), or back to back (interval 0).
  void echo_loop(std::chrono::milliseconds first_delay, std::chrono::milliseconds interval, bench::clock::time_point deadline) {
    interval_ = interval;
    deadline_ = deadline;
    if (first_delay.count() == 0) return echo_once();
    auto self = shared_from_this();
    timer_.expires_after(first_delay);
    timer_.async_wait([self](std::error_code ec) {
      if (!ec) self->echo_once();
    });
  }
  void close() {
    std::error_code ec;
    stream_.lowest_layer().close(ec);
  }

 private:
  template <class Done>
  void opened(bool ok, Done& done) {
    (ok ? counts_.opened : counts_.open_errors)++;
    done();
  }
  void echo_once() {
    auto self = shared_from_this();
    auto start = bench::clock::now();
    if (start >= deadline_) return;
    asio::async_write(stream_, asio::buffer(out_), [self, start](std::error_code ec, std::size_t) {
      if (ec) return void(self->counts_.echo_errors++);
      asio::async_read(self->stream_, asio::buffer(self->in_), [self, start](std::error_code ec2, std::size_t) {
        if (ec2) return void(self->counts_.echo_errors++);
        self->counts_.echoes++;
        auto now = bench::clock::now();
        if (self->interval_.count() == 0) return self->echo_once();
        if (now - start > self->interval_) self->counts_.late++;
        self->timer_.expires_at(start + self->interval_);
        self->timer_.async_wait([self](std::error_code ec3) {
          if (!ec3) self->echo_once();
        });
      });
    });
  }
  ssl_socket stream_;
  asio::steady_timer timer_;
  shared_counts& counts_;
  std::vector<char> out_, in_;
  std::chrono::milliseconds interval_{0};
  bench::clock::time_point deadline_;
};

// Opens `target_count` connections on one io_context with at most `parallel` handshakes at once.
struct opener {
  asio::io_context& io;
  asio::ssl::context& ctx;
  shared_counts& counts;
  tcp::endpoint target;
  std::size_t msg;
  std::vector<std::shared_ptr<conn>>& conns;
  long target_count = 0, started = 0, finished = 0;

  void run(long count, long parallel) {
    target_count = count;
    for (long i = 0; i < parallel && started < target_count; ++i) launch();
    io.restart();
    io.run();
  }
  void launch() {
    ++started;
    auto c = std::make_shared<conn>(io, ctx, counts, msg);
    conns.push_back(c);
    c->open(target, [this] {
      ++finished;
      if (started < target_count) launch();
    });
  }
};

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  bench::raise_nofile();
  auto ctx = client_context(a);
  const auto mode = a.require("mode");
  const auto target = loopback(static_cast<unsigned short>(a.num("port", 0)));
  const auto msg = static_cast<std::size_t>(a.num("msg", 64));
  const long parallel = static_cast<long>(a.num("parallel", 32));
  shared_counts counts;

  if (mode == "memory") {
    asio::io_context io;
    std::vector<std::shared_ptr<conn>> conns;
    opener op{io, ctx, counts, target, msg, conns};
    op.run(static_cast<long>(a.num("stage1", 500)), parallel);
    bench::print_stage("1");
    bench::wait_stdin_line();
    op.run(static_cast<long>(a.num("stage2", 5500)), parallel);
    bench::print_stage("2");
    bench::wait_stdin_line();
    for (auto& c : conns) c->close();
    bench::json_line()
        .add("opened", static_cast<double>(counts.opened.load()))
        .add("open_errors", static_cast<double>(counts.open_errors.load()))
        .print();
    return counts.open_errors == 0 ? 0 : 1;
  }

  // scale and throughput: connections are spread over --threads io_contexts.
  const auto threads = static_cast<std::size_t>(std::max<long long>(1, a.num("threads", 1)));
  const long total = static_cast<long>(a.num("conns", 100));
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::vector<std::shared_ptr<conn>>> conns(threads);
  auto t_open = bench::clock::now();
  {
    std::vector<std::thread> th;
    for (std::size_t t = 0; t < threads; ++t) {
      ios.push_back(std::make_unique<asio::io_context>(1));
      long share = total / static_cast<long>(threads) + (static_cast<long>(t) < total % static_cast<long>(threads) ? 1 : 0);
      th.emplace_back([&, t, share] {
        opener op{*ios[t], ctx, counts, target, msg, conns[t]};
        op.run(share, std::max(1L, parallel / static_cast<long>(threads)));
      });
    }
    for (auto& x : th) x.join();
  }
  const double open_seconds = bench::seconds_since(t_open);
  bench::print_stage("connected");

  const auto millis = std::chrono::milliseconds(a.num("millis", 3000));
  const auto interval = std::chrono::milliseconds(mode == "scale" ? a.num("interval-ms", 1000) : 0);
  auto t0 = bench::clock::now();
  auto deadline = t0 + millis;
  std::mt19937 rng(42);
  std::vector<std::thread> th;
  for (std::size_t t = 0; t < threads; ++t) {
    for (auto& c : conns[t]) {
      auto delay = interval.count() ? std::chrono::milliseconds(rng() % static_cast<unsigned>(interval.count()))
                                    : std::chrono::milliseconds(0);
      c->echo_loop(delay, interval, deadline);
    }
    th.emplace_back([&, t] {
      ios[t]->restart();
      ios[t]->run();
    });
  }
  for (auto& x : th) x.join();
  const double seconds = bench::seconds_since(t0);
  for (auto& v : conns)
    for (auto& c : v) c->close();
  const long expected = mode == "scale" ? total * static_cast<long>(millis / interval) : 0;
  bench::json_line()
      .add("opened", static_cast<double>(counts.opened.load()))
      .add("open_errors", static_cast<double>(counts.open_errors.load()))
      .add("open_seconds", open_seconds)
      .add("echoes", static_cast<double>(counts.echoes.load()))
      .add("expected", static_cast<double>(expected))
      .add("echo_errors", static_cast<double>(counts.echo_errors.load()))
      .add("late", static_cast<double>(counts.late.load()))
      .add("echoes_s", static_cast<double>(counts.echoes.load()) / seconds)
      .add("client_cpu_s", bench::cpu_seconds())
      .print();
  return counts.open_errors == 0 && counts.echo_errors == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_loadgen: %s\n", e.what());
  return 1;
}
