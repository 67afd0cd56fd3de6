// Raw floor of echo latency: plain TCP, blocking send/recv of --msg bytes, one round trip at a
// time. Nothing can be faster through the loopback stack; comm's TLS p50 is compared with this.
// --epoll: the event-loop floor. Both sides wait in epoll_wait (edge-triggered, one socket) and
// then recv without blocking, as any epoll loop does (comm's async_io_state, Asio): the same
// round trip plus the loop's own system call and wake-up path, still without TLS.
#include <sys/epoll.h>

#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "raw_socket.hpp"

using namespace bench_raw;

namespace {

// One socket on its own edge-triggered epoll set. After a recv shorter than asked the socket was
// empty, so the next read waits for an edge first (as comm's loop does: no recv spent on EAGAIN).
struct epoll_reader {
  fd_guard ep{::epoll_create1(EPOLL_CLOEXEC)};
  int fd;
  bool drained = false;
  explicit epoll_reader(int socket) : fd(socket) {
    if (ep.fd < 0) fail("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.fd = fd;
    if (::epoll_ctl(ep.fd, EPOLL_CTL_ADD, fd, &ev) < 0) fail("epoll_ctl");
  }
  // Returns what one recv gave (> 0), or 0 at the end of the stream.
  ssize_t recv_some(char* p, std::size_t n) {
    for (;;) {
      if (drained) {
        epoll_event ev;
        if (::epoll_wait(ep.fd, &ev, 1, -1) < 0 && errno != EINTR) fail("epoll_wait");
        drained = false;
      }
      ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
      if (r >= 0) {
        drained = r > 0 && static_cast<std::size_t>(r) < n;
        return r;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail("recv");
      drained = true;
    }
  }
};

}  // namespace

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  const auto msg = static_cast<std::size_t>(a.num("msg", 64));
  const bool use_epoll = a.flag("epoll");

  if (a.require("role") == "server") {
    run_server(
        [use_epoll](int c) {
          std::optional<epoll_reader> reader;
          if (use_epoll) reader.emplace(c);
          char buf[1024];
          while (true) {
            ssize_t r = reader ? reader->recv_some(buf, sizeof buf) : ::recv(c, buf, sizeof buf, 0);
            if (r <= 0) return;
            send_all(c, buf, static_cast<std::size_t>(r));
          }
        },
        true);
  }

  fd_guard s(connect_loopback(static_cast<unsigned>(a.num("port", 0))));
  std::optional<epoll_reader> reader;
  if (use_epoll) reader.emplace(s.fd);
  std::vector<char> out(msg, 'p'), in(msg);
  const auto warmup = a.num("warmup", 1000), count = a.num("count", 20000);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(count));
  for (long long i = 0; i < warmup + count; ++i) {
    auto t0 = bench::clock::now();
    send_all(s.fd, out.data(), msg);
    if (reader) {
      // Read as a loop reads, into a buffer larger than the reply: a short recv leaves the
      // socket known empty, and the next round waits in epoll_wait without a recv on EAGAIN.
      char buf[1024];
      for (std::size_t got = 0; got < msg;) {
        ssize_t r = reader->recv_some(buf, sizeof buf);
        if (r == 0) throw std::runtime_error("recv: peer closed early");
        got += static_cast<std::size_t>(r);
      }
    } else {
      recv_all(s.fd, in.data(), msg);
    }
    if (i >= warmup) us.push_back(bench::seconds_since(t0) * 1e6);
  }
  bench::json_line()
      .add("p50_us", bench::percentile(us, 50))
      .add("p99_us", bench::percentile(us, 99))
      .add("p999_us", bench::percentile(us, 99.9))
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_raw_echo: %s\n", e.what());
  return 1;
}
