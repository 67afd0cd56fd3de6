// commcat listen --echo on the asynchronous layer: one wait_state_collection per loop, each in
// its own thread; with --loops N the N acceptors share the port through SO_REUSEPORT and the
// kernel spreads the clients over them.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/async.hpp"
#include "commcat.hpp"

namespace commcat {
namespace {

std::mutex log_mutex;

void log_client(const std::string& who, std::exception_ptr error) {
  std::string what = "unknown error";
  try {
    if (error) std::rethrow_exception(error);
    return;
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  std::lock_guard lock(log_mutex);
  std::fprintf(stderr, "commcat: client %s: %s\n", who.c_str(), one_line(what).c_str());
}

std::string peer_of(comm::async_io_state& s) {
  auto peer = s.peer_address();
  return peer ? peer->to_string() : s.name();
}

// The end of a client: answer its end with ours (TLS: close_notify), then close.
void finish(comm::async_io_state& s) {
  comm::async_io_state_shutdown(s, comm::direction::output, true);
  comm::close_async_io_state(s);
}

void echo_from(comm::async_io_state& s);

// Writes a chunk back, then reads again: one chunk in flight per client bounds its memory.
void echo_back(comm::async_io_state& s, std::vector<std::byte> chunk, bool then_finish) {
  comm::async_io_state_write_buffer(s, std::move(chunk), [then_finish](comm::async_io_state& st, std::size_t) {
    if (st.write_status() != comm::io_status::ok) {
      log_client(peer_of(st), st.write_error());
      comm::close_async_io_state(st);
    } else if (then_finish) {
      finish(st);
    } else {
      echo_from(st);
    }
  });
}

void echo_from(comm::async_io_state& s) {
  comm::async_io_state_read_with_checking(s, [](comm::async_io_state& st, std::span<const std::byte> data) {
    const auto status = st.read_status();
    std::vector<std::byte> chunk(data.begin(), data.end());
    if (status == comm::io_status::ok) {
      comm::async_io_state_finish(st, data.size());
      echo_back(st, std::move(chunk), false);
      return;
    }
    if (status == comm::io_status::eof && !st.read_error()) {  // orderly end (TLS: close_notify)
      if (chunk.empty()) finish(st);
      else echo_back(st, std::move(chunk), true);
      return;
    }
    log_client(peer_of(st), st.read_error());  // reset, truncation, timeout
    comm::close_async_io_state(st);
  });
}

}  // namespace

int run_echo_server(const config& cfg) {
  comm::ssl_abstract_context ctx;
  if (cfg.tls.enabled) ctx = make_server_context(cfg.tls);

  // Block SIGINT/SIGTERM before any thread starts, so that only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto report = [](std::exception_ptr e) { log_client("callback", e); };
  std::vector<std::shared_ptr<comm::wait_state_collection>> loops;
  std::string port = cfg.port;
  std::uint16_t bound = 0;
  for (int i = 0; i < cfg.loops; ++i) {
    auto loop = comm::make_wait_state_collection("echo " + std::to_string(i), report);
    comm::accept_options o;
    o.reuseport = cfg.loops > 1;
    o.name = "echo";
    o.ssl_ctx = ctx;
    if (cfg.timeout) o.handshake_timeout = cfg.timeout;
    o.ssl_error_callback = [](std::exception_ptr e, std::optional<comm::endpoint> peer) {
      log_client(peer ? peer->to_string() : "?", e);
    };
    // Set up before the loop runs (allowed without a loop thread); later loops take the first's port.
    auto handle = comm::accept_tcp_connections_creating_async_io_states(
        *loop, port, [](comm::accepting_handle&, comm::async_io_state& s) { echo_from(s); }, std::move(o));
    if (i == 0) {
      bound = handle->local_port();
      port = std::to_string(bound);
    }
    loops.push_back(std::move(loop));
  }

  std::vector<std::thread> threads;
  for (auto& loop : loops)
    threads.emplace_back([loop, report] {
      try {
        comm::loop_processing_wait_state_collection(*loop);
      } catch (...) {
        report(std::current_exception());
      }
    });
  std::fprintf(stderr, "listening on %u\n", static_cast<unsigned>(bound));

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  for (auto& loop : loops) comm::wait_state_collection_stop_loop(*loop);
  for (auto& t : threads) t.join();
  for (auto& loop : loops) comm::close_wait_state_collection(*loop);
  return 0;
}

}  // namespace commcat
