// comm async TLS handshake rate, the counterpart of bench/asio/handshake.cpp: --inflight chains on
// one loop, each create_async_io_state_and_connected_tcp_socket (connect + TLS 1.3 handshake;
// with --resume the context caches sessions per host:port) + a one-byte echo + close.
#include "async_common.hpp"

namespace {

struct client {
  comm::wait_state_collection& loop;
  comm::ssl_abstract_context ctx;
  std::string port;
  bench::clock::time_point deadline;
  long running = 0, done = 0, resumed = 0, errors = 0;
  std::string first_error;

  void attempt_done(comm::async_io_state* s, bool ok, const std::string& why) {
    if (s) comm::close_async_io_state(*s);
    if (ok) {
      ++done;
    } else if (errors++ == 0) {
      first_error = why;
    }
    if (bench::clock::now() < deadline && errors < 1000) return start();
    if (--running == 0) comm::wait_state_collection_stop_loop(loop);
  }
  void start() {
    comm::create_async_io_state_and_connected_tcp_socket(
        loop, "127.0.0.1", port,
        [this](comm::async_io_state* s, std::exception_ptr e) {
          if (!s) return attempt_done(nullptr, false, "connect: " + bench_comm::error_text(e));
          if (comm::ssl_connection_session_reused(*s)) ++resumed;
          comm::async_io_state_write_buffer(*s, std::string("h"), [this](comm::async_io_state& st, std::size_t) {
            if (st.write_status() != comm::io_status::ok) return attempt_done(&st, false, "write");
            auto byte = std::make_shared<std::byte>();
            comm::async_io_state_read_buffer(st, std::span<std::byte>(byte.get(), 1),
                                             [this, byte](comm::async_io_state& st2, std::span<std::byte>, std::size_t n) {
                                               attempt_done(&st2, n == 1, "read");
                                             });
          });
        },
        bench_comm::connect_options(ctx));
  }
};

}  // namespace

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);

  if (a.require("role") == "server") {
    return bench_comm::run_async_server(a, [](comm::accepting_handle&, comm::async_io_state& s) {
      auto byte = std::make_shared<std::byte>();
      comm::async_io_state_read_buffer(s, std::span<std::byte>(byte.get(), 1),
                                       [byte](comm::async_io_state& st, std::span<std::byte>, std::size_t n) {
                                         if (n != 1) return void(comm::close_async_io_state(st));
                                         comm::async_io_state_write_buffer(
                                             st, std::span<const std::byte>(byte.get(), 1),
                                             [byte](comm::async_io_state& st2, std::size_t) { comm::close_async_io_state(st2); });
                                       });
    });
  }

  auto loop = comm::make_wait_state_collection("handshakes");
  client c{*loop, bench_comm::client_context(a, a.flag("resume")), bench_comm::port_arg(a),
           bench::clock::now() + std::chrono::milliseconds(a.num("millis", 2000)), 0, 0, 0, 0, {}};
  auto t0 = bench::clock::now();
  for (long long i = 0; i < a.num("inflight", 1); ++i) {
    ++c.running;
    c.start();
  }
  comm::loop_processing_wait_state_collection(*loop);
  double elapsed = bench::seconds_since(t0);
  if (!c.first_error.empty()) std::fprintf(stderr, "bench_comm_async_handshake: %s\n", c.first_error.c_str());
  return bench::print_handshakes(static_cast<double>(c.done) / elapsed, c.done, c.resumed, c.errors);
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_async_handshake: %s\n", e.what());
  return 1;
}
