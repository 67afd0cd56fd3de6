// The interposed socket functions of test_fault (see socket_faults.hpp for the technique), and
// tests of the fault layer itself: untouched descriptors pass through, watched ones get exactly
// the faults their plan asks for, and the cuts reach the peer as a FIN or a reset.
#include "fault/socket_faults.hpp"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace {

// The next definitions (libc's, or a sanitizer's interceptor in front of it).
struct next_functions {
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*send)(int, const void*, size_t, int);
  int (*epoll_ctl)(int, int, int, epoll_event*);
  int (*epoll_wait)(int, epoll_event*, int, int);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*close)(int);
};

template <class F>
F lookup(const char* name) {
  void* p = ::dlsym(RTLD_NEXT, name);
  if (p == nullptr) std::abort();  // nothing sensible can run without the real function
  return reinterpret_cast<F>(p);
}

const next_functions& next() {
  static const next_functions n{
      lookup<decltype(next_functions::recv)>("recv"),
      lookup<decltype(next_functions::send)>("send"),
      lookup<decltype(next_functions::epoll_ctl)>("epoll_ctl"),
      lookup<decltype(next_functions::epoll_wait)>("epoll_wait"),
      lookup<decltype(next_functions::connect)>("connect"),
      lookup<decltype(next_functions::accept4)>("accept4"),
      lookup<decltype(next_functions::close)>("close"),
  };
  return n;
}

struct faulted_fd {
  fault::plan plan;
  std::mt19937_64 rng;
  std::uint64_t sent = 0;
  bool cut_done = false;
  bool pending_in = false;   // an injected EAGAIN on a read: owes an EPOLLIN
  bool pending_out = false;  // an injected EAGAIN on a write: owes an EPOLLOUT
};

struct watched_port {
  fault::plan connecting, accepted;
  std::uint64_t connected_count = 0, accepted_count = 0;
};

struct registry {
  std::mutex m;
  std::map<std::uint16_t, watched_port> ports;
  std::map<int, faulted_fd> fds;
  std::map<std::pair<int, int>, epoll_event> epoll_regs;  // (epoll fd, fd) -> what was registered
  fault::counters counts;
  bool calm_writes = false;
};

// Never destroyed: a descriptor may be closed during static destruction, after main.
registry& reg() {
  static registry* r = new registry;
  return *r;
}

std::uint16_t port_of(const sockaddr* sa) {
  if (sa == nullptr) return 0;
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return 0;
}

void add_fd(int fd, const fault::plan& p, std::uint64_t index) {
  auto& r = reg();
  faulted_fd f;
  f.plan = p;
  f.rng.seed(p.seed + index);
  r.fds[fd] = std::move(f);
  ++r.counts.descriptors;
}

// How many bytes this call may move.
std::size_t chunk(fault::chunking c, std::mt19937_64& rng, std::size_t size) {
  switch (c) {
    case fault::chunking::whole: return size;
    case fault::chunking::one_byte: return std::min<std::size_t>(size, 1);
    case fault::chunking::random: {
      auto pick = rng() % 100;
      std::size_t k = pick < 40 ? 1 + rng() % 8 : pick < 75 ? 1 + rng() % 600 : pick < 90 ? 1 + rng() % 6000 : size;
      return std::min(size, k);
    }
  }
  return size;
}

bool non_blocking(int fd, int flags) {
  if (flags & MSG_DONTWAIT) return true;
  int fl = ::fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_NONBLOCK);
}

enum class decision { pass, eintr, eagain };

// Under the lock: what to do with this call, and the size to pass on.
decision decide(faulted_fd& f, fault::chunking c, bool nb, std::size_t& size) {
  auto roll = f.rng() % 100;
  if (f.plan.eintr && roll < 7) return decision::eintr;
  if (f.plan.eagain && nb && roll >= 7 && roll < 14) return decision::eagain;
  size = chunk(c, f.rng, size);
  return decision::pass;
}

void cut(int fd, fault::cut_kind kind) {
  if (kind == fault::cut_kind::fin) {
    ::shutdown(fd, SHUT_WR);
  } else if (kind == fault::cut_kind::reset) {
    sockaddr sa{};
    sa.sa_family = AF_UNSPEC;
    next().connect(fd, &sa, sizeof sa);  // tcp_disconnect: RST to the peer, descriptor stays valid
  }
}

}  // namespace

namespace fault {

void watch_port(std::uint16_t port, const plan& connecting, const plan& accepted) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  plan a = accepted;
  a.seed ^= 0x9e3779b97f4a7c15ull;  // the two sides never share a schedule
  r.ports[port] = watched_port{connecting, a, 0, 0};
}

void calm_writes() {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.calm_writes = true;
}

void clear() {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.calm_writes = false;
  r.ports.clear();
  r.fds.clear();
  r.counts = {};
}

counters totals() {
  auto& r = reg();
  std::lock_guard lock(r.m);
  return r.counts;
}

}  // namespace fault

// ---- the interposed functions
extern "C" {

ssize_t recv(int fd, void* buf, size_t size, int flags) {
  auto& r = reg();
  decision d = decision::pass;
  bool faulted = false;
  bool limited = false;  // fewer bytes asked of the kernel than the caller asked for
  {
    std::lock_guard lock(r.m);
    auto it = r.fds.find(fd);
    if (it != r.fds.end() && size > 0) {
      faulted = true;
      ++r.counts.reads;
      std::size_t asked = size;
      d = decide(it->second, it->second.plan.reads, non_blocking(fd, flags), size);
      limited = d == decision::pass && size < asked;
      if (limited) ++r.counts.short_reads;
      if (d == decision::eintr) ++r.counts.eintr;
      if (d == decision::eagain) {
        ++r.counts.eagain_reads;
        it->second.pending_in = true;
      }
    }
  }
  if (d == decision::eintr) {
    errno = EINTR;
    return -1;
  }
  if (d == decision::eagain) {
    errno = EAGAIN;
    return -1;
  }
  ssize_t n = next().recv(fd, buf, size, flags);
  if (faulted && n > 0) {
    int e = errno;
    std::lock_guard lock(r.m);
    r.counts.bytes_read += static_cast<std::uint64_t>(n);
    // A short read tells the reader the queue is empty, so bytes still there must come with an
    // edge of their own, as if they had arrived just after this call.
    auto it = r.fds.find(fd);
    if (limited && static_cast<std::size_t>(n) == size && it != r.fds.end()) it->second.pending_in = true;
    errno = e;
  }
  return n;
}

ssize_t send(int fd, const void* buf, size_t size, int flags) {
  auto& r = reg();
  decision d = decision::pass;
  bool faulted = false;
  bool cut_now = false;
  fault::cut_kind kind = fault::cut_kind::none;
  std::size_t asked = size;
  {
    std::lock_guard lock(r.m);
    auto it = r.fds.find(fd);
    if (it != r.fds.end() && size > 0) {
      faulted_fd& f = it->second;
      faulted = true;
      ++r.counts.writes;
      if (!r.calm_writes) d = decide(f, f.plan.writes, non_blocking(fd, flags), size);
      if (d == decision::eintr) ++r.counts.eintr;
      if (d == decision::eagain) {
        ++r.counts.eagain_writes;
        f.pending_out = true;
      }
      if (d == decision::pass && f.plan.cut != fault::cut_kind::none && !f.cut_done) {
        std::uint64_t left = f.plan.cut_after - f.sent;
        if (left == 0) {
          cut_now = true;  // cut first, then let the real send report what the kernel says
        } else if (size > left) {
          size = static_cast<std::size_t>(left);
        }
      }
      if (cut_now) {
        f.cut_done = true;
        kind = f.plan.cut;
        ++r.counts.cuts;
      }
      if (d == decision::pass && size < asked) ++r.counts.short_writes;
    }
  }
  if (d == decision::eintr) {
    errno = EINTR;
    return -1;
  }
  if (d == decision::eagain) {
    errno = EAGAIN;
    return -1;
  }
  if (cut_now) cut(fd, kind);
  ssize_t n = next().send(fd, buf, size, flags);
  if (faulted && n > 0) {
    int e = errno;
    bool cut_after_this = false;
    {
      std::lock_guard lock(r.m);
      auto it = r.fds.find(fd);
      if (it != r.fds.end()) {
        faulted_fd& f = it->second;
        f.sent += static_cast<std::uint64_t>(n);
        r.counts.bytes_written += static_cast<std::uint64_t>(n);
        // A short write says the send buffer is full: room must come with an edge, as if the
        // peer had just taken the bytes.
        if (size < asked) f.pending_out = true;
        if (f.plan.cut != fault::cut_kind::none && !f.cut_done && f.sent >= f.plan.cut_after) {
          f.cut_done = true;
          kind = f.plan.cut;
          cut_after_this = true;
          ++r.counts.cuts;
        }
      }
    }
    // Cut at once, not at the next send: the writer may have nothing more to say.
    if (cut_after_this) cut(fd, kind);
    errno = e;
  }
  return n;
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  std::uint16_t port = port_of(addr);
  if (port != 0) {
    auto& r = reg();
    std::lock_guard lock(r.m);
    auto it = r.ports.find(port);
    if (it != r.ports.end()) add_fd(fd, it->second.connecting, it->second.connected_count++);
  }
  return next().connect(fd, addr, len);
}

int accept4(int listener, sockaddr* addr, socklen_t* len, int flags) {
  int fd = next().accept4(listener, addr, len, flags);
  if (fd >= 0) {
    sockaddr_storage local{};
    socklen_t llen = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) == 0) {
      int e = errno;
      auto& r = reg();
      std::lock_guard lock(r.m);
      auto it = r.ports.find(port_of(reinterpret_cast<sockaddr*>(&local)));
      if (it != r.ports.end()) add_fd(fd, it->second.accepted, it->second.accepted_count++);
      errno = e;
    }
  }
  return fd;
}

int close(int fd) {
  {
    auto& r = reg();
    std::lock_guard lock(r.m);
    r.fds.erase(fd);
    // The kernel drops a closed descriptor from every epoll set, and an epoll descriptor's set.
    for (auto it = r.epoll_regs.begin(); it != r.epoll_regs.end();) {
      if (it->first.first == fd || it->first.second == fd)
        it = r.epoll_regs.erase(it);
      else
        ++it;
    }
  }
  return next().close(fd);
}

int epoll_ctl(int epfd, int op, int fd, epoll_event* event) noexcept {
  int rc = next().epoll_ctl(epfd, op, fd, event);
  if (rc == 0) {
    int e = errno;
    auto& r = reg();
    std::lock_guard lock(r.m);
    if (op == EPOLL_CTL_DEL)
      r.epoll_regs.erase({epfd, fd});
    else if (event != nullptr)
      r.epoll_regs[{epfd, fd}] = *event;
    errno = e;
  }
  return rc;
}

int epoll_wait(int epfd, epoll_event* events, int max, int timeout) {
  int n = 0;
  if (max > 0) {
    auto& r = reg();
    std::lock_guard lock(r.m);
    for (auto& [fd, f] : r.fds) {
      if (n == max) break;
      if (!f.pending_in && !f.pending_out) continue;
      auto it = r.epoll_regs.find({epfd, fd});
      if (it == r.epoll_regs.end()) continue;  // not on this loop (or not yet): keep it owed
      std::uint32_t ev = 0;
      if (f.pending_in && (it->second.events & EPOLLIN)) ev |= EPOLLIN, f.pending_in = false;
      if (f.pending_out && (it->second.events & EPOLLOUT)) ev |= EPOLLOUT, f.pending_out = false;
      if (ev == 0) continue;
      events[n].events = ev;
      events[n].data = it->second.data;
      ++n;
      ++r.counts.synthetic_events;
    }
  }
  if (n == 0) return next().epoll_wait(epfd, events, max, timeout);
  // Owed events are ready now: add what the kernel has without waiting.
  int more = n < max ? next().epoll_wait(epfd, events + n, max - n, 0) : 0;
  return more > 0 ? n + more : n;
}

}  // extern "C"

// ---- tests of the fault layer
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
  EXPECT_EQ(got[0].data.u64, 0xabcdefu);
  EXPECT_EQ(got[0].events, static_cast<std::uint32_t>(EPOLLIN));
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
