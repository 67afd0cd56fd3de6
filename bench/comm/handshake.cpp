// comm TLS handshake rate with blocking streams: --inflight client threads, each repeating
// open_tcp_stream (connect + full or, with --resume, resumed TLS 1.3 handshake; comm caches the
// session per host:port) + a one-byte echo + close. The server is start_up_server with TLS.
#include <atomic>

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
  std::atomic<long> resumed{0};
  auto r = bench::repeat_on_threads(a.num("inflight", 1), deadline, [&] {
    auto s = bench_comm::connect(a, ctx);
    s.write_all("h");
    s.flush();
    char b;
    s.read_exact(&b, 1);
    if (comm::ssl_connection_session_reused(s)) ++resumed;
  });
  if (!r.first_error.empty()) std::fprintf(stderr, "bench_comm_handshake: %s\n", r.first_error.c_str());
  return bench::print_handshakes(r.per_second(), r.done, resumed.load(), r.errors);
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_handshake: %s\n", e.what());
  return 1;
}
