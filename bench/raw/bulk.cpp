// Raw floor of plain TCP bulk throughput: a blocking send loop and a blocking recv loop, the
// same protocol as the comm and Asio programs (--total bytes in --size writes, one byte back).
#include <cstdio>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "raw_socket.hpp"

using namespace bench_raw;

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  const auto size = static_cast<std::size_t>(a.num("size", 16384));
  const auto total = static_cast<std::uint64_t>(a.num("total", 64 << 20));
  std::vector<char> buf(size, 'x');

  if (a.require("role") == "server") {
    run_server(
        [&](int c) {
          std::uint64_t left = total;
          while (left > 0) {
            ssize_t r = ::recv(c, buf.data(), buf.size(), 0);
            if (r <= 0) break;
            left -= std::min<std::uint64_t>(static_cast<std::uint64_t>(r), left);
          }
          if (left == 0) send_all(c, "!", 1);
        },
        false);
  }

  fd_guard s(connect_loopback(static_cast<unsigned>(a.num("port", 0))));
  auto t0 = bench::clock::now();
  std::uint64_t left = total;
  while (left > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, left));
    send_all(s.fd, buf.data(), n);
    left -= n;
  }
  char ack;
  recv_all(s.fd, &ack, 1);
  double seconds = bench::seconds_since(t0);
  bench::json_line()
      .add("mib_s", static_cast<double>(total) / (1024.0 * 1024.0) / seconds)
      .add("seconds", seconds)
      .add("cpu_s", bench::cpu_seconds())
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_raw_bulk: %s\n", e.what());
  return 1;
}
