// comm async side of the benchmarks: a loop per thread, acceptors, and helpers shared by the
// async programs.
#pragma once

#include <comm/async.hpp>
#include <memory>
#include <thread>
#include <vector>

#include "comm_common.hpp"

namespace bench_comm {

inline std::span<const std::byte> cbytes(const void* p, std::size_t n) {
  return {static_cast<const std::byte*>(p), n};
}

// Collections set up first (accepting needs no running loop), then one thread each.
class loops {
 public:
  explicit loops(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      collections_.push_back(comm::make_wait_state_collection("bench " + std::to_string(i), [](std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::fprintf(stderr, "callback error: %s\n", x.what());
        }
      }));
  }
  comm::wait_state_collection& operator[](std::size_t i) { return *collections_[i]; }
  std::size_t size() const { return collections_.size(); }
  void start() {
    for (auto& c : collections_) threads_.emplace_back([c] { comm::loop_processing_wait_state_collection(*c); });
  }
  void stop() {
    for (auto& c : collections_) comm::wait_state_collection_stop_loop(*c);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::shared_ptr<comm::wait_state_collection>> collections_;
  std::vector<std::thread> threads_;
};

// Listens on 127.0.0.1 on every loop (SO_REUSEPORT: the kernel spreads connections), announces
// the port, runs until stdin closes, prints the server's CPU and RSS.
inline int run_async_server(const bench::args& a, const comm::accept_state_callback& on_connection,
                            std::size_t n_loops = 1) {
  bench::raise_nofile();
  loops l(n_loops);
  comm::ssl_abstract_context ctx;
  if (a.flag("tls")) ctx = server_context(a);
  std::vector<std::shared_ptr<comm::accepting_handle>> handles;
  std::string service = "0";
  for (std::size_t i = 0; i < l.size(); ++i) {
    comm::accept_options o;
    o.address = "127.0.0.1";
    o.backlog = 4096;
    o.reuseport = true;
    o.ssl_ctx = ctx;
    o.ssl_error_callback = [](std::exception_ptr, std::optional<comm::endpoint>) {};
    handles.push_back(comm::accept_tcp_connections_creating_async_io_states(l[i], service, on_connection, std::move(o)));
    service = std::to_string(handles.back()->local_port());
  }
  bench::announce_port(handles.front()->local_port());
  l.start();
  bench::wait_stdin_eof();
  l.stop();
  bench::json_line().add("cpu_s", bench::cpu_seconds()).add("rss_kib", static_cast<double>(bench::rss_kib())).print();
  return 0;
}

inline comm::async_connect_options connect_options(const comm::ssl_abstract_context& ctx) {
  comm::async_connect_options o;
  if (ctx) o.ssl_ctx = ctx;
  return o;
}

inline std::string error_text(std::exception_ptr e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
  return "unknown error";
}

}  // namespace bench_comm
