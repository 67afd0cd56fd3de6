// Plain POSIX sockets for the raw floors: no buffering, no library, blocking send/recv.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "../common/bench_common.hpp"

namespace bench_raw {

struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f) : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] inline void fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

inline void nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

inline int listen_loopback(unsigned& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || ::listen(fd, 128) < 0) fail("bind/listen 127.0.0.1:0");
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  port = ntohs(sa.sin_port);
  return fd;
}

inline int connect_loopback(unsigned port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(static_cast<unsigned short>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) fail("connect to 127.0.0.1:" + std::to_string(port));
  nodelay(fd);
  return fd;
}

inline void send_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("send");
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

inline void recv_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("recv");
    if (r == 0) throw std::runtime_error("recv: peer closed early");
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

// The raw servers' frame: listen on 127.0.0.1 and announce the port; a thread accepts and hands
// each connection (TCP_NODELAY set, closed when serve returns) to serve(fd), on the accept thread
// itself (one connection at a time) or, with thread_per_connection, on a thread of its own. The
// end of stdin ends the process, after its CPU and RSS are printed.
template <class Serve>
[[noreturn]] void run_server(Serve serve, bool thread_per_connection) {
  unsigned port = 0;
  fd_guard lfd(listen_loopback(port));
  bench::announce_port(port);
  std::thread([&] {
    while (true) {
      int c = ::accept(lfd.fd, nullptr, nullptr);
      if (c < 0) continue;
      auto run = [c, &serve] {
        fd_guard conn(c);
        nodelay(c);
        try {
          serve(c);
        } catch (const std::exception&) {
        }
      };
      if (thread_per_connection) std::thread(run).detach();
      else run();
    }
  }).detach();
  bench::wait_stdin_eof();
  bench::json_line().add("cpu_s", bench::cpu_seconds()).add("rss_kib", static_cast<double>(bench::rss_kib())).print();
  std::fflush(stdout);
  _exit(0);  // the accept thread is blocked in accept(); nothing to clean up
}

}  // namespace bench_raw
