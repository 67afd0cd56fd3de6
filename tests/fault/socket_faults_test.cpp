// The interposed socket functions of test_fault (see socket_faults.hpp for the technique). The
// tests of the fault layer itself are in fault_layer_test.cpp; the tests under the library's
// stream and async paths in stream_faults_test.cpp and async_faults_test.cpp.
#include "fault/socket_faults.hpp"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <optional>
#include <set>
#include <mutex>
#include <random>
#include <string>
#include <utility>

#if FAULTS_UNDER_TSAN
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace {

// TSan's own symbolizer closes the files it reads with close(), that is with the one below. It
// does so while it holds its report lock, writing up a report, and it does not see the locks
// taken inside: the registry's accesses there would look racy, and a second report under the
// first one's lock never returns (the test process hangs until ctest's timeout instead of
// failing, or passing when the first report is suppressed). The registry's work in close() is
// hidden from TSan; its lock keeps it right.
struct unchecked_by_tsan {
#if FAULTS_UNDER_TSAN
  unchecked_by_tsan() { __tsan_ignore_thread_begin(); }
  ~unchecked_by_tsan() { __tsan_ignore_thread_end(); }
#else
  unchecked_by_tsan() = default;
#endif
  unchecked_by_tsan(const unchecked_by_tsan&) = delete;
  unchecked_by_tsan& operator=(const unchecked_by_tsan&) = delete;
};

// The next definitions (libc's, or a sanitizer's interceptor in front of it).
struct next_functions {
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*send)(int, const void*, size_t, int);
  int (*epoll_ctl)(int, int, int, epoll_event*);
  int (*epoll_wait)(int, epoll_event*, int, int);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*close)(int);
  int (*getaddrinfo)(const char*, const char*, const addrinfo*, addrinfo**);
  void (*freeaddrinfo)(addrinfo*);
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
      lookup<decltype(next_functions::getaddrinfo)>("getaddrinfo"),
      lookup<decltype(next_functions::freeaddrinfo)>("freeaddrinfo"),
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
  std::uint64_t reads = 0;   // recv calls on it
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
  std::map<std::string, std::vector<std::string>> hosts;       // fake_host
  std::set<std::pair<std::string, int>> held;                   // hold_host: (name, family)
  std::set<std::string> both_first;                              // both_families_answer_first
  std::map<std::pair<std::string, int>, int> failing;           // fail_host: (name, family) -> EAI_*
  std::map<std::pair<std::string, int>, std::uint64_t> lookups;      // lookups_of: (name, family asked)
  std::map<std::pair<std::string, int>, std::uint64_t> resolutions;  // resolutions_of
  std::condition_variable released;
  std::map<std::uint16_t, std::vector<std::string>> connects;  // connects_to
};

// Never destroyed: a descriptor may be closed during static destruction, after main.
registry& reg() {
  static registry* r = new registry;
  return *r;
}

std::string address_text(const sockaddr* sa) {
  char text[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, text, sizeof text);
  if (sa->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, text, sizeof text);
  return text;
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
  r.hosts.clear();
  r.connects.clear();
  r.held.clear();
  r.both_first.clear();
  r.failing.clear();
  r.lookups.clear();
  r.resolutions.clear();
  r.released.notify_all();
}

void hold_host(const std::string& name, int family) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.held.insert({name, family});
}

void both_families_answer_first(const std::string& name) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.both_first.insert(name);
}

void fail_host(const std::string& name, int family, int eai_code) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.failing[{name, family}] = eai_code;
}

void release_host(const std::string& name, int family) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.held.erase({name, family});
  r.released.notify_all();
}

namespace {

std::uint64_t count_of(const std::map<std::pair<std::string, int>, std::uint64_t>& counts, const std::string& name,
                       int family) {
  std::uint64_t n = 0;
  for (const auto& [key, count] : counts)
    if (key.first == name && (family == -1 || key.second == family)) n += count;
  return n;
}

}  // namespace

std::uint64_t lookups_of(const std::string& name, int family) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  return count_of(r.lookups, name, family);
}

std::uint64_t resolutions_of(const std::string& name, int family) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  return count_of(r.resolutions, name, family);
}

void fake_host(const std::string& name, std::vector<std::string> addresses) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  r.hosts[name] = std::move(addresses);
}

std::vector<std::string> connects_to(std::uint16_t port) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  auto it = r.connects.find(port);
  return it == r.connects.end() ? std::vector<std::string>{} : it->second;
}

counters totals() {
  auto& r = reg();
  std::lock_guard lock(r.m);
  return r.counts;
}

std::uint64_t reads_of(int fd) {
  auto& r = reg();
  std::lock_guard lock(r.m);
  auto it = r.fds.find(fd);
  return it == r.fds.end() ? 0 : it->second.reads;
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
      ++it->second.reads;
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
    r.connects[port].push_back(address_text(addr));
    auto it = r.ports.find(port);
    if (it != r.ports.end()) add_fd(fd, it->second.connecting, it->second.connected_count++);
  }
  return next().connect(fd, addr, len);
}

// A fake host's addresses, each resolved as a numeric host by the real getaddrinfo (so the hints
// apply as they would), chained in the given order. glibc's freeaddrinfo frees node by node, so the
// chain goes back to it like any answer.
int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  std::optional<std::vector<std::string>> fake;
  auto& r = reg();
  const int family = hints != nullptr ? hints->ai_family : AF_UNSPEC;
  if (node != nullptr) {
    std::unique_lock lock(r.m);
    auto it = r.hosts.find(node);
    if (it != r.hosts.end()) fake = it->second;
    ++r.lookups[{node, family}];
    // A lookup of both families waits for either (glibc asks for both and waits for both).
    r.released.wait_for(lock, std::chrono::seconds(10), [&] {
      return r.held.count({node, AF_UNSPEC}) == 0 && r.held.count({node, family}) == 0 &&
             (family != AF_UNSPEC || (r.held.count({node, AF_INET}) == 0 && r.held.count({node, AF_INET6}) == 0));
    });
    if (family == AF_INET && r.both_first.count(node) != 0)
      r.released.wait_for(lock, std::chrono::seconds(10), [&] {
        return r.both_first.count(node) == 0 || r.resolutions[{node, AF_UNSPEC}] > 0;  // or cleared
      });
  }
  int fails = 0;
  if (node != nullptr) {
    std::lock_guard lock(r.m);
    auto it = r.failing.find({node, family});
    if (it != r.failing.end()) fails = it->second;
  }
  if (!fake) return next().getaddrinfo(node, service, hints, res);
  struct counted {  // counts the lookup once it returns
    registry& r;
    std::string name;
    int family;
    ~counted() {
      std::lock_guard lock(r.m);
      ++r.resolutions[{name, family}];
      r.released.notify_all();
    }
  } count{r, node, family};
  if (fails != 0) return fails;
  addrinfo h = hints != nullptr ? *hints : addrinfo{};
  h.ai_flags = (h.ai_flags | AI_NUMERICHOST) & ~AI_CANONNAME;
  addrinfo* head = nullptr;
  addrinfo** tail = &head;
  for (const auto& a : *fake) {
    addrinfo* one = nullptr;
    int rc = next().getaddrinfo(a.c_str(), service, &h, &one);
    if (rc == EAI_ADDRFAMILY || rc == EAI_NONAME || rc == EAI_FAMILY) continue;  // not of the family asked
    if (rc != 0) {
      if (head != nullptr) next().freeaddrinfo(head);
      return rc;
    }
    *tail = one;
    while (*tail != nullptr) tail = &(*tail)->ai_next;
  }
  if (head == nullptr) return EAI_NONAME;
  *res = head;
  return 0;
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
    [[maybe_unused]] unchecked_by_tsan unchecked;
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
    if (r.fds.count(fd) != 0) ++r.counts.registrations;
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
