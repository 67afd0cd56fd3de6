// comm bulk throughput over one connection with blocking socket_streams (TLS or plain): the
// client write_all()s --total bytes in --size pieces and flushes; the server (start_up_server)
// read_some()s into a --size buffer and answers one byte once it has everything. Same protocol as
// bench/asio/bulk.cpp and bench/raw/bulk.cpp.
#include "comm_common.hpp"

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  const auto size = static_cast<std::size_t>(a.num("size", 16384));
  const auto total = static_cast<std::uint64_t>(a.num("total", 64 << 20));

  if (a.require("role") == "server") {
    return bench_comm::run_blocking_server(a, [size, total](comm::socket_stream& s) {
      std::vector<char> buf(size);
      std::uint64_t left = total;
      while (left > 0) {
        std::size_t n = s.read_some(bench_comm::bytes(buf));
        if (n == 0) return;
        left -= std::min<std::uint64_t>(n, left);
      }
      s.write_all("!");
      s.flush();
    });
  }

  comm::ssl_abstract_context ctx;
  if (a.flag("tls")) ctx = bench_comm::client_context(a);
  auto s = bench_comm::connect(a, ctx);
  std::vector<char> buf(size, 'x');
  auto t0 = bench::clock::now();
  std::uint64_t left = total;
  while (left > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, left));
    s.write_all(buf.data(), n);
    left -= n;
  }
  s.flush();
  char ack;
  s.read_exact(&ack, 1);
  double seconds = bench::seconds_since(t0);
  s.close();
  bench::json_line()
      .add("mib_s", static_cast<double>(total) / (1024.0 * 1024.0) / seconds)
      .add("seconds", seconds)
      .add("cpu_s", bench::cpu_seconds())
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_bulk: %s\n", e.what());
  return 1;
}
