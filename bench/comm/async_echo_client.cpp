// comm async echo latency client: one connection on a collection driven by this thread;
// write_buffer of --msg bytes, then read_buffer of the whole reply, one round trip at a time.
#include "async_common.hpp"

namespace {

struct pinger {
  comm::wait_state_collection& loop;
  std::vector<char> out, in;
  long long warmup, total, i = 0;
  std::vector<double> us;
  bench::clock::time_point t0;
  std::string error;

  void fail(const std::string& what) {
    error = what;
    comm::wait_state_collection_stop_loop(loop);
  }
  void next(comm::async_io_state& s) {
    if (i == total) return comm::wait_state_collection_stop_loop(loop);
    t0 = bench::clock::now();
    comm::async_io_state_write_buffer(s, bench_comm::cbytes(out.data(), out.size()), [this](comm::async_io_state& s2, std::size_t) {
      if (s2.write_status() != comm::io_status::ok) return fail("write: " + bench_comm::error_text(s2.write_error()));
      comm::async_io_state_read_buffer(s2, bench_comm::bytes(in), [this](comm::async_io_state& s3, std::span<std::byte>, std::size_t) {
        if (s3.read_status() != comm::io_status::ok) return fail("read: " + std::string(comm::to_string(s3.read_status())));
        if (i++ >= warmup) us.push_back(bench::seconds_since(t0) * 1e6);
        next(s3);
      });
    });
  }
};

}  // namespace

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  comm::ssl_abstract_context ctx;
  if (a.flag("tls")) ctx = bench_comm::client_context(a);
  auto loop = comm::make_wait_state_collection("latency");
  const auto msg = static_cast<std::size_t>(a.num("msg", 64));
  const auto warmup = a.num("warmup", 1000), count = a.num("count", 20000);
  pinger p{*loop, std::vector<char>(msg, 'p'), std::vector<char>(msg), warmup, warmup + count, 0, {}, {}, {}};
  p.us.reserve(static_cast<std::size_t>(count));
  std::shared_ptr<comm::async_io_state> conn;
  comm::create_async_io_state_and_connected_tcp_socket(
      *loop, "127.0.0.1", bench_comm::port_arg(a),
      [&](comm::async_io_state* s, std::exception_ptr e) {
        if (!s) return p.fail("connect: " + bench_comm::error_text(e));
        conn = s->shared_from_this();
        p.next(*s);
      },
      bench_comm::connect_options(ctx));
  comm::loop_processing_wait_state_collection(*loop);
  if (conn) comm::close_async_io_state(*conn);
  if (!p.error.empty()) {
    std::fprintf(stderr, "bench_comm_async_echo_client: %s\n", p.error.c_str());
    return 1;
  }
  bench::json_line()
      .add("p50_us", bench::percentile(p.us, 50))
      .add("p99_us", bench::percentile(p.us, 99))
      .add("p999_us", bench::percentile(p.us, 99.9))
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_async_echo_client: %s\n", e.what());
  return 1;
}
