// An async echo server and a crowd of async echo clients (plain or TLS), for the scale tests.
#pragma once

#include <atomic>

#include "async_helpers.hpp"

namespace async_test {

// Echoes everything; at end of stream, finishes pending writes, then closes.
inline void start_echo(comm::async_io_state& state) {
  comm::async_io_state_read_with_checking(state, [](comm::async_io_state& s, std::span<const std::byte> data) {
    if (!data.empty()) comm::async_io_state_write_buffer(s, std::vector<std::byte>(data.begin(), data.end()), {});
    if (s.read_status() == comm::io_status::eof) {
      comm::async_io_state_shutdown(s, comm::direction::output, false,
                                    [](comm::async_io_state& st, std::error_code) { comm::close_async_io_state(st); });
      return;
    }
    if (s.read_status() != comm::io_status::ok) {
      comm::close_async_io_state(s);
      return;
    }
    comm::async_io_state_discard(s, data.size());
  });
}

struct echo_server {
  loop_thread lt{"echo server"};
  std::shared_ptr<comm::accepting_handle> handle;
  std::atomic<int> accepted{0};
  std::atomic<int> ssl_errors{0};
  std::mutex errors_mutex;
  std::vector<comm::ssl_failure_kind> ssl_error_kinds;
  waiter errors_changed;

  explicit echo_server(comm::ssl_abstract_context ctx = {},
                       std::optional<std::chrono::milliseconds> handshake_timeout = std::chrono::seconds(10)) {
    handle = lt.call([&] {
      comm::accept_options o;
      o.address = "127.0.0.1";
      o.backlog = 2048;
      o.queue_output = true;
      o.ssl_ctx = ctx;
      o.handshake_timeout = handshake_timeout;
      o.ssl_error_callback = [this](std::exception_ptr e, std::optional<comm::endpoint>) {
        {
          std::lock_guard lock(errors_mutex);
          ssl_error_kinds.push_back(comm::ssl_failure_indicator(e));
        }
        errors_changed.notify([&] { ++ssl_errors; });
      };
      return comm::accept_tcp_connections_creating_async_io_states(
          *lt, "0",
          [this](comm::accepting_handle&, comm::async_io_state& s) {
            ++accepted;
            start_echo(s);
          },
          std::move(o));
    });
  }
  std::uint16_t port() const { return handle->local_port(); }
  // Waits (bounded) until at least n handshake failures were reported.
  bool wait_ssl_errors(int n, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    return errors_changed.wait([&] { return ssl_errors.load() >= n; }, timeout);
  }
};

struct echo_result {
  int ok = 0;
  int failed = 0;
  int mismatched = 0;
  std::string first_error;
  clock::duration elapsed{};
};

// n clients on their own loop, each sending `size` bytes (a distinct window of one random pool)
// and checking the echo by sha256.
inline echo_result run_echo_clients(std::uint16_t port, int n, std::size_t size, comm::client_ssl_ctx_spec ssl_ctx,
                                    std::chrono::milliseconds bound = std::chrono::seconds(60)) {
  auto pool = random_bytes(size + 4096, 12345);
  struct client {
    std::span<const std::byte> data;
    std::string expected;
    std::string received;
  };
  std::vector<client> clients(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& c = clients[static_cast<std::size_t>(i)];
    c.data = std::span<const std::byte>(pool).subspan(static_cast<std::size_t>(i) * 7 % 4096, size);
    c.expected = sha256(c.data.data(), c.data.size());
  }
  echo_result r;
  waiter w;
  loop_thread lt("echo clients");
  auto t0 = clock::now();
  auto fail = [&](const std::string& what) {
    w.notify([&] {
      ++r.failed;
      if (r.first_error.empty()) r.first_error = what;
    });
  };
  lt.call([&] {
    for (auto& cl : clients) {
      comm::async_connect_options o;
      o.connect_timeout = std::chrono::seconds(20);
      o.ssl_ctx = ssl_ctx;
      o.handshake_timeout = std::chrono::seconds(60);
      client* c = &cl;
      comm::create_async_io_state_and_connected_tcp_socket(
          *lt, "127.0.0.1", std::to_string(port),
          [&, c](comm::async_io_state* s, std::exception_ptr e) {
            if (!s) {
              try {
                std::rethrow_exception(e);
              } catch (const std::exception& x) {
                fail(x.what());
              }
              return;
            }
            comm::async_io_state_write_buffer(*s, c->data, [&](comm::async_io_state& st, std::size_t) {
              if (st.write_status() != comm::io_status::ok) fail("write failed");
            });
            comm::async_io_state_read_with_checking(*s, [&, c](comm::async_io_state& st, std::span<const std::byte> d) {
              c->received.append(reinterpret_cast<const char*>(d.data()), d.size());
              comm::async_io_state_discard(st, d.size());
              if (c->received.size() >= c->data.size() || st.read_status() != comm::io_status::ok) {
                bool same = sha256(c->received.data(), c->received.size()) == c->expected;
                comm::close_async_io_state(st);
                std::string().swap(c->received);
                w.notify([&] {
                  if (same) ++r.ok;
                  else ++r.mismatched;
                });
              }
            });
          },
          std::move(o));
    }
    return 0;
  });
  w.wait([&] { return r.ok + r.failed + r.mismatched == n; }, bound);
  r.elapsed = clock::now() - t0;
  std::lock_guard lock(w.mutex());
  return r;
}

}  // namespace async_test
