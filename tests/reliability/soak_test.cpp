// Bounded hostile-load soak, for each TLS implementation, against a TLS start_up_server, a plain
// start_up_server and a TLS async acceptor, all on 127.0.0.1: well-behaved clients (plain and TLS,
// sha256-checked echoes) run while hostile ones send garbage instead of a ClientHello, dribble a
// ClientHello byte by byte, stall after it, reset mid-handshake and mid-record, send oversized
// records, ask a TLS 1.2 connection to renegotiate, and connect-and-close by the thousand. Pass:
// every good byte echoed, every hostile connection ended by the server within its bound,
// descriptors and threads back to their start values, RSS back within a bound.
// COMM_SOAK_SECONDS=N repeats the rounds for about N seconds (default: two rounds, well under 60 s;
// the RSS baseline is taken after the first, and checked after the servers stopped).
#include <gtest/gtest.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "comm/async.hpp"
#include "comm/stream.hpp"
#include "comm/tls.hpp"
#include "peers/implementations.hpp"
#include "peers/test_data.hpp"
#include "tls/engine.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Thread names, for the message when the count does not come back.
std::string thread_names() {
  std::string out;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream f(e.path() / "comm");
    std::string name;
    std::getline(f, name);
    out += (out.empty() ? "" : ", ") + name;
  }
  return out;
}

int count_dir(const char* path) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(path)) ++n;
  return n;
}

// The process's thread count once it is at most `target`, or the count after 5 s. A joined thread
// can still be listed under /proc/self/task for a moment: the kernel wakes pthread_join before it
// has removed the task. There is nothing to wait on for that, so this polls, with a bound.
int thread_count_settled_to(int target) {
  const auto deadline = clock_type::now() + 5s;
  int n = count_dir("/proc/self/task");
  while (n > target && clock_type::now() < deadline) {
    std::this_thread::sleep_for(1ms);
    n = count_dir("/proc/self/task");
  }
  return n;
}
long rss_kib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

using comm_test::random_bytes;
using comm_test::sha256;

comm::ssl_abstract_context server_ctx(comm::ssl_implementation impl) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.cert_pem = comm_test::demo_credentials_for_loopback().cert_pem;
  o.key_pem = comm_test::demo_credentials_for_loopback().key_pem;
  return comm::create_ssl_server_context(std::move(o));
}
comm::ssl_abstract_context client_ctx() {
  comm::ssl_context_options o;
  o.trusted_pem = comm_test::demo_credentials_for_loopback().ca_cert_pem;
  o.use_system_trusted = false;
  return comm::create_ssl_client_context(std::move(o));
}

// An OpenSSL client limited to TLS 1.2 that may ask for renegotiation (comm's contexts refuse it;
// the option is cleared on each connection natively).
comm::ssl_abstract_context renegotiating_client_ctx() {
  comm::ssl_context_options o;
  o.implementation = comm::ssl_implementation::openssl;
  o.trusted_pem = comm_test::demo_credentials_for_loopback().ca_cert_pem;
  o.use_system_trusted = false;
  o.session_resumption = false;
  o.protocol_version.max = comm::ssl_protocol_version::tls_v1_2;
  o.openssl_ssl_configure_callback = [](comm::ssl_pointer s) { SSL_clear_options(s.ptr, SSL_OP_NO_RENEGOTIATION); };
  return comm::create_ssl_client_context(std::move(o));
}

// A real ClientHello: the first flight of a client engine, captured from memory.
std::string client_hello() {
  struct capture final : comm::detail::transport {
    std::string out;
    comm::detail::io_result read(void*, std::size_t) override { return {0, EAGAIN}; }
    comm::detail::io_result write(const void* d, std::size_t n) override {
      out.append(static_cast<const char*>(d), n);
      return {n, 0};
    }
  } t;
  comm::detail::engine_params p;
  p.side = comm::ssl_side::client;
  p.sni = p.host_name = "localhost";
  auto e = comm::detail::make_engine(comm::ssl_ctx_spec(client_ctx()), p, t);
  e->handshake();
  return t.out;
}

comm::socket_handle raw_connect(std::uint16_t port) {
  comm::connect_options o;
  o.timeout = 5s;
  return comm::connect_to_tcp_server("127.0.0.1", std::to_string(port), o);
}

// Reads and drops until the server ends the connection (EOF or reset). False if it is still open
// after `bound`.
bool server_ends_within(int fd, std::chrono::milliseconds bound) {
  auto deadline = clock_type::now() + bound;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
}

void reset_close(comm::socket_handle& s) {
  linger l{1, 0};
  ::setsockopt(s.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  s.reset();
}

void send_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may already have closed: that is its right
    done += static_cast<std::size_t>(n);
  }
}

struct tally {
  std::atomic<int> good_ok{0}, good_failed{0}, hostile_ended{0}, hostile_hung{0};
  std::atomic<long long> good_bytes{0};
  std::atomic<int> connect_close{0};
  // Renegotiation: refused (the connection ended) / ignored (still pending) / completed (must not).
  std::atomic<int> reneg_refused{0}, reneg_ignored{0}, reneg_completed{0}, reneg_broken{0};
  std::string reneg_example;  // how the first refused one ended
  std::mutex m;
  std::vector<std::string> failures;
  void fail(const std::string& s) {
    std::lock_guard<std::mutex> l(m);
    ++good_failed;
    if (failures.size() < 20) failures.push_back(s);
  }
};

// A well-behaved client: 4 rounds of 16 KiB (random, seeded) written and read back, sha256 compared.
void good_client(std::uint16_t port, bool tls, std::uint64_t seed, tally& t) {
  try {
    comm::open_tcp_stream_options o;
    o.timeout = 10s;
    o.read_timeout = 20s;
    o.write_timeout = 20s;
    if (tls) {
      o.ssl_ctx = client_ctx();
      o.handshake_timeout = 20s;
    }
    auto s = comm::open_tcp_stream("127.0.0.1", std::to_string(port), std::move(o));
    std::string sent, got;
    for (int round = 0; round < 4; ++round) {
      std::string chunk = random_bytes(16384, seed * 10 + static_cast<std::uint64_t>(round));
      s.write_all(chunk);
      s.flush();
      sent += chunk;
      std::string back(chunk.size(), '\0');
      s.read_exact(back.data(), back.size());
      got += back;
    }
    if (sha256(got) != sha256(sent)) {
      t.fail("echo mismatch");
      return;
    }
    t.good_bytes += static_cast<long long>(got.size());
    ++t.good_ok;
  } catch (const std::exception& e) {
    t.fail(std::string(tls ? "TLS" : "plain") + " client: " + e.what());
  }
}

enum class hostile { garbage, slowloris, stall_after_hello, reset_in_handshake, reset_mid_record, oversized_record };

void hostile_client(std::uint16_t port, hostile kind, const std::string& hello, std::uint64_t seed, tally& t,
                    std::chrono::milliseconds handshake_timeout) {
  const auto bound = handshake_timeout + 5s;
  try {
    auto s = raw_connect(port);
    switch (kind) {
      case hostile::garbage:
        send_all(s.get(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + random_bytes(2000, seed));
        break;
      case hostile::slowloris: {
        // The ClientHello one byte at a time, 2 ms apart (pacing, not synchronisation).
        for (char c : hello) {
          if (::send(s.get(), &c, 1, MSG_NOSIGNAL) != 1) break;
          std::this_thread::sleep_for(2ms);
        }
        break;
      }
      case hostile::stall_after_hello:
        send_all(s.get(), hello);
        break;  // and say nothing more: the handshake timeout must end it
      case hostile::reset_in_handshake: {
        send_all(s.get(), hello);
        char b[64];
        pollfd p{s.get(), POLLIN, 0};
        if (::poll(&p, 1, 5000) > 0) (void)::recv(s.get(), b, sizeof b, 0);
        reset_close(s);
        ++t.hostile_ended;
        return;
      }
      case hostile::reset_mid_record: {
        // A finished TLS handshake, then half an application-data record and a reset.
        comm::open_tcp_stream_options o;
        o.timeout = 10s;
        o.ssl_ctx = client_ctx();
        o.handshake_timeout = 20s;
        auto st = comm::open_tcp_stream("127.0.0.1", std::to_string(port), std::move(o));
        std::string partial = std::string("\x17\x03\x03\x40\x00", 5) + random_bytes(700, seed);
        send_all(st.native_handle(), partial);
        comm::socket_handle raw = comm::replace_socket_stream_socket(st, comm::socket_handle());
        reset_close(raw);
        ++t.hostile_ended;
        return;
      }
      case hostile::oversized_record:
        send_all(s.get(), std::string("\x16\x03\x01\xff\xff", 5) + random_bytes(3000, seed));
        break;
    }
    if (server_ends_within(s.get(), bound))
      ++t.hostile_ended;
    else
      ++t.hostile_hung;
  } catch (const std::exception& e) {
    ++t.hostile_ended;  // refused or reset by the server: it ended the connection
  }
}

// A TLS 1.2 client that echoes one line, asks to renegotiate, then writes and reads again. The
// server must not renegotiate: it ends the connection (GnuTLS: fatal no_renegotiation alert) or
// ignores the request (OpenSSL: a no_renegotiation warning, which the OpenSSL client then ends the
// connection over). Anything else before the request is a failure of the server.
void renegotiating_client(std::uint16_t port, std::uint64_t seed, tally& t) {
  std::optional<comm::socket_stream> s;
  try {
    comm::open_tcp_stream_options o;
    o.timeout = 10s;
    o.read_timeout = 20s;
    o.write_timeout = 20s;
    o.ssl_ctx = renegotiating_client_ctx();
    o.handshake_timeout = 20s;
    s.emplace(comm::open_tcp_stream("127.0.0.1", std::to_string(port), std::move(o)));
    const std::string line = "before " + std::to_string(seed) + "\n";
    s->write_all(line);
    s->flush();
    std::string back(line.size(), '\0');
    s->read_exact(back.data(), back.size());
    if (back != line || comm::ssl_connection_protocol_version(*s) != comm::ssl_protocol_version::tls_v1_2) {
      t.fail("renegotiating client: no TLS 1.2 echo before the request");
      ++t.reneg_broken;
      return;
    }
  } catch (const std::exception& e) {
    t.fail(std::string("renegotiating client, before the request: ") + e.what());
    ++t.reneg_broken;
    return;
  }
  SSL* ssl = std::get<comm::ssl_pointer>(comm::ssl_connection_ssl_ref(*s)).ptr;
  if (SSL_renegotiate(ssl) != 1) {
    t.fail("renegotiating client: SSL_renegotiate refused locally");
    ++t.reneg_broken;
    return;
  }
  try {
    const std::string line = "after\n";
    s->write_all(line);
    s->flush();
    std::string back(line.size(), '\0');
    s->read_exact(back.data(), back.size());
    if (SSL_renegotiate_pending(ssl) == 1)
      ++t.reneg_ignored;
    else
      ++t.reneg_completed;
  } catch (const comm::socket_timeout_error& e) {
    t.fail(std::string("renegotiating client: the server neither answered nor ended the connection: ") + e.what());
    ++t.reneg_broken;
  } catch (const comm::socket_error& e) {
    ++t.reneg_refused;  // the TLS connection ended over the request (alert, close or reset)
    std::lock_guard<std::mutex> l(t.m);
    if (t.reneg_example.empty()) t.reneg_example = e.what();
  }
}

void connect_and_close(std::uint16_t port, int n, tally& t) {
  for (int i = 0; i < n; ++i) {
    try {
      auto s = raw_connect(port);
      if (i % 2) reset_close(s);
      ++t.connect_close;
    } catch (const std::exception&) {
      ++t.connect_close;  // a full backlog may refuse: still a connect attempt that ended
    }
  }
}

// An async TLS echo acceptor on its own loop.
struct async_echo {
  std::shared_ptr<comm::wait_state_collection> loop;
  std::shared_ptr<comm::accepting_handle> acceptor;
  std::atomic<int> ssl_errors{0};
  std::uint16_t port = 0;

  async_echo(comm::ssl_implementation impl, std::chrono::milliseconds handshake_timeout) {
    loop = comm::create_and_run_wait_state_collection("soak");
    std::promise<std::uint16_t> ready;
    comm::apply_in_wait_state_collection_process(*loop, [&] {
      comm::accept_options o;
      o.address = "127.0.0.1";
      o.queue_output = true;
      o.ssl_ctx = server_ctx(impl);
      o.handshake_timeout = handshake_timeout;
      o.read_timeout = 30s;
      o.ssl_error_callback = [this](std::exception_ptr, std::optional<comm::endpoint>) { ++ssl_errors; };
      acceptor = comm::accept_tcp_connections_creating_async_io_states(
          *loop, "0",
          [](comm::accepting_handle&, comm::async_io_state& st) {
            comm::read_with_checking_options ro;
            ro.error_callback = [](comm::async_io_state& s, std::span<const std::byte>) { comm::close_async_io_state(s); };
            comm::async_io_state_read_with_checking(
                st,
                [](comm::async_io_state& s, std::span<const std::byte> d) {
                  comm::async_io_state_write_buffer(s, std::string(reinterpret_cast<const char*>(d.data()), d.size()),
                                                    [](comm::async_io_state&, std::size_t) {});
                  comm::async_io_state_discard(s, d.size());
                },
                std::move(ro));
          },
          std::move(o));
      ready.set_value(acceptor->local_port());
    });
    port = ready.get_future().get();
  }
  ~async_echo() {
    comm::apply_in_wait_state_collection_process(*loop, [this] {
      comm::close_accepting_handle(*acceptor);
      comm::close_wait_state_collection(*loop);
    });
    comm::wait_state_collection_stop_loop(*loop);
    acceptor.reset();
    loop.reset();
  }
};

void echo_handler(comm::socket_stream& s) {
  char buf[16384];
  for (;;) {
    std::size_t n = s.read_some(buf, sizeof buf);
    if (n == 0) return;
    s.write_all(buf, n);
    s.flush();
  }
}

int soak_seconds() {
  const char* v = std::getenv("COMM_SOAK_SECONDS");
  return v ? std::atoi(v) : 0;
}

// The servers run on each implementation; the clients (good, hostile and renegotiating) stay on
// OpenSSL, whose TLS 1.2 client can be made to ask for renegotiation.
class Soak : public ::testing::TestWithParam<comm::ssl_implementation> {};

TEST_P(Soak, HostileLoadLeavesGoodClientsServedAndNothingLeaked) {
  const std::string hello = client_hello();
  ASSERT_GT(hello.size(), 100u);
  const auto handshake_timeout = 1500ms;  // short so stalled clients are cut within the test

  // Warm up what lives for the whole process (OpenSSL/GnuTLS globals, resolver) before counting.
  { tally warm; good_client(0, false, 0, warm); }
  // ThreadSanitizer starts a background thread at the first pthread_create: make it exist now,
  // and wait until the joined thread itself is no longer listed.
  pid_t joined = 0;
  std::thread([&] { joined = ::gettid(); }).join();
  const std::string joined_dir = "/proc/self/task/" + std::to_string(joined);
  for (auto deadline = clock_type::now() + 5s; std::filesystem::exists(joined_dir) && clock_type::now() < deadline;)
    std::this_thread::sleep_for(1ms);
  ASSERT_FALSE(std::filesystem::exists(joined_dir)) << "a joined thread was still listed after 5 s";
  const int fds0 = count_dir("/proc/self/fd");
  const int threads0 = count_dir("/proc/self/task");
  long rss0 = 0;  // taken after the first round, once allocator pools and caches have grown

  tally t;
  std::atomic<int> handler_errors{0}, tls_errors{0};
  auto start = clock_type::now();
  const int extra_seconds = soak_seconds();
  int rounds = 0;
  {
    comm::server_options so;
    so.address = "127.0.0.1";
    so.ssl_ctx = server_ctx(GetParam());
    so.handshake_timeout = handshake_timeout;
    so.stream.read_timeout = 30s;
    so.stream.write_timeout = 30s;
    so.tls_error_callback = [&](const std::exception&) { ++tls_errors; };
    so.handler_error_callback = [&](std::exception_ptr) { ++handler_errors; };
    comm::server tls_server = comm::start_up_server(echo_handler, so);
    comm::server_options po;
    po.address = "127.0.0.1";
    po.stream.read_timeout = 30s;
    po.handler_error_callback = [&](std::exception_ptr) { ++handler_errors; };
    comm::server plain_server = comm::start_up_server(echo_handler, po);
    async_echo async(GetParam(), handshake_timeout);

    do {
      std::vector<std::thread> threads;
      std::uint64_t seed = static_cast<std::uint64_t>(rounds) * 1000;
      for (std::uint16_t port : {tls_server.local_port(), async.port}) {
        for (int kind = 0; kind <= static_cast<int>(hostile::oversized_record); ++kind)
          for (int i = 0; i < 2; ++i)
            threads.emplace_back(hostile_client, port, static_cast<hostile>(kind), std::cref(hello), ++seed,
                                 std::ref(t), handshake_timeout);
        for (int i = 0; i < 2; ++i) threads.emplace_back(renegotiating_client, port, ++seed, std::ref(t));
        threads.emplace_back(connect_and_close, port, 1000, std::ref(t));
        for (int i = 0; i < 12; ++i) threads.emplace_back(good_client, port, true, ++seed, std::ref(t));
      }
      for (int i = 0; i < 12; ++i) threads.emplace_back(good_client, plain_server.local_port(), false, ++seed, std::ref(t));
      for (auto& th : threads) th.join();
      if (++rounds == 1) {
        malloc_trim(0);
        rss0 = rss_kib();
      }
    } while (rounds < 2 || clock_type::now() - start < std::chrono::seconds(extra_seconds));

    comm::server_terminate(tls_server);
    comm::server_terminate(plain_server);
  }
  const double secs = std::chrono::duration<double>(clock_type::now() - start).count();
  const int fds1 = count_dir("/proc/self/fd");
  const int threads1 = thread_count_settled_to(threads0);
  malloc_trim(0);
  const long rss1 = rss_kib();
  std::printf("soak: %d rounds in %.1f s; good clients %d ok (%lld bytes echoed), %d failed; hostile %d ended by "
              "the server, %d hung; renegotiation refused %d, ignored %d, completed %d; %d connect-and-close; TLS handshake errors reported %d, handler errors %d; "
              "fds %d -> %d, threads %d -> %d, RSS %ld -> %ld KiB\n",
              rounds, secs, t.good_ok.load(), t.good_bytes.load(), t.good_failed.load(), t.hostile_ended.load(),
              t.hostile_hung.load(), t.reneg_refused.load(), t.reneg_ignored.load(), t.reneg_completed.load(),
              t.connect_close.load(), tls_errors.load(), handler_errors.load(), fds0, fds1,
              threads0, threads1, rss0, rss1);
  if (!t.reneg_example.empty()) std::printf("soak: a refused renegotiation ended with: %s\n", t.reneg_example.c_str());
  for (const auto& f : t.failures) ADD_FAILURE() << f;
  EXPECT_EQ(t.good_failed.load(), 0);
  EXPECT_EQ(t.good_ok.load(), rounds * 36);
  EXPECT_EQ(t.good_bytes.load(), static_cast<long long>(rounds) * 36 * 65536);
  EXPECT_EQ(t.hostile_hung.load(), 0) << "a hostile connection outlived the handshake timeout + 5 s";
  EXPECT_EQ(t.hostile_ended.load(), rounds * 24);
  EXPECT_EQ(t.reneg_completed.load(), 0) << "a server renegotiated";
  EXPECT_EQ(t.reneg_broken.load(), 0);
  EXPECT_EQ(t.reneg_refused.load() + t.reneg_ignored.load(), rounds * 4);
  EXPECT_EQ(t.connect_close.load(), rounds * 2000);
  EXPECT_EQ(fds1, fds0) << "descriptors leaked";
  EXPECT_EQ(threads1, threads0) << "threads leaked; now: " << thread_names();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  std::printf("soak: RSS bound not checked under a sanitizer (freed memory stays in quarantine)\n");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  std::printf("soak: RSS bound not checked under a sanitizer (freed memory stays in quarantine)\n");
#else
  EXPECT_LT(rss1 - rss0, 32 * 1024) << "RSS grew by more than 32 MiB after the first round";
#endif
#else
  EXPECT_LT(rss1 - rss0, 32 * 1024) << "RSS grew by more than 32 MiB after the first round";
#endif
}

INSTANTIATE_TEST_SUITE_P(Implementations, Soak, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

}  // namespace
