// Tests of the fault layer itself (socket_faults.hpp): untouched descriptors pass through,
// watched ones get exactly the faults their plan asks for, an injected EAGAIN owes one synthetic
// epoll event, and the cuts reach the peer as a FIN or a reset.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "fault/socket_faults.hpp"

namespace {

struct pair_on_port {
  int listener = -1, client = -1, server = -1;
  std::uint16_t port = 0;
  pair_on_port() {
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    ::listen(listener, 4);
    socklen_t len = sizeof sa;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
  }
  void connect_pair() {
    client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    server = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(server, 0);
  }
  ~pair_on_port() {
    for (int fd : {listener, client, server})
      if (fd >= 0) ::close(fd);
  }
};

// Bounded: waits up to 5 s for input.
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 5000) == 1;
}

TEST(SocketFaults, UnwatchedDescriptorsPassThrough) {
  fault::scope s;
  pair_on_port p;
  p.connect_pair();
  std::string data(10000, 'x');
  ASSERT_EQ(::send(p.client, data.data(), data.size(), MSG_DONTWAIT), 10000);
  EXPECT_EQ(fault::totals().writes, 0u);
  EXPECT_EQ(fault::totals().descriptors, 0u);
}

TEST(SocketFaults, OneByteModeMovesOneByteAtATime) {
  fault::scope s;
  pair_on_port p;
  fault::plan one;
  one.reads = one.writes = fault::chunking::one_byte;
  one.eintr = one.eagain = false;
  fault::watch_port(p.port, one, one);
  p.connect_pair();
  EXPECT_EQ(fault::totals().descriptors, 2u);
  ASSERT_EQ(::send(p.client, "hello", 5, 0), 1);
  ASSERT_EQ(::send(p.client, "ello", 4, 0), 1);
  ASSERT_TRUE(readable(p.server));
  char buf[16];
  ASSERT_EQ(::recv(p.server, buf, sizeof buf, 0), 1);
  EXPECT_EQ(buf[0], 'h');
  ASSERT_EQ(::recv(p.server, buf, sizeof buf, 0), 1);
  EXPECT_EQ(buf[0], 'e');
  EXPECT_EQ(fault::totals().short_writes, 2u);
}

TEST(SocketFaults, EagainOnlyOnNonBlockingCallsAndOwesAnEpollEvent) {
  fault::scope s;
  pair_on_port p;
  fault::plan pl;
  pl.reads = fault::chunking::whole;
  pl.eintr = false;
  pl.seed = 42;
  fault::watch_port(p.port, pl, pl);
  p.connect_pair();
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = 0xabcdef;
  ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, p.server, &ev), 0);
  ASSERT_EQ(::send(p.client, "x", 1, 0), 1);
  ASSERT_TRUE(readable(p.server));
  epoll_event got[4];
  ASSERT_EQ(::epoll_wait(ep, got, 4, 5000), 1);  // the real edge
  // Non-blocking reads until one says EAGAIN although the byte is there (7 % of calls).
  char c;
  int eagains = 0;
  for (int i = 0; i < 1000 && eagains == 0; ++i) {
    ssize_t n = ::recv(p.server, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n < 0 && errno == EAGAIN) ++eagains;
    else ASSERT_EQ(n, 1);
  }
  ASSERT_EQ(eagains, 1);
  // The kernel has no new edge to give, so only the owed synthetic event can answer at once.
  ASSERT_EQ(::epoll_wait(ep, got, 4, 0), 1);
  // epoll_event is packed: copy the fields before EXPECT_EQ binds references to them.
  const std::uint64_t data = got[0].data.u64;
  const std::uint32_t events = got[0].events;
  EXPECT_EQ(data, 0xabcdefu);
  EXPECT_EQ(events, static_cast<std::uint32_t>(EPOLLIN));
  EXPECT_EQ(::epoll_wait(ep, got, 4, 0), 0);  // owed once only
  // A blocking read never says EAGAIN.
  for (int i = 0; i < 200; ++i) ASSERT_EQ(::recv(p.server, &c, 1, MSG_PEEK), 1);
  ::close(ep);
}

TEST(SocketFaults, FinCutDeliversExactlyTheBytesBeforeIt) {
  fault::scope s;
  pair_on_port p;
  fault::plan w;
  w.eintr = w.eagain = false;
  w.cut = fault::cut_kind::fin;
  w.cut_after = 7777;
  fault::plan none;
  none.reads = none.writes = fault::chunking::whole;
  none.eintr = none.eagain = false;
  fault::watch_port(p.port, w, none);
  p.connect_pair();
  std::string data(20000, 'y');
  std::size_t sent = 0;
  for (int i = 0; i < 100000 && sent < data.size(); ++i) {
    ssize_t n = ::send(p.client, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      EXPECT_EQ(errno, EPIPE);
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(sent, 7777u);
  std::size_t got = 0;
  char buf[4096];
  for (;;) {
    ASSERT_TRUE(readable(p.server));
    ssize_t n = ::recv(p.server, buf, sizeof buf, 0);
    ASSERT_GE(n, 0);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(got, 7777u);
  EXPECT_EQ(fault::totals().cuts, 1u);
}

TEST(SocketFaults, ResetCutReachesThePeerAsConnectionReset) {
  fault::scope s;
  pair_on_port p;
  fault::plan w;
  w.writes = fault::chunking::whole;
  w.eintr = w.eagain = false;
  w.cut = fault::cut_kind::reset;
  w.cut_after = 100;
  fault::plan none;
  none.reads = none.writes = fault::chunking::whole;
  none.eintr = none.eagain = false;
  fault::watch_port(p.port, w, none);
  p.connect_pair();
  std::string data(100, 'z');
  ASSERT_EQ(::send(p.client, data.data(), data.size(), MSG_NOSIGNAL), 100);
  int error = 0;
  char buf[4096];
  for (int i = 0; i < 100 && error == 0; ++i) {
    ASSERT_TRUE(readable(p.server));
    ssize_t n = ::recv(p.server, buf, sizeof buf, 0);
    if (n < 0) error = errno;
    ASSERT_NE(n, 0) << "a reset must not read as an orderly end";
  }
  EXPECT_EQ(error, ECONNRESET);
}

}  // namespace
