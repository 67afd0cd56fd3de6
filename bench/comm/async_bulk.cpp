// comm async bulk throughput, the counterpart of bench/asio/bulk.cpp: the client write_buffer()s
// --size pieces one after the other; the server's read_with_checking (max_read --size) discards
// what arrives and answers one byte once it has --total bytes.
#include "async_common.hpp"

namespace {

struct receiver {
  std::uint64_t left;
  std::size_t size;
  void start(comm::async_io_state& s) {
    comm::read_with_checking_options ro;
    ro.max_read = size;
    ro.error_callback = [](comm::async_io_state& st, std::span<const std::byte>) { comm::close_async_io_state(st); };
    comm::async_io_state_read_with_checking(
        s,
        [this](comm::async_io_state& st, std::span<const std::byte> data) {
          left -= std::min<std::uint64_t>(data.size(), left);
          if (left > 0) {
            comm::async_io_state_discard(st, data.size());
            return;
          }
          comm::async_io_state_finish(st, data.size());
          comm::async_io_state_write_buffer(st, std::string("!"), [](comm::async_io_state&, std::size_t) {});
        },
        std::move(ro));
  }
};

struct sender {
  comm::wait_state_collection& loop;
  std::vector<char> buf;
  std::uint64_t left;
  char ack = 0;
  bench::clock::time_point t0;
  double seconds = 0;
  std::string error;

  void fail(const std::string& what) {
    error = what;
    comm::wait_state_collection_stop_loop(loop);
  }
  void next(comm::async_io_state& s) {
    if (left == 0) {
      comm::async_io_state_read_buffer(s, std::span<std::byte>(reinterpret_cast<std::byte*>(&ack), 1),
                                       [this](comm::async_io_state& st, std::span<std::byte>, std::size_t n) {
                                         if (n != 1) return fail("read ack: " + std::string(comm::to_string(st.read_status())));
                                         seconds = bench::seconds_since(t0);
                                         comm::wait_state_collection_stop_loop(loop);
                                       });
      return;
    }
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), left));
    left -= n;
    comm::async_io_state_write_buffer(s, bench_comm::cbytes(buf.data(), n), [this](comm::async_io_state& st, std::size_t) {
      if (st.write_status() != comm::io_status::ok) return fail("write: " + bench_comm::error_text(st.write_error()));
      next(st);
    });
  }
};

}  // namespace

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  const auto size = static_cast<std::size_t>(a.num("size", 16384));
  const auto total = static_cast<std::uint64_t>(a.num("total", 64 << 20));

  if (a.require("role") == "server") {
    std::vector<std::unique_ptr<receiver>> receivers;  // touched only by the loop thread
    return bench_comm::run_async_server(a, [&](comm::accepting_handle&, comm::async_io_state& s) {
      receivers.push_back(std::make_unique<receiver>(receiver{total, size}));
      receivers.back()->start(s);
    });
  }

  comm::ssl_abstract_context ctx;
  if (a.flag("tls")) ctx = bench_comm::client_context(a);
  auto loop = comm::make_wait_state_collection("bulk");
  sender snd{*loop, std::vector<char>(size, 'x'), total, 0, {}, 0, {}};
  std::shared_ptr<comm::async_io_state> conn;
  comm::create_async_io_state_and_connected_tcp_socket(
      *loop, "127.0.0.1", bench_comm::port_arg(a),
      [&](comm::async_io_state* s, std::exception_ptr e) {
        if (!s) return snd.fail("connect: " + bench_comm::error_text(e));
        conn = s->shared_from_this();
        snd.t0 = bench::clock::now();
        snd.next(*s);
      },
      bench_comm::connect_options(ctx));
  comm::loop_processing_wait_state_collection(*loop);
  if (conn) comm::close_async_io_state(*conn);
  if (!snd.error.empty()) {
    std::fprintf(stderr, "bench_comm_async_bulk: %s\n", snd.error.c_str());
    return 1;
  }
  bench::json_line()
      .add("mib_s", static_cast<double>(total) / (1024.0 * 1024.0) / snd.seconds)
      .add("seconds", snd.seconds)
      .add("cpu_s", bench::cpu_seconds())
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_async_bulk: %s\n", e.what());
  return 1;
}
