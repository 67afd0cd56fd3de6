// async_io_state under socket faults (see socket_faults.hpp for the technique): a TLS (or plain)
// async acceptor echoing to create_async_io_state_and_connected_tcp_socket, each implementation
// on each side, with EINTR, EAGAIN (answered by synthetic edge-triggered events), short reads and
// short writes injected into both sides' real recv/send; and cuts mid-record that the reading
// state must end with the right error, never with a clean end of stream.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <tuple>

#include "async/async_helpers.hpp"
#include "fault/fault_helpers.hpp"
#include "peers/implementations.hpp"
#include "peers/test_data.hpp"

namespace {

using namespace std::chrono_literals;
using comm::io_status;
using comm::ssl_implementation;
using comm_test::random_bytes;
using comm_test::sha256;
using fault_test::echo_param;
using fault_test::error_text;

// The client's view of one echo: filled in the client loop, read by the test after done.
struct client_run {
  async_test::waiter w;
  bool done = false;
  std::string received;
  io_status end_status = io_status::ok;
  std::exception_ptr error;
  std::string failure;  // connect, write or shutdown failure
  std::uint64_t sends = 0;  // counted by the coalescing tests
};

// The bound on each connect, handshake, read and write of the echo runs. It only ends a hang: a
// one-byte run moves a record a byte per loop turn, so under a sanitizer on busy cores the first
// echoed byte can take seconds (5 s was too short under ThreadSanitizer at ctest -j4).
constexpr auto io_bound = 30s;

comm::async_connect_options client_options(std::optional<ssl_implementation> tls) {
  comm::async_connect_options o;
  o.connect_timeout = io_bound;
  o.read_timeout = io_bound;
  o.write_timeout = io_bound;
  o.queue_output = true;
  if (tls) {
    o.ssl_ctx = fault_test::client_ctx(*tls);
    o.handshake_timeout = io_bound;
  }
  return o;
}

// How an echo run ends.
struct echo_options {
  bool faults = true;
  // Write faults stop when a side asks for its output shutdown, which keeps most runs short;
  // AsyncTlsCloseNotify keeps them on through the close_notify.
  bool calm_close = true;
  bool half_close_early = false;  // the client shuts its output down before the echo is back
};

void shut_output(comm::async_io_state& s, client_run& run, bool calm) {
  if (calm) fault::calm_writes();
  comm::async_io_state_shutdown(s, comm::direction::output, false, [&run](comm::async_io_state&, std::error_code ec) {
    if (ec) run.failure += "shutdown: " + ec.message() + "\n";
  });
}

// Connects, queues the payload in seeded chunks, and reads the echo to the end of stream. The
// client shuts its output down (close_notify and FIN) once the whole echo is back, or with
// half_close_early right after queuing the writes (the server then echoes after the close_notify).
void start_client(async_test::loop_thread& lt, std::uint16_t port, std::optional<ssl_implementation> tls,
                  const std::string& payload, std::uint64_t seed, client_run& run, echo_options eo = {}) {
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "127.0.0.1", std::to_string(port),
        [&run, &payload, seed, eo](comm::async_io_state* s, std::exception_ptr e) {
          if (s == nullptr) {
            run.w.notify([&] {
              run.failure = "connect: " + error_text(e);
              run.done = true;
            });
            return;
          }
          std::mt19937_64 rng(seed);
          for (std::size_t pos = 0; pos < payload.size();) {
            std::size_t n = std::min<std::size_t>(payload.size() - pos, 1 + rng() % 40000);
            comm::write_buffer_options wo;
            wo.error_callback = [&run](comm::async_io_state& st, std::size_t) {
              run.failure += "write: " + error_text(st.write_error()) + "\n";
            };
            comm::async_io_state_write_buffer(*s, payload.substr(pos, n), {}, std::move(wo));
            pos += n;
          }
          if (eo.half_close_early) shut_output(*s, run, eo.calm_close);
          comm::async_io_state_read_with_checking(*s, [&run, &payload, eo](comm::async_io_state& st,
                                                                           std::span<const std::byte> d) {
            bool had_all = run.received.size() >= payload.size();
            run.received.append(reinterpret_cast<const char*>(d.data()), d.size());
            if (!eo.half_close_early && !had_all && run.received.size() >= payload.size())
              shut_output(st, run, eo.calm_close);
            if (st.read_status() != io_status::ok) {
              run.w.notify([&] {
                run.end_status = st.read_status();
                run.error = st.read_error();
                run.done = true;
              });
              comm::close_async_io_state(st);
              return;
            }
            comm::async_io_state_discard(st, d.size());
          });
        },
        client_options(tls));
  });
}

// The server's view: an echo that, at the end of the stream, finishes its writes, shuts its output
// down (close_notify and FIN) and closes.
struct echo_record {
  async_test::waiter w;
  int accepted = 0;
  bool ended = false;
  std::size_t bytes = 0;
  io_status status = io_status::ok;
  std::exception_ptr error;
  std::string failures;  // write, shutdown or handshake failures
};

struct echo_server {
  async_test::loop_thread lt{"fault echo"};
  std::shared_ptr<comm::accepting_handle> handle;
  echo_server(std::optional<ssl_implementation> tls, echo_record& rec, bool calm_close) {
    handle = lt.call([&] {
      comm::accept_options o;
      o.address = "127.0.0.1";
      o.queue_output = true;
      o.handshake_timeout = io_bound;
      o.read_timeout = io_bound;
      o.write_timeout = io_bound;
      if (tls) o.ssl_ctx = fault_test::server_ctx(*tls);
      o.ssl_error_callback = [&rec](std::exception_ptr e, std::optional<comm::endpoint>) {
        rec.w.notify([&] { rec.failures += "handshake: " + error_text(e) + "\n"; });
      };
      return comm::accept_tcp_connections_creating_async_io_states(
          *lt, "0",
          [&rec, calm_close](comm::accepting_handle&, comm::async_io_state& s) {
            ++rec.accepted;
            comm::async_io_state_read_with_checking(s, [&rec, calm_close](comm::async_io_state& st,
                                                                          std::span<const std::byte> d) {
              rec.bytes += d.size();
              if (!d.empty()) {
                comm::write_buffer_options wo;
                wo.error_callback = [&rec](comm::async_io_state& x, std::size_t) {
                  rec.failures += "write: " + error_text(x.write_error()) + "\n";
                };
                comm::async_io_state_write_buffer(st, std::vector<std::byte>(d.begin(), d.end()), {}, std::move(wo));
              }
              if (st.read_status() != io_status::ok) {
                rec.w.notify([&] {
                  rec.status = st.read_status();
                  rec.error = st.read_error();
                  rec.ended = true;
                });
                if (st.read_status() != io_status::eof) {
                  comm::close_async_io_state(st);
                  return;
                }
                if (calm_close) fault::calm_writes();
                comm::async_io_state_shutdown(st, comm::direction::output, false,
                                              [&rec](comm::async_io_state& x, std::error_code ec) {
                                                if (ec) rec.failures += "shutdown: " + ec.message() + "\n";
                                                comm::close_async_io_state(x);
                                              });
                return;
              }
              comm::async_io_state_discard(st, d.size());
            });
          },
          std::move(o));
    });
  }
  std::uint16_t port() const { return handle->local_port(); }
};

void run_async_echo(std::optional<ssl_implementation> client_impl, std::optional<ssl_implementation> server_impl,
              fault::chunking mode, std::uint64_t seed, echo_options eo = {}) {
  fault::scope faults;
  const std::string payload = random_bytes(fault_test::payload_size(mode), seed);
  client_run run;
  echo_record rec;
  {
    echo_server server(server_impl, rec, eo.calm_close);
    if (eo.faults)
      fault::watch_port(server.port(), fault_test::plan_for(mode, seed), fault_test::plan_for(mode, seed + 1000));
    async_test::loop_thread client_loop("fault client");
    start_client(client_loop, server.port(), client_impl, payload, seed, run, eo);
    ASSERT_TRUE(run.w.wait([&] { return run.done; }, 2 * io_bound)) << "the echo did not finish; received "
                                                           << run.received.size() << " bytes";
    ASSERT_TRUE(rec.w.wait([&] { return rec.ended; }, io_bound));
  }
  EXPECT_EQ(rec.accepted, 1);
  EXPECT_EQ(rec.failures, "");
  EXPECT_EQ(rec.status, io_status::eof) << error_text(rec.error);
  EXPECT_FALSE(rec.error) << error_text(rec.error);
  EXPECT_EQ(rec.bytes, payload.size());
  EXPECT_EQ(run.failure, "");
  EXPECT_EQ(run.end_status, io_status::eof) << error_text(run.error);
  EXPECT_FALSE(run.error) << error_text(run.error);
  EXPECT_EQ(run.received.size(), payload.size());
  EXPECT_EQ(sha256(run.received), sha256(payload));

  if (!eo.faults) return;
  auto t = fault::totals();
  EXPECT_EQ(t.descriptors, 2u);
  EXPECT_GT(t.short_reads, 0u);
  EXPECT_GT(t.short_writes, 0u);
  EXPECT_GT(t.eintr, 0u);
  EXPECT_GT(t.eagain_reads, 0u);
  EXPECT_GT(t.eagain_writes, 0u);
  EXPECT_GT(t.synthetic_events, 0u);
  EXPECT_EQ(t.cuts, 0u);
}

class AsyncTlsFaults : public ::testing::TestWithParam<echo_param> {};

TEST_P(AsyncTlsFaults, EchoIsIdentical) {
  auto [client, server, mode, seed] = GetParam();
  run_async_echo(client, server, mode, seed);
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTlsFaults, fault_test::echo_params(), fault_test::echo_param_name{});

class AsyncTlsFaultsSeeds : public ::testing::TestWithParam<fault_test::seed_param> {};

TEST_P(AsyncTlsFaultsSeeds, RandomSplitsEchoIsIdentical) {
  auto [impl, seed] = GetParam();
  run_async_echo(impl, impl, fault::chunking::random, seed);
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTlsFaultsSeeds, fault_test::seed_params(),
                         fault_test::seed_param_name{});

// TLS 1.3 allows a half-close (RFC 8446 6.1): a peer may go on writing after it received the
// other's close_notify. The echo comes back whole after the client's early close_notify, over
// either implementation (the GnuTLS engine used to refuse every write after it).
class AsyncTlsHalfClose : public ::testing::TestWithParam<ssl_implementation> {};

TEST_P(AsyncTlsHalfClose, ServerEchoesAfterTheClientsCloseNotify) {
  echo_options eo;
  eo.faults = false;
  eo.half_close_early = true;
  run_async_echo(GetParam(), GetParam(), fault::chunking::random, 1, eo);
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTlsHalfClose, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

// async_io_state_shutdown(output) on TLS sends the whole close_notify before shutdown(SHUT_WR),
// waiting for the socket when it takes only part of the record (a short write) or none of it
// (EAGAIN): the peer sees an orderly close, never a truncation. With one-byte writes the record
// leaves a byte per edge.
class AsyncTlsCloseNotify : public ::testing::TestWithParam<ssl_implementation> {};

TEST_P(AsyncTlsCloseNotify, ShutdownOutputDeliversTheCloseNotifyUnderShortWrites) {
  echo_options eo;
  eo.calm_close = false;
  run_async_echo(GetParam(), GetParam(), fault::chunking::one_byte, 1, eo);
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTlsCloseNotify,
                         ::testing::ValuesIn(comm_test::tested_implementations()), comm_test::implementation_name{});

// Writes queued together leave together: under TLS the records of 64 queued 100-byte writes
// leave in a few sends (one send per write before), each callback still runs once, in order, after
// its bytes left, and the echo comes back byte for byte. Sends are counted on the real sockets
// (both sides; the echo server's replies are queued writes too), with no fault injected.
class AsyncTlsCoalescing : public ::testing::TestWithParam<ssl_implementation> {};

// A TLS client on lt, connected to 127.0.0.1:port with no fault of its own: connected(state) runs in
// the loop, or failed("connect: ...").
void connect_tls_client(async_test::loop_thread& lt, std::uint16_t port, ssl_implementation impl,
                        std::function<void(comm::async_io_state&)> connected, std::function<void(std::string)> failed) {
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "127.0.0.1", std::to_string(port),
        [connected = std::move(connected), failed = std::move(failed)](comm::async_io_state* s, std::exception_ptr e) {
          if (s == nullptr) return failed("connect: " + error_text(e));
          connected(*s);
        },
        client_options(impl));
  });
}

TEST_P(AsyncTlsCoalescing, QueuedWritesLeaveInFewSends) {
  fault::scope faults;
  const fault::plan calm = fault_test::calm_plan();
  static constexpr int writes = 64;
  const std::string payload = random_bytes(writes * 100, 77);
  struct : client_run {
    std::vector<int> order;  // loop thread until done
  } run;
  echo_record rec;
  {
    echo_server server(GetParam(), rec, true);
    fault::watch_port(server.port(), calm, calm);
    async_test::loop_thread client_loop("coalescing client");
    connect_tls_client(
        client_loop, server.port(), GetParam(),
        [&](comm::async_io_state& s) {
          const std::uint64_t before = fault::totals().writes;
          for (int i = 0; i < writes; ++i)
            comm::async_io_state_write_buffer(s, payload.substr(i * 100, 100),
                                              [&run, i, before](comm::async_io_state&, std::size_t n) {
                                                if (n == 100) run.order.push_back(i);
                                                if (i == writes - 1) run.sends = fault::totals().writes - before;
                                              });
          comm::async_io_state_read_with_checking(s, [&](comm::async_io_state& st, std::span<const std::byte> d) {
            run.received.append(reinterpret_cast<const char*>(d.data()), d.size());
            if (st.read_status() != io_status::ok || run.received.size() >= payload.size()) {
              if (st.read_status() != io_status::ok) run.failure = "read: " + error_text(st.read_error());
              run.w.notify([&] { run.done = true; });
              comm::close_async_io_state(st);
              return;
            }
            comm::async_io_state_discard(st, d.size());
          });
        },
        [&](std::string why) { run.w.notify([&] { run.failure = why, run.done = true; }); });
    ASSERT_TRUE(run.w.wait([&] { return run.done; }, 10s)) << "received " << run.received.size() << " bytes";
  }
  EXPECT_EQ(run.failure, "");
  EXPECT_EQ(run.received, payload);
  std::vector<int> expected(writes);
  for (int i = 0; i < writes; ++i) expected[i] = i;
  EXPECT_EQ(run.order, expected);
  EXPECT_GT(run.sends, 0u);
  EXPECT_LT(run.sends, 16u) << "sends while 64 queued writes completed";
  std::printf("coalescing: %llu sends on both sides while 64 queued writes completed\n", static_cast<unsigned long long>(run.sends));
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTlsCoalescing, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

// A connection costs the loop one epoll registration per end: the connecting socket's, which the
// client's state takes over with one EPOLL_CTL_MOD, and the accepted socket's. (Deleting the
// connector's registration and adding the state's made it four.) Counted on both ends, from the
// connect until both states exist.
TEST(AsyncRegistrations, AConnectionTakesThreeEpollCalls) {
  fault::scope faults;
  const fault::plan calm = fault_test::calm_plan();
  async_test::loop_thread lt("registrations");
  async_test::waiter w;
  bool accepted = false, connected = false;
  std::string failure;
  auto h = lt.call([&] {
    comm::accept_options o;
    o.address = "127.0.0.1";
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0", [&](comm::accepting_handle&, comm::async_io_state&) { w.notify([&] { accepted = true; }); }, o);
  });
  fault::watch_port(h->local_port(), calm, calm);
  const std::uint64_t before = fault::totals().registrations;
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "127.0.0.1", std::to_string(h->local_port()), [&](comm::async_io_state* s, std::exception_ptr e) {
          w.notify([&] { connected = s != nullptr, failure = e ? "connect failed" : ""; });
        });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return accepted && (connected || !failure.empty()); }, 10s));
  EXPECT_EQ(failure, "");
  EXPECT_EQ(lt.call([&] { return fault::totals().registrations; }) - before, 3u);
}

// The flight that ends a handshake leaves with what the callback writes at once: the client's
// Finished with its first request, the server's session tickets with its first reply. A TLS 1.3
// connection and one echo then take four sends in all (ClientHello; the server's flight;
// Finished + request; tickets + reply), where sending each flight on its own took six with
// OpenSSL and five with GnuTLS, and the peer woke for each. Sends are counted on both ends, from before the connect until the reply
// is read; the bytes echoed are checked as well.
TEST_P(AsyncTlsCoalescing, HandshakeEndLeavesWithTheFirstWrite) {
  fault::scope faults;
  const fault::plan calm = fault_test::calm_plan();
  client_run run;
  echo_record rec;
  {
    echo_server server(GetParam(), rec, true);
    fault::watch_port(server.port(), calm, calm);
    async_test::loop_thread client_loop("handshake end client");
    const std::uint64_t before = fault::totals().writes;
    connect_tls_client(
        client_loop, server.port(), GetParam(),
        [&](comm::async_io_state& s) {
          comm::async_io_state_write_buffer(s, std::string("ping"), {});
          comm::async_io_state_read_with_checking(s, [&, before](comm::async_io_state& st, std::span<const std::byte> d) {
            run.received.append(reinterpret_cast<const char*>(d.data()), d.size());
            comm::async_io_state_discard(st, d.size());
            if (st.read_status() != io_status::ok || run.received.size() >= 4) {
              const std::uint64_t sends = fault::totals().writes - before;
              if (st.read_status() != io_status::ok) run.failure = "read: " + error_text(st.read_error());
              run.w.notify([&] { run.sends = sends, run.done = true; });
              comm::async_io_state_finish(st);
              comm::close_async_io_state(st);
            }
          });
        },
        [&](std::string why) { run.w.notify([&] { run.failure = why, run.done = true; }); });
    ASSERT_TRUE(run.w.wait([&] { return run.done; }, 10s)) << "received " << run.received.size() << " bytes";
  }
  EXPECT_EQ(run.failure, "");
  EXPECT_EQ(run.received, "ping");
  EXPECT_EQ(run.sends, 4u) << "sends from the connect to the echo, both ends";
}

// A callback that writes nothing (nor reads): the client's Finished still leaves before its loop
// waits, so the server's handshake completes and its accept callback runs.
TEST_P(AsyncTlsCoalescing, HandshakeEndLeavesWithoutAWrite) {
  fault::scope faults;
  const fault::plan calm = fault_test::calm_plan();
  struct {
    async_test::waiter w;
    bool connected = false, accepted = false;
    std::string failure;
  } run;
  std::shared_ptr<comm::async_io_state> client;
  async_test::loop_thread server_loop("handshake end server");
  auto handle = server_loop.call([&] {
    comm::accept_options o;
    o.address = "127.0.0.1";
    o.ssl_ctx = fault_test::server_ctx(GetParam());
    o.handshake_timeout = io_bound;
    o.ssl_error_callback = [&](std::exception_ptr e, std::optional<comm::endpoint>) {
      run.w.notify([&] { run.failure = "server handshake: " + error_text(e); });
    };
    return comm::accept_tcp_connections_creating_async_io_states(
        *server_loop, "0", [&](comm::accepting_handle&, comm::async_io_state&) { run.w.notify([&] { run.accepted = true; }); },
        std::move(o));
  });
  fault::watch_port(handle->local_port(), calm, calm);
  {
    async_test::loop_thread client_loop("handshake end client");
    connect_tls_client(
        client_loop, handle->local_port(), GetParam(),
        [&](comm::async_io_state& s) {
          client = s.shared_from_this();  // kept open, nothing started
          run.w.notify([&] { run.connected = true; });
        },
        [&](std::string why) { run.w.notify([&] { run.failure = why; }); });
    EXPECT_TRUE(run.w.wait([&] { return (run.connected && run.accepted) || !run.failure.empty(); }, 10s))
        << "connected " << run.connected << ", accepted " << run.accepted;
    EXPECT_EQ(run.failure, "");
    client_loop.call([&] {
      if (client) comm::close_async_io_state(*client);
      client.reset();
    });
  }
  server_loop.call([&] { comm::close_accepting_handle(*handle); });
}

class AsyncPlainFaults : public ::testing::TestWithParam<std::tuple<fault::chunking, std::uint64_t>> {};

TEST_P(AsyncPlainFaults, EchoIsIdentical) {
  auto [mode, seed] = GetParam();
  run_async_echo(std::nullopt, std::nullopt, mode, seed);
}

INSTANTIATE_TEST_SUITE_P(Modes, AsyncPlainFaults,
                         ::testing::Combine(::testing::Values(fault::chunking::random, fault::chunking::one_byte),
                                            ::testing::Values(std::uint64_t{1}, std::uint64_t{2}, std::uint64_t{3})),
                         [](const auto& info) {
                           return fault_test::chunking_name(std::get<0>(info.param)) + "_seed" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---- cuts mid-record: the client's descriptor is cut after cut_after bytes; the server reads.
struct sink_result {
  async_test::waiter w;
  bool ended = false;
  bool in_handshake = false;  // ended by a failed handshake (ssl_error_callback)
  std::size_t bytes = 0;
  io_status status = io_status::ok;
  std::exception_ptr error;
};

struct sink_server {
  async_test::loop_thread lt{"fault sink"};
  std::shared_ptr<comm::accepting_handle> handle;
  // close_on_end false: the connection stays open after an error (the client sees no end).
  sink_server(std::optional<ssl_implementation> tls, sink_result& out, bool close_on_end = true) {
    handle = lt.call([&] {
      comm::accept_options o;
      o.address = "127.0.0.1";
      o.handshake_timeout = 5s;
      o.read_timeout = 5s;
      if (tls) o.ssl_ctx = fault_test::server_ctx(*tls);
      o.ssl_error_callback = [&out](std::exception_ptr e, std::optional<comm::endpoint>) {
        out.w.notify([&] {
          if (out.ended) return;
          out.status = io_status::error;
          out.error = e;
          out.in_handshake = true;
          out.ended = true;
        });
      };
      return comm::accept_tcp_connections_creating_async_io_states(
          *lt, "0",
          [&out, close_on_end](comm::accepting_handle&, comm::async_io_state& s) {
            comm::async_io_state_read_with_checking(s, [&out, close_on_end](comm::async_io_state& st, std::span<const std::byte> d) {
              out.bytes += d.size();
              if (st.read_status() != io_status::ok) {
                out.w.notify([&] {
                  out.status = st.read_status();
                  out.error = st.read_error();
                  out.ended = true;
                });
                if (close_on_end) comm::close_async_io_state(st);
                return;
              }
              comm::async_io_state_discard(st, d.size());
            });
          },
          std::move(o));
    });
  }
  std::uint16_t port() const { return handle->local_port(); }
};

// Write-behind: 64 writes of 16 KiB, each started by the previous one's callback (one write at a
// time, as a bulk sender does), leave four records per send instead of one send per write. Every
// callback runs once, in order, with the whole size; an output shutdown after the last then sends
// what is owed before the close_notify, and the sink reads every byte and a clean end.
TEST_P(AsyncTlsCoalescing, ChainedWritesLeaveInFewSends) {
  fault::scope faults;
  const fault::plan calm = fault_test::calm_plan();
  static constexpr int writes = 64;
  static constexpr std::size_t size = 16 * 1024;
  struct chain {
    async_test::waiter w;
    bool done = false;
    int next = 0;
    std::vector<std::size_t> sizes;  // loop thread until done
    std::uint64_t before = 0, sends = 0;
    std::string failure;
    std::string payload = random_bytes(size, 78);
    void write(comm::async_io_state& s) {
      ++next;
      comm::async_io_state_write_buffer(s, payload, [this](comm::async_io_state& st, std::size_t n) {
        sizes.push_back(n);
        if (st.write_status() != io_status::ok) {
          w.notify([&] { failure = "write: " + error_text(st.write_error()), done = true; });
          return;
        }
        if (next < writes) return write(st);
        sends = fault::totals().writes - before;
        comm::async_io_state_shutdown(st, comm::direction::output, false, [this](comm::async_io_state& s2, std::error_code ec) {
          if (ec) failure = "shutdown: " + ec.message();
          // Until the sink's end: closing with its session tickets unread would reset the
          // connection under bytes it has not read yet.
          comm::async_io_state_read_with_checking(s2, [this](comm::async_io_state& s3, std::span<const std::byte> d) {
            if (s3.read_status() == io_status::ok) return (void)comm::async_io_state_discard(s3, d.size());
            comm::close_async_io_state(s3);
            w.notify([&] { done = true; });
          });
        });
      });
    }
  } run;
  sink_result out;
  {
    sink_server server(GetParam(), out);
    fault::watch_port(server.port(), calm, calm);
    async_test::loop_thread client_loop("chain client");
    connect_tls_client(
        client_loop, server.port(), GetParam(),
        [&](comm::async_io_state& s) {
          run.before = fault::totals().writes;
          run.write(s);
        },
        [&](std::string why) { run.w.notify([&] { run.failure = why, run.done = true; }); });
    ASSERT_TRUE(run.w.wait([&] { return run.done; }, 10s));
    ASSERT_TRUE(out.w.wait([&] { return out.ended; }, 10s));
  }
  EXPECT_EQ(run.failure, "");
  EXPECT_EQ(run.sizes, std::vector<std::size_t>(writes, size));
  EXPECT_EQ(out.status, io_status::eof) << error_text(out.error);
  EXPECT_EQ(out.bytes, writes * size);
  EXPECT_GT(run.sends, 0u);
  EXPECT_LT(run.sends, 32u) << "sends while 64 chained writes of 16 KiB completed";
  std::printf("chained: %llu sends while 64 chained writes of 16 KiB completed\n",
              static_cast<unsigned long long>(run.sends));
}

// Write-behind and a failure: a 16 KiB write is done before its records leave; the send after its
// callback fails (the client's descriptor is cut after 8,000 bytes, FIN, so no edge tells the
// loop). That failure becomes the state's write status, and the next write of the same size fails
// with it instead of being done behind records that can never leave.
TEST_P(AsyncTlsCoalescing, FailureOfRecordsLeftBehindFailsTheNextWrite) {
  fault::scope faults;
  const fault::plan calm = fault_test::calm_plan();
  fault::plan cutting = calm;
  cutting.cut = fault::cut_kind::fin;
  cutting.cut_after = 8000;  // inside the first record of application data
  const std::string payload = random_bytes(16 * 1024, 79);
  struct {
    async_test::waiter w;
    bool done = false;
    std::string failure;
    std::size_t first_n = 0, second_n = 0;
    io_status first = io_status::error, second = io_status::ok, after_first = io_status::ok;
    std::string second_error;
  } run;
  sink_result out;
  sink_server server(GetParam(), out, /*close_on_end=*/false);
  fault::watch_port(server.port(), cutting, calm);
  async_test::loop_thread client_loop("behind failure");
  connect_tls_client(
      client_loop, server.port(), GetParam(),
      [&](comm::async_io_state& s) {
        auto st = s.shared_from_this();
        comm::async_io_state_write_buffer(s, payload, [&, st](comm::async_io_state&, std::size_t n) {
          run.first = st->write_status();
          run.first_n = n;
          // Later, after the loop tried to send what this write left behind.
          comm::apply_in_wait_state_collection_process(*client_loop, [&, st] {
            run.after_first = st->write_status();
            comm::async_io_state_write_buffer(*st, payload, [&, st](comm::async_io_state&, std::size_t n2) {
              run.second = st->write_status();
              run.second_n = n2;
              run.second_error = error_text(st->write_error());
              comm::close_async_io_state(*st);
              run.w.notify([&] { run.done = true; });
            });
          });
        });
      },
      [&](std::string why) { run.w.notify([&] { run.failure = why, run.done = true; }); });
  ASSERT_TRUE(run.w.wait([&] { return run.done; }, 10s));
  EXPECT_EQ(run.failure, "");
  EXPECT_EQ(run.first, io_status::ok);
  EXPECT_EQ(run.first_n, payload.size());
  EXPECT_EQ(run.after_first, io_status::error);
  EXPECT_EQ(run.second, io_status::error);
  EXPECT_EQ(run.second_n, 0u);
  EXPECT_NE(run.second_error.find("TLS write"), std::string::npos) << run.second_error;
  EXPECT_NE(run.second_error.find("Broken pipe"), std::string::npos) << run.second_error;
  EXPECT_EQ(fault::totals().cuts, 1u);
}

void run_cut(sink_result& out, std::uint64_t& cut_after, std::optional<ssl_implementation> client_impl,
             std::optional<ssl_implementation> server_impl, fault::cut_kind kind, std::uint64_t seed) {
  fault::scope faults;
  const std::string payload = random_bytes(64 * 1024, seed);
  client_run run;
  sink_server server(server_impl, out);
  fault::plan cutting = fault_test::plan_for(fault::chunking::random, seed);
  cutting.cut = kind;
  cut_after = 20000 + seed * 1237;
  cutting.cut_after = cut_after;
  fault::watch_port(server.port(), cutting, fault_test::plan_for(fault::chunking::random, seed + 1000));
  async_test::loop_thread client_loop("fault client");
  start_client(client_loop, server.port(), client_impl, payload, seed, run);
  ASSERT_TRUE(out.w.wait([&] { return out.ended; }, 10s)) << "the reader hangs after the cut; it has " << out.bytes
                                                          << " bytes";
  EXPECT_EQ(fault::totals().cuts, 1u);
}

class AsyncTlsCut : public ::testing::TestWithParam<std::tuple<ssl_implementation, ssl_implementation, fault::cut_kind>> {};

// As for the stream (see StreamTlsCut): a reset may overtake the server's handshake, which then
// reports the truncation to ssl_error_callback.
TEST_P(AsyncTlsCut, ReaderSeesTruncationNeverACleanEnd) {
  auto [client, server, kind] = GetParam();
  sink_result r;
  std::uint64_t cut_after = 0;
  run_cut(r, cut_after, client, server, kind, 7);
  if (kind == fault::cut_kind::fin) {
    EXPECT_FALSE(r.in_handshake) << error_text(r.error);
  }
  EXPECT_EQ(r.status, io_status::error) << error_text(r.error);
  EXPECT_LT(r.bytes, cut_after);
  fault_test::expect_truncated(r.error);
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTlsCut, fault_test::cut_params(), fault_test::cut_param_name{});

TEST(AsyncPlainCut, FinDeliversExactlyTheBytesBeforeTheCut) {
  sink_result r;
  std::uint64_t cut_after = 0;
  run_cut(r, cut_after, std::nullopt, std::nullopt, fault::cut_kind::fin, 7);
  EXPECT_EQ(r.status, io_status::eof);
  EXPECT_FALSE(r.error) << error_text(r.error);
  EXPECT_EQ(r.bytes, cut_after);
}

TEST(AsyncPlainCut, ResetIsAConnectionResetError) {
  sink_result r;
  std::uint64_t cut_after = 0;
  run_cut(r, cut_after, std::nullopt, std::nullopt, fault::cut_kind::reset, 7);
  EXPECT_EQ(r.status, io_status::error);
  EXPECT_LE(r.bytes, cut_after);
  ASSERT_TRUE(r.error);
  try {
    std::rethrow_exception(r.error);
  } catch (const comm::socket_io_error& e) {
    EXPECT_EQ(e.code(), std::error_code(ECONNRESET, std::generic_category())) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected socket_io_error (ECONNRESET), got: " << e.what();
  }
}

}  // namespace
