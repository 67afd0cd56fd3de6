// Deterministic socket faults under the library's real I/O paths, by symbol interposition.
//
// The test binary test_fault defines recv, send, epoll_ctl, epoll_wait, connect, accept4, close and
// getaddrinfo itself (socket_faults_test.cpp). The library is linked statically into it, so its ::recv /
// ::send / ::epoll_wait calls bind to these definitions; they forward to the next definition
// (libc, or a sanitizer's interceptor which then calls libc) found with dlsym(RTLD_NEXT).
// Descriptors of connections to or from a watched port (the test's listener) are faulted; every
// other descriptor passes through untouched. What a faulted descriptor gets, from a seeded
// schedule per descriptor:
//   reads   at most k bytes per call (1 byte, or random splits), EINTR, EAGAIN with data waiting;
//   writes  short writes (only k bytes taken), EINTR, EAGAIN with room in the buffer;
//   cuts    after a given number of bytes sent: a FIN (shutdown SHUT_WR) or a reset (connect with
//           AF_UNSPEC, which makes Linux send an RST while the descriptor stays valid).
// EAGAIN is injected only on non-blocking calls (MSG_DONTWAIT or O_NONBLOCK): a blocking recv never
// says EAGAIN. The async loop is edge-triggered, so after an injected EAGAIN the kernel would never
// signal an edge: the interposed epoll_wait delivers a synthetic EPOLLIN / EPOLLOUT for that
// descriptor, with the data the library registered through epoll_ctl on that epoll descriptor,
// which is what the kernel would do had the bytes (or the room) come a moment later. The same holds
// for an injected short read or short write: on Linux a short TCP read means the receive queue is
// empty, and a short write that the send buffer is full (the async path relies on both and waits
// for the next edge), so those owe an edge too. poll() is level-triggered and needs nothing: the
// data or room is still there when the stream path polls.
#pragma once

// FAULTS_UNDER_TSAN: 1 in a ThreadSanitizer build, else 0 (GCC says __SANITIZE_THREAD__, clang
// __has_feature(thread_sanitizer)).
#if defined(__SANITIZE_THREAD__)
#define FAULTS_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FAULTS_UNDER_TSAN 1
#endif
#endif
#ifndef FAULTS_UNDER_TSAN
#define FAULTS_UNDER_TSAN 0
#endif

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace fault {

enum class chunking { whole, one_byte, random };
enum class cut_kind { none, fin, reset };

struct plan {
  chunking reads = chunking::random;
  chunking writes = chunking::random;
  bool eintr = true;
  bool eagain = true;
  std::uint64_t seed = 1;
  cut_kind cut = cut_kind::none;
  std::uint64_t cut_after = std::numeric_limits<std::uint64_t>::max();  // bytes sent before the cut
};

// What was injected since the last clear() (over every faulted descriptor).
struct counters {
  std::uint64_t descriptors = 0;  // faulted descriptors seen (connected or accepted)
  std::uint64_t reads = 0, writes = 0;
  std::uint64_t short_reads = 0, short_writes = 0;
  std::uint64_t eintr = 0;
  std::uint64_t eagain_reads = 0, eagain_writes = 0;
  std::uint64_t synthetic_events = 0;
  std::uint64_t cuts = 0;
  std::uint64_t bytes_read = 0, bytes_written = 0;
  std::uint64_t registrations = 0;  // epoll_ctl calls that succeeded (add, modify, delete)
};

// Faults the descriptor of every later connect() to `port` with `connecting`, and of every later
// accept on a listener bound to `port` with `accepted`. The n-th descriptor of a side gets the
// plan's seed plus n, so one seed fixes the whole schedule.
void watch_port(std::uint16_t port, const plan& connecting, const plan& accepted);
// From now on writes on faulted descriptors pass whole, without EINTR or EAGAIN (reads keep their
// faults), until clear(). For the close of a TLS async connection: see async_faults_test.cpp.
void calm_writes();
// Forgets every watched port and faulted descriptor (the descriptors themselves stay open).
void clear();
counters totals();
// recv calls made on one faulted descriptor so far (0 for one that is not faulted).
std::uint64_t reads_of(int fd);

// Name resolution: getaddrinfo(name) answers with these numeric addresses in this order (those of
// the family asked for; none: EAI_NONAME), until clear(); every other name goes to the resolver. For a host with
// addresses of the test's choice (Happy Eyeballs).
void fake_host(const std::string& name, std::vector<std::string> addresses);
// getaddrinfo for a fake host waits, from hold_host until release_host (or 10 s at most): a slow
// DNS answer. With a family (AF_INET6, AF_INET), only the lookups that ask for that family wait
// (AAAA queries that a DNS server is slow to answer), and those that ask for both; AF_UNSPEC
// holds them all. lookups_of(name) counts the lookups of a name that have begun (any name),
// resolutions_of those of a fake host that have returned; with a family, those that asked for it.
void hold_host(const std::string& name, int family = 0);
void release_host(const std::string& name, int family = 0);
// getaddrinfo for a fake host fails with eai_code (EAI_AGAIN, ...) when it asks for exactly that
// family (AF_UNSPEC: both), until clear().
void fail_host(const std::string& name, int family, int eai_code);
// An IPv4-only lookup of name waits (10 s at most) until one for both families has returned: the
// order in which a connect that runs both gets the answers, made fixed.
void both_families_answer_first(const std::string& name);
std::uint64_t lookups_of(const std::string& name, int family = -1);
std::uint64_t resolutions_of(const std::string& name, int family = -1);
// The addresses that connect() was called with for `port` since clear(), in order ("127.0.0.1",
// "::1").
std::vector<std::string> connects_to(std::uint16_t port);

// Clears on construction and destruction, so one test's faults never reach the next.
struct scope {
  scope() { clear(); }
  ~scope() { clear(); }
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;
};

}  // namespace fault
