// comm echo latency with blocking streams: the server (start_up_server) read_some()s up to 1024
// bytes and writes them back; the client sends --msg bytes, flushes and read_exact()s the reply,
// one round trip at a time, each timed.
#include "comm_common.hpp"

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);

  if (a.require("role") == "server") {
    return bench_comm::run_blocking_server(a, [](comm::socket_stream& s) {
      std::vector<char> buf(1024);
      while (std::size_t n = s.read_some(bench_comm::bytes(buf))) {
        s.write_all(buf.data(), n);
        s.flush();
      }
    });
  }

  comm::ssl_abstract_context ctx;
  if (a.flag("tls")) ctx = bench_comm::client_context(a);
  auto s = bench_comm::connect(a, ctx);
  const auto msg = static_cast<std::size_t>(a.num("msg", 64));
  std::vector<char> out(msg, 'p'), in(msg);
  const auto warmup = a.num("warmup", 1000), count = a.num("count", 20000);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(count));
  for (long long i = 0; i < warmup + count; ++i) {
    auto t0 = bench::clock::now();
    s.write_all(out.data(), msg);
    s.flush();
    s.read_exact(in.data(), msg);
    if (i >= warmup) us.push_back(bench::seconds_since(t0) * 1e6);
  }
  s.close();
  bench::json_line()
      .add("p50_us", bench::percentile(us, 50))
      .add("p99_us", bench::percentile(us, 99))
      .add("p999_us", bench::percentile(us, 99.9))
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_echo: %s\n", e.what());
  return 1;
}
