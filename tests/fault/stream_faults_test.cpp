// socket_stream under socket faults (see socket_faults.hpp for the technique): a TLS (or plain)
// start_up_server echoing to open_tcp_stream, each implementation on each side, with EINTR,
// EAGAIN, short reads and short writes injected into both sides' real recv/send; and cuts
// mid-record that the reader must report as the right error, never as a clean end.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <tuple>

#include "fault/fault_helpers.hpp"
#include "peers/implementations.hpp"
#include "peers/test_data.hpp"

namespace {

using namespace std::chrono_literals;
using comm::ssl_implementation;
using comm_test::random_bytes;
using comm_test::sha256;
using fault_test::echo_param;
using fault_test::error_text;

// What the server's handler saw, published once when it ends.
struct handler_record {
  std::mutex m;
  std::condition_variable cv;
  bool ended = false;
  bool clean_end = false;  // read_some returned 0
  std::size_t bytes = 0;
  std::exception_ptr error;
  std::string tls_errors;
  bool in_handshake = false;  // ended by a failed handshake, not by the handler

  void end(std::size_t n, bool clean, std::exception_ptr e) {
    std::lock_guard lock(m);
    if (ended) return;
    ended = true;
    clean_end = clean;
    bytes = n;
    error = std::move(e);
    cv.notify_all();
  }
  // A failed handshake ends the connection before any handler runs: it ends the record too.
  void tls_error(const std::exception& e) {
    std::lock_guard lock(m);
    tls_errors += std::string(e.what()) + "\n";
    if (ended) return;
    ended = true;
    in_handshake = true;
    if (auto* f = dynamic_cast<const comm::ssl_failure*>(&e))
      error = std::make_exception_ptr(*f);
    else
      error = std::make_exception_ptr(std::runtime_error(e.what()));
    cv.notify_all();
  }
  bool wait(std::chrono::milliseconds bound) {
    std::unique_lock lock(m);
    return cv.wait_for(lock, bound, [&] { return ended; });
  }
};

// Reads to the end (or an error); echoes when asked.
comm::connection_handler handler_for(handler_record& rec, bool echo) {
  return [&rec, echo](comm::socket_stream& s) {
    std::size_t total = 0;
    char buf[16384];
    try {
      for (;;) {
        std::size_t n = s.read_some(buf, sizeof buf);
        if (n == 0) break;
        total += n;
        if (echo) {
          s.write_all(buf, n);
          s.flush();
        }
      }
    } catch (...) {
      rec.end(total, false, std::current_exception());
      return;
    }
    rec.end(total, true, nullptr);
  };
}

comm::server start_server(handler_record& rec, bool echo, std::optional<ssl_implementation> tls, bool timeouts) {
  comm::server_options so;
  so.address = "127.0.0.1";
  so.handshake_timeout = 5s;
  if (timeouts) {  // with timeouts the stream uses non-blocking calls (and so may see EAGAIN)
    so.stream.read_timeout = 5s;
    so.stream.write_timeout = 5s;
  }
  if (tls) so.ssl_ctx = fault_test::server_ctx(*tls);
  so.tls_error_callback = [&rec](const std::exception& e) { rec.tls_error(e); };
  return comm::start_up_server(handler_for(rec, echo), std::move(so));
}

comm::socket_stream connect_client(std::uint16_t port, std::optional<ssl_implementation> tls) {
  comm::open_tcp_stream_options o;
  o.timeout = 5s;
  o.read_timeout = 5s;
  o.write_timeout = 5s;
  if (tls) {
    o.ssl_ctx = fault_test::client_ctx(*tls);
    o.handshake_timeout = 5s;
  }
  return comm::open_tcp_stream("127.0.0.1", std::to_string(port), std::move(o));
}

// The payload sent in seeded chunks, each read back before the next (no deadlock on full
// buffers); then close_notify and FIN, and the server's handler must end cleanly with every byte.
void run_stream_echo(std::optional<ssl_implementation> client_impl, std::optional<ssl_implementation> server_impl,
              fault::chunking mode, std::uint64_t seed) {
  fault::scope faults;
  handler_record rec;
  // Odd seeds leave the server without timeouts: its reads then block in recv (EINTR and short
  // reads still apply, EAGAIN cannot happen there).
  bool server_timeouts = seed % 2 == 0;
  comm::server srv = start_server(rec, true, server_impl, server_timeouts);
  fault::watch_port(srv.local_port(), fault_test::plan_for(mode, seed), fault_test::plan_for(mode, seed + 1000));

  const std::string payload = random_bytes(fault_test::payload_size(mode), seed);
  std::string echoed;
  {
    comm::socket_stream c = connect_client(srv.local_port(), client_impl);
    std::mt19937_64 rng(seed);
    std::size_t pos = 0;
    while (pos < payload.size()) {
      std::size_t n = std::min<std::size_t>(payload.size() - pos, 1 + rng() % 40000);
      c.write_all(payload.data() + pos, n);
      c.flush();
      std::string back(n, '\0');
      c.read_exact(back.data(), n);
      echoed += back;
      pos += n;
    }
    comm::socket_stream_shutdown(c, comm::direction::output);
    ASSERT_TRUE(rec.wait(5s)) << "the server's handler did not see the end of the stream";
    c.close();
  }
  EXPECT_EQ(echoed.size(), payload.size());
  EXPECT_EQ(sha256(echoed), sha256(payload));
  EXPECT_TRUE(rec.clean_end) << error_text(rec.error);
  EXPECT_EQ(rec.bytes, payload.size());
  EXPECT_EQ(rec.tls_errors, "");

  auto t = fault::totals();
  EXPECT_EQ(t.descriptors, 2u);
  EXPECT_GT(t.short_reads, 0u);
  EXPECT_GT(t.short_writes, 0u);
  EXPECT_GT(t.eintr, 0u);
  EXPECT_GT(t.eagain_reads + t.eagain_writes, 0u);  // at least the client's calls are non-blocking
  EXPECT_EQ(t.cuts, 0u);
  comm::server_terminate(srv);
}

// A stream client's handshake spends one recv: the server's flight, read after it has come. The
// first step used to try a recv before its ClientHello had left the cork, which could only say
// EAGAIN (nothing can answer a hello not yet sent); now the cork's flight leaves first. (The server
// is comm's own, whose flight leaves in one send, so it arrives whole.)
class StreamTlsHandshakeReads : public ::testing::TestWithParam<ssl_implementation> {};

TEST_P(StreamTlsHandshakeReads, AClientHandshakeTakesOneRecv) {
  fault::scope faults;
  handler_record rec;
  comm::server srv = start_server(rec, true, GetParam(), true);
  fault::watch_port(srv.local_port(), fault_test::calm_plan(), fault_test::calm_plan());
  comm::socket_stream c = connect_client(srv.local_port(), GetParam());
  EXPECT_EQ(fault::reads_of(c.native_handle()), 1u);
  c.write_all("ping", 4);
  c.flush();
  char back[4];
  c.read_exact(back, 4);
  EXPECT_EQ(std::string(back, 4), "ping");
  c.close();
  ASSERT_TRUE(rec.wait(5s));
  EXPECT_TRUE(rec.clean_end) << error_text(rec.error);
  comm::server_terminate(srv);
}

INSTANTIATE_TEST_SUITE_P(Implementations, StreamTlsHandshakeReads, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

class StreamTlsFaults : public ::testing::TestWithParam<echo_param> {};

TEST_P(StreamTlsFaults, EchoIsIdentical) {
  auto [client, server, mode, seed] = GetParam();
  run_stream_echo(client, server, mode, seed);
}

INSTANTIATE_TEST_SUITE_P(Implementations, StreamTlsFaults, fault_test::echo_params(), fault_test::echo_param_name{});

class StreamTlsFaultsSeeds : public ::testing::TestWithParam<fault_test::seed_param> {};

TEST_P(StreamTlsFaultsSeeds, RandomSplitsEchoIsIdentical) {
  auto [impl, seed] = GetParam();
  run_stream_echo(impl, impl, fault::chunking::random, seed);
}

INSTANTIATE_TEST_SUITE_P(Implementations, StreamTlsFaultsSeeds, fault_test::seed_params(),
                         fault_test::seed_param_name{});

class StreamPlainFaults : public ::testing::TestWithParam<std::tuple<fault::chunking, std::uint64_t>> {};

TEST_P(StreamPlainFaults, EchoIsIdentical) {
  auto [mode, seed] = GetParam();
  run_stream_echo(std::nullopt, std::nullopt, mode, seed);
}

INSTANTIATE_TEST_SUITE_P(Modes, StreamPlainFaults,
                         ::testing::Combine(::testing::Values(fault::chunking::random, fault::chunking::one_byte),
                                            ::testing::Values(std::uint64_t{1}, std::uint64_t{2})),
                         [](const auto& info) {
                           return fault_test::chunking_name(std::get<0>(info.param)) + "_seed" +
                                  std::to_string(std::get<1>(info.param));
                         });

// ---- cuts mid-record
// The client's descriptor is cut (FIN or reset) after cut_after bytes; the server only reads.
struct cut_result {
  handler_record rec;
  std::uint64_t cut_after = 0;
  std::size_t sent_ok = 0;
};

void run_cut(cut_result& out, std::optional<ssl_implementation> client_impl,
             std::optional<ssl_implementation> server_impl, fault::cut_kind kind, std::uint64_t seed) {
  fault::scope faults;
  comm::server srv = start_server(out.rec, false, server_impl, true);
  fault::plan cutting = fault_test::plan_for(fault::chunking::random, seed);
  cutting.cut = kind;
  // Well inside the data, after the handshake (a few KiB at most), away from record boundaries.
  out.cut_after = 20000 + seed * 1237;
  cutting.cut_after = out.cut_after;
  fault::watch_port(srv.local_port(), cutting, fault_test::plan_for(fault::chunking::random, seed + 1000));

  const std::string payload = random_bytes(64 * 1024, seed);
  {
    comm::socket_stream c = connect_client(srv.local_port(), client_impl);
    try {
      for (std::size_t pos = 0; pos < payload.size(); pos += 4096) {
        c.write_all(payload.data() + pos, 4096);
        c.flush();
        out.sent_ok = pos + 4096;
      }
    } catch (const comm::socket_error&) {
      // Writing on a cut connection fails (EPIPE); that is the writer's side of the story.
    }
    ASSERT_TRUE(out.rec.wait(5s)) << "the server's handler hangs after the cut; TLS errors: " << [&] {
      std::lock_guard lock(out.rec.m);
      return out.rec.tls_errors;
    }();
    try {
      c.close();  // flushes what the failed write left in the buffer: fails again
    } catch (const comm::socket_error&) {
    }
  }
  EXPECT_EQ(fault::totals().cuts, 1u);
  comm::server_terminate(srv);
}

class StreamTlsCut : public ::testing::TestWithParam<std::tuple<ssl_implementation, ssl_implementation, fault::cut_kind>> {};

// A reset can overtake the server's handshake: the client's Finished and its data are out, but
// the server (slowed by its own faults) still has its session tickets to write, and that write
// meets the reset. The server then reports the truncation as a failed handshake (tls_error_callback)
// instead of to a handler. Both are the right error; a clean end or a hang are not.
TEST_P(StreamTlsCut, ReaderSeesTruncationNeverACleanEnd) {
  auto [client, server, kind] = GetParam();
  cut_result r;
  run_cut(r, client, server, kind, 7);
  if (kind == fault::cut_kind::fin) {
    EXPECT_FALSE(r.rec.in_handshake) << r.rec.tls_errors;
  }
  EXPECT_FALSE(r.rec.clean_end) << "a cut TLS connection was reported as an orderly end after " << r.rec.bytes
                                << " bytes";
  EXPECT_LT(r.rec.bytes, r.cut_after);
  fault_test::expect_truncated(r.rec.error);
}

INSTANTIATE_TEST_SUITE_P(Implementations, StreamTlsCut, fault_test::cut_params(), fault_test::cut_param_name{});

TEST(StreamPlainCut, FinDeliversExactlyTheBytesBeforeTheCut) {
  cut_result r;
  run_cut(r, std::nullopt, std::nullopt, fault::cut_kind::fin, 7);
  // Plain TCP cannot tell a cut from an end: the reader gets every byte up to it, then the end.
  EXPECT_TRUE(r.rec.clean_end) << error_text(r.rec.error);
  EXPECT_EQ(r.rec.bytes, r.cut_after);
}

TEST(StreamPlainCut, ResetIsAConnectionResetError) {
  cut_result r;
  run_cut(r, std::nullopt, std::nullopt, fault::cut_kind::reset, 7);
  EXPECT_FALSE(r.rec.clean_end);
  EXPECT_LE(r.rec.bytes, r.cut_after);
  ASSERT_TRUE(r.rec.error);
  try {
    std::rethrow_exception(r.rec.error);
  } catch (const comm::socket_io_error& e) {
    EXPECT_EQ(e.code(), std::error_code(ECONNRESET, std::generic_category())) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected socket_io_error (ECONNRESET), got: " << e.what();
  }
}

}  // namespace
