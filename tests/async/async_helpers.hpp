// Helpers shared by the async tests: raw blocking peers for set-up, descriptor counts, digests,
// and a loop thread with a bounded wait for a condition.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "comm/async.hpp"
#include "peers/tcp_pair.hpp"

namespace async_test {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

inline int count_open_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n - 1;  // the directory stream itself
}

inline void raise_fd_limit(rlim_t want) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min(want, rl.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// A blocking TCP client socket connected to 127.0.0.1:port (raw, for test set-up).
inline comm::socket_handle raw_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("raw_connect: ") + std::strerror(errno));
  }
  return comm::socket_handle(fd);
}

using comm_test::tcp_pair;  // {ours, theirs}

inline void send_all(int fd, const void* p, std::size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t r = ::send(fd, c, n, MSG_NOSIGNAL);
    if (r <= 0) throw std::runtime_error(std::string("send_all: ") + std::strerror(errno));
    c += r;
    n -= static_cast<std::size_t>(r);
  }
}
inline void send_all(int fd, const std::string& s) { send_all(fd, s.data(), s.size()); }

// Reads until EOF or n bytes, bounded by timeout.
inline std::string recv_some(int fd, std::size_t n, std::chrono::milliseconds timeout = 5000ms) {
  std::string out;
  auto deadline = clock::now() + timeout;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char buf[65536];
    ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<std::size_t>(r));
  }
  return out;
}

inline std::string sha256(const void* p, std::size_t n) {
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(p, n, md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned i = 0; i < len; ++i) {
    s += hex[md[i] >> 4];
    s += hex[md[i] & 15];
  }
  return s;
}

inline std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(g() & 0xff);
  return v;
}

inline std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}
inline std::string text_of(std::span<const std::byte> d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

// Waits (bounded) for a predicate guarded by a mutex, signalled with notify().
class waiter {
 public:
  // Notifies under the lock: once the waiting test sees the change it may destroy this waiter, so
  // the condition variable must not be touched after the mutex is released.
  void notify(const std::function<void()>& change = {}) {
    std::lock_guard lock(m_);
    if (change) change();
    cv_.notify_all();
  }
  bool wait(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10000ms) {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, timeout, pred);
  }
  std::mutex& mutex() { return m_; }

 private:
  std::mutex m_;
  std::condition_variable cv_;
};

// A collection running on its own thread for the duration of a test.
struct loop_thread {
  std::shared_ptr<comm::wait_state_collection> c;
  explicit loop_thread(std::string name = "test", comm::collection_error_handler h = {})
      : c(comm::create_and_run_wait_state_collection(std::move(name), std::move(h))) {}
  ~loop_thread() { comm::wait_state_collection_stop_loop(*c); }
  // Runs f in the loop thread and waits for it (rethrowing what it throws).
  template <class F>
  auto call(F&& f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::forward<F>(f));
    auto fut = task.get_future();
    comm::apply_in_wait_state_collection_process(*c, [&task] { task(); });
    if (fut.wait_for(10s) != std::future_status::ready) throw std::runtime_error("loop_thread::call timed out");
    return fut.get();
  }
  comm::wait_state_collection& operator*() { return *c; }
};

}  // namespace async_test
