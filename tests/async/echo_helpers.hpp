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
  // What the loop's callbacks record. They own it too: a handshake that fails while the server
  // object goes away (its loop stops after its members) must not write into freed members.
  struct record {
    std::atomic<int> accepted{0};
    std::atomic<int> ssl_errors{0};
    std::mutex errors_mutex;
    std::vector<comm::ssl_failure_kind> ssl_error_kinds;
    waiter errors_changed;
  };
  std::shared_ptr<record> rec = std::make_shared<record>();
  std::atomic<int>& accepted = rec->accepted;
  std::atomic<int>& ssl_errors = rec->ssl_errors;
  std::mutex& errors_mutex = rec->errors_mutex;
  std::vector<comm::ssl_failure_kind>& ssl_error_kinds = rec->ssl_error_kinds;
  waiter& errors_changed = rec->errors_changed;
  loop_thread lt{"echo server"};
  std::shared_ptr<comm::accepting_handle> handle;

  explicit echo_server(comm::ssl_abstract_context ctx = {},
                       std::optional<std::chrono::milliseconds> handshake_timeout = std::chrono::seconds(10)) {
    handle = lt.call([&] {
      comm::accept_options o;
      o.address = "127.0.0.1";
      o.backlog = 2048;
      o.queue_output = true;
      o.ssl_ctx = ctx;
      o.handshake_timeout = handshake_timeout;
      o.ssl_error_callback = [r = rec](std::exception_ptr e, std::optional<comm::endpoint>) {
        {
          std::lock_guard lock(r->errors_mutex);
          r->ssl_error_kinds.push_back(comm::ssl_failure_indicator(e));
        }
        r->errors_changed.notify([&] { ++r->ssl_errors; });
      };
      return comm::accept_tcp_connections_creating_async_io_states(
          *lt, "0",
          [r = rec](comm::accepting_handle&, comm::async_io_state& s) {
            ++r->accepted;
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
  std::string failures;  // which clients failed or never finished, and why (for the test's message)
  clock::duration elapsed{};
};

// n clients on their own loop, each sending `size` bytes (a distinct window of one random pool)
// and checking the echo by sha256. At most max_in_flight (0 = all n) are connected at a time: a
// finished client starts the next one, so the server always has that many concurrent clients
// without a 2-core machine under sanitizers having to hold every handshake at once.
inline echo_result run_echo_clients(std::uint16_t port, int n, std::size_t size, comm::client_ssl_ctx_spec ssl_ctx,
                                    std::chrono::milliseconds bound = std::chrono::seconds(60),
                                    int max_in_flight = 0) {
  auto pool = random_bytes(size + 4096, 12345);
  struct client {
    std::span<const std::byte> data;
    std::string expected;
    std::string received;
    std::size_t received_bytes = 0;
    const char* phase = "not started";
    std::string why;  // set when it failed
    bool finished = false;
  };
  std::vector<client> clients(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& c = clients[static_cast<std::size_t>(i)];
    c.data = std::span<const std::byte>(pool).subspan(static_cast<std::size_t>(i) * 7 % 4096, size);
    c.expected = sha256(c.data.data(), c.data.size());
  }
  if (max_in_flight <= 0 || max_in_flight > n) max_in_flight = n;
  echo_result r;
  waiter w;
  std::size_t next = 0;  // loop thread only
  std::function<void()> start_next;
  std::function<void(client*, bool, bool, std::string)> finish;
  auto error_text = [](std::exception_ptr e) -> std::string {
    if (!e) return "no error";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      return x.what();
    } catch (...) {
      return "unknown error";
    }
  };
  loop_thread lt("echo clients");  // declared after what its callbacks use: stopped first
  auto t0 = clock::now();
  // Loop thread: records the outcome of client c once, then starts the next waiting client.
  finish = [&](client* c, bool ok, bool mismatched, std::string why) {
    if (c->finished) return;
    c->finished = true;
    c->phase = "finished";
    c->why = why;
    w.notify([&] {
      if (ok) ++r.ok;
      else if (mismatched) ++r.mismatched;
      else ++r.failed;
      if (!ok && r.first_error.empty()) r.first_error = why;
    });
    start_next();
  };
  start_next = [&] {
    if (next >= clients.size()) return;
    client* c = &clients[next++];
    c->phase = "connecting";
    comm::async_connect_options o;
    o.connect_timeout = std::chrono::seconds(20);
    o.ssl_ctx = ssl_ctx;
    o.handshake_timeout = std::chrono::seconds(60);
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "127.0.0.1", std::to_string(port),
        [&, c](comm::async_io_state* s, std::exception_ptr e) {
          if (!s) {
            finish(c, false, false, "connect/handshake: " + error_text(e));
            return;
          }
          c->phase = "echoing";
          comm::async_io_state_write_buffer(*s, c->data, [&, c](comm::async_io_state& st, std::size_t done) {
            if (st.write_status() == comm::io_status::ok) return;
            std::string what = "write failed (" + std::string(comm::to_string(st.write_status())) + ") after " +
                               std::to_string(done) + " bytes: " + error_text(st.write_error());
            comm::close_async_io_state(st);
            finish(c, false, false, what);
          });
          comm::async_io_state_read_with_checking(*s, [&, c](comm::async_io_state& st, std::span<const std::byte> d) {
            c->received.append(reinterpret_cast<const char*>(d.data()), d.size());
            c->received_bytes = c->received.size();
            comm::async_io_state_discard(st, d.size());
            if (c->received.size() >= c->data.size() || st.read_status() != comm::io_status::ok) {
              bool complete = c->received.size() == c->data.size();
              bool same = complete && sha256(c->received.data(), c->received.size()) == c->expected;
              std::string why;
              if (!same)
                why = "read ended (" + std::string(comm::to_string(st.read_status())) + ") with " +
                      std::to_string(c->received.size()) + " of " + std::to_string(c->data.size()) +
                      " bytes" + (complete ? ", content differs" : "") +
                      (st.read_error() ? ": " + error_text(st.read_error()) : std::string());
              comm::close_async_io_state(st);
              std::string().swap(c->received);
              finish(c, same, complete && !same, why);
            }
          });
        },
        std::move(o));
  };
  lt.call([&] {
    for (int i = 0; i < max_in_flight; ++i) start_next();
    return 0;
  });
  w.wait([&] { return r.ok + r.failed + r.mismatched == n; }, bound);
  r.elapsed = clock::now() - t0;
  // Read the clients' state on their loop: after a timeout they may still be running.
  std::string failures = lt.call([&] {
    std::string text;
    int listed = 0, unlisted = 0;
    for (std::size_t i = 0; i < clients.size(); ++i) {
      const client& c = clients[i];
      if (c.finished && c.why.empty()) continue;
      if (listed == 20) {
        ++unlisted;
        continue;
      }
      ++listed;
      text += "\n  client " + std::to_string(i) + ": ";
      text += c.finished ? c.why
                         : std::string("unfinished, ") + c.phase + ", " + std::to_string(c.received_bytes) + " of " +
                               std::to_string(c.data.size()) + " bytes back";
    }
    if (unlisted > 0) text += "\n  ... and " + std::to_string(unlisted) + " more";
    start_next = [] {};
    return text;
  });
  std::lock_guard lock(w.mutex());
  r.failures = std::move(failures);
  return r;
}

}  // namespace async_test
