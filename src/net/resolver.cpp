// Name lookups off the caller's thread: getaddrinfo has no timeout of its own and may wait seconds
// on DNS. The blocking connect waits for a lookup only until its deadline; the event loops hand
// lookups over and go on.
#include <pthread.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "net/sockaddr.hpp"

namespace comm::detail {

namespace {

// A few threads, started on first use and shared by every caller, take the lookups in order.
// Never destroyed: its threads wait on it until the process ends.
class resolver_pool {
 public:
  static resolver_pool& instance() {
    // A child of fork() has none of the parent's threads, and this pool's lock may have been held
    // by one of them: the child starts a pool of its own (the old one is left untouched).
    static const bool registered = [] {
      ::pthread_atfork(nullptr, nullptr, [] { current() = new resolver_pool; });
      return true;
    }();
    (void)registered;
    return *current();
  }
  void submit(std::function<void()> job) {
    std::lock_guard lock(m_);
    jobs_.push_back(std::move(job));
    if (idle_ < jobs_.size() && threads_ < max_threads) {
      try {
        std::thread([this] { work(); }).detach();
        ++threads_;
        return;
      } catch (const std::system_error&) {
        if (threads_ == 0) {  // no thread to take it: the caller does the lookup itself
          jobs_.pop_back();
          throw;
        }
      }
    }
    cv_.notify_one();
  }

 private:
  static constexpr std::size_t max_threads = 4;
  void work() {
    ::pthread_setname_np(::pthread_self(), "comm resolver");
    std::unique_lock lock(m_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return !jobs_.empty(); });
      --idle_;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();  // does not throw
      job = nullptr;
      lock.lock();
    }
  }
  static resolver_pool*& current() {  // written again only in a forked child
    static resolver_pool* pool = new resolver_pool;
    return pool;
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::size_t threads_ = 0, idle_ = 0;
};

}  // namespace

bool is_host_name(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return !host.empty() && !ip_address::try_parse(host);
}

bool needs_lookup_thread(const connect_query& q) { return is_host_name(q.host) || is_host_name(q.local_address); }

void look_up_elsewhere(connect_query q, looked_up_function done, std::function<bool()> wanted) {
  resolver_pool::instance().submit([q = std::move(q), done = std::move(done), wanted = std::move(wanted)] {
    // Lookups that waited behind slow ones (a DNS server that does not answer) may no longer be
    // wanted; running them anyway would keep the queue long after the server is back.
    if (wanted && !wanted()) return;
    connect_lookup found;
    std::exception_ptr error;
    try {
      found = look_up(q);
    } catch (...) {
      error = std::current_exception();
    }
    done(std::move(found), std::move(error));
  });
}

std::optional<connect_lookup> look_up_before(const connect_query& q, const std::optional<clock::time_point>& deadline) {
  if (!deadline || !needs_lookup_thread(q)) return look_up(q);
  struct answer {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    bool abandoned = false;  // the caller's deadline has passed
    connect_lookup found;
    std::exception_ptr error;
  };
  auto a = std::make_shared<answer>();  // an abandoned lookup still writes here
  try {
    look_up_elsewhere(
        q,
        [a](connect_lookup found, std::exception_ptr error) {
          std::lock_guard lock(a->m);
          a->found = std::move(found);
          a->error = std::move(error);
          a->done = true;
          a->cv.notify_all();
        },
        [a] {
          std::lock_guard lock(a->m);
          return !a->abandoned;
        });
  } catch (const std::system_error&) {  // no thread could be started
    return look_up(q);
  }
  std::unique_lock lock(a->m);
  if (!a->cv.wait_until(lock, *deadline, [&] { return a->done; })) {
    a->abandoned = true;
    return std::nullopt;
  }
  if (a->error) std::rethrow_exception(a->error);
  return std::move(a->found);
}

}  // namespace comm::detail
