// comm TLS handshake rate with blocking streams: --inflight client threads, each repeating
// open_tcp_stream (connect + full or, with --resume, resumed TLS 1.3 handshake; comm caches the
// session per host:port) + a one-byte echo + close. The server is start_up_server with TLS.
#include <atomic>
#include <thread>

#include "comm_common.hpp"

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);

  if (a.require("role") == "server") {
    return bench_comm::run_blocking_server(a, [](comm::socket_stream& s) {
      char b;
      s.read_exact(&b, 1);
      s.write_all(&b, 1);
      s.flush();
    });
  }

  const bool resume = a.flag("resume");
  auto ctx = bench_comm::client_context(a, resume);
  auto deadline = bench::clock::now() + std::chrono::milliseconds(a.num("millis", 2000));
  std::atomic<long> done{0}, resumed{0}, errors{0};
  std::string first_error;
  std::mutex m;
  auto t0 = bench::clock::now();
  std::vector<std::thread> threads;
  for (long long i = 0; i < a.num("inflight", 1); ++i) {
    threads.emplace_back([&] {
      while (bench::clock::now() < deadline && errors < 1000) {
        try {
          auto s = bench_comm::connect(a, ctx);
          s.write_all("h");
          s.flush();
          char b;
          s.read_exact(&b, 1);
          if (comm::ssl_connection_session_reused(s)) ++resumed;
          ++done;
        } catch (const std::exception& e) {
          if (errors++ == 0) {
            std::lock_guard lock(m);
            first_error = e.what();
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double elapsed = bench::seconds_since(t0);
  if (!first_error.empty()) std::fprintf(stderr, "bench_comm_handshake: %s\n", first_error.c_str());
  bench::json_line()
      .add("hs_s", static_cast<double>(done) / elapsed)
      .add("done", static_cast<double>(done))
      .add("resumed", static_cast<double>(resumed))
      .add("errors", static_cast<double>(errors))
      .add("cpu_s", bench::cpu_seconds())
      .print();
  return errors == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_handshake: %s\n", e.what());
  return 1;
}
