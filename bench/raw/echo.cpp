// Raw floor of echo latency: plain TCP, blocking send/recv of --msg bytes, one round trip at a
// time. Nothing can be faster through the loopback stack; comm's TLS p50 is compared with this.
#include <cstdio>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "raw_socket.hpp"

using namespace bench_raw;

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  const auto msg = static_cast<std::size_t>(a.num("msg", 64));

  if (a.require("role") == "server") {
    unsigned port = 0;
    fd_guard lfd(listen_loopback(port));
    bench::announce_port(port);
    std::thread([&] {
      while (true) {
        int c = ::accept(lfd.fd, nullptr, nullptr);
        if (c < 0) continue;
        std::thread([c] {
          fd_guard conn(c);
          nodelay(c);
          char buf[1024];
          while (true) {
            ssize_t r = ::recv(c, buf, sizeof buf, 0);
            if (r <= 0) return;
            try {
              send_all(c, buf, static_cast<std::size_t>(r));
            } catch (const std::exception&) {
              return;
            }
          }
        }).detach();
      }
    }).detach();
    bench::wait_stdin_eof();
    bench::json_line().add("cpu_s", bench::cpu_seconds()).add("rss_kib", static_cast<double>(bench::rss_kib())).print();
    _exit(0);
  }

  fd_guard s(connect_loopback(static_cast<unsigned>(a.num("port", 0))));
  std::vector<char> out(msg, 'p'), in(msg);
  const auto warmup = a.num("warmup", 1000), count = a.num("count", 20000);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(count));
  for (long long i = 0; i < warmup + count; ++i) {
    auto t0 = bench::clock::now();
    send_all(s.fd, out.data(), msg);
    recv_all(s.fd, in.data(), msg);
    if (i >= warmup) us.push_back(bench::seconds_since(t0) * 1e6);
  }
  bench::json_line()
      .add("p50_us", bench::percentile(us, 50))
      .add("p99_us", bench::percentile(us, 99))
      .add("p999_us", bench::percentile(us, 99.9))
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_raw_echo: %s\n", e.what());
  return 1;
}
