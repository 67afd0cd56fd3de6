// Name lookups off the caller's thread: getaddrinfo has no timeout of its own and may wait seconds
// on DNS. The blocking connect waits for lookups only until its deadline; the event loops hand
// lookups over and go on. When a connect's lookup of both families is slow, an IPv4 one starts
// beside it, so that the connect can go on without waiting for a slow IPv6 answer (RFC 8305,
// section 3).
#include <pthread.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "net/sockaddr.hpp"

namespace comm::detail {

namespace {

// A few threads, started on first use and shared by every caller, take the lookups in order.
// Never destroyed: its threads wait on it until the process ends.
//
// At most max_threads lookups that are still wanted run at a time. A lookup whose connect has
// given up while it runs (a timeout, with a DNS server that does not answer) holds its thread
// until getaddrinfo returns, glibc's retries later (10 s by default); such a thread does not count,
// so that lookups abandoned this way cannot keep the queue waiting, up to max_all threads in all.
// Threads above max_threads end once they find nothing to do.
class resolver_pool {
 public:
  struct job {
    std::function<void()> run;      // does not throw
    std::function<bool()> wanted;   // false: dropped if queued, not counted if running
  };
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
  void submit(job j) {
    std::lock_guard lock(m_);
    jobs_.push_back(std::move(j));
    try {
      if (start_thread_if_due()) return;
    } catch (const std::system_error&) {
      if (threads_ == 0) {  // no thread to take it: the caller does the lookup itself
        jobs_.pop_back();
        throw;
      }
    }
    cv_.notify_one();
  }
  // A lookup has been given up: if it runs, a queued one may take its place.
  void reconsider() noexcept {
    std::lock_guard lock(m_);
    try {
      start_thread_if_due();
    } catch (const std::system_error&) {  // the lookups queued wait for a thread to be free
    }
  }

 private:
  static constexpr std::size_t max_threads = 4, max_all = 32;
  // Under m_: starts a thread when a queued lookup has none to take it and fewer than max_threads
  // wanted lookups run. Throws std::system_error if the thread cannot be started.
  bool start_thread_if_due() {
    if (idle_ >= jobs_.size() || threads_ >= max_all || threads_ - idle_ - given_up() >= max_threads) return false;
    std::thread([this] { work(); }).detach();
    ++threads_;
    return true;
  }
  void work() {
    ::pthread_setname_np(::pthread_self(), "comm resolver");
    std::function<bool()> wanted;  // the running lookup's, in running_ while it runs
    std::unique_lock lock(m_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return !jobs_.empty(); });
      --idle_;
      auto j = std::move(jobs_.front());
      jobs_.pop_front();
      wanted = std::move(j.wanted);
      running_.push_back(&wanted);
      lock.unlock();
      if (wanted()) j.run();
      j.run = nullptr;
      lock.lock();
      running_.erase(std::find(running_.begin(), running_.end(), &wanted));
      {  // what it holds (the lookup, maybe its connect) goes unlocked, as the job's has
        auto drop = std::move(wanted);
        wanted = nullptr;
        lock.unlock();
      }
      lock.lock();
      if (jobs_.empty() && threads_ > max_threads) break;  // back to max_threads once quiet
    }
    --threads_;
  }
  // Under m_: running lookups that are no longer wanted.
  std::size_t given_up() const {
    return static_cast<std::size_t>(std::count_if(running_.begin(), running_.end(), [](auto* w) { return !(*w)(); }));
  }
  static resolver_pool*& current() {  // written again only in a forked child
    static resolver_pool* pool = new resolver_pool;
    return pool;
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<job> jobs_;
  std::vector<const std::function<bool()>*> running_;
  std::size_t threads_ = 0, idle_ = 0;
};

}  // namespace

bool is_host_name(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return !host.empty() && !ip_address::try_parse(host);
}

bool needs_lookup_thread(const connect_query& q) { return is_host_name(q.host) || is_host_name(q.local_address); }

namespace {

// look_up, with its error handed back rather than thrown.
std::pair<connect_lookup, std::exception_ptr> look_up_kept(const connect_query& q) {
  try {
    return {look_up(q), nullptr};
  } catch (...) {
    return {connect_lookup{}, std::current_exception()};
  }
}

// look_up on one of the lookup threads; done(result, error) runs there. A lookup still queued when
// wanted() says no (its connect has ended, or no longer needs it) is dropped without a call to
// done: with a DNS server that does not answer, running every abandoned lookup would keep the
// queue long after the server is back. Throws std::system_error if no thread could be started.
void look_up_elsewhere(connect_query q, std::function<void(connect_lookup, std::exception_ptr)> done,
                       std::function<bool()> wanted) {
  resolver_pool::instance().submit({[q = std::move(q), done = std::move(done)] {
                                      auto [found, error] = look_up_kept(q);
                                      done(std::move(found), std::move(error));
                                    },
                                    std::move(wanted)});
}

}  // namespace

// ---- the lookups of one connect

bool connect_lookups::splits(const connect_query& q) {
  return q.family == address_family::any && is_host_name(q.host) && !is_host_name(q.local_address);
}

// The lookups: [0] as asked (both families, as before), [1] IPv4 only, started by take when due.
std::shared_ptr<connect_lookups> connect_lookups::start(const connect_query& q, std::function<void()> answered,
                                                        bool in_caller) {
  auto l = std::make_shared<connect_lookups>();
  l->query_ = q;
  if (!in_caller && splits(q))
    l->answers_ = {answer(q.family), answer(address_family::ipv4)};
  else
    l->answers_ = {answer(q.family)};
  l->ipv4_due_ = clock::now() + resolution_delay;
  l->on_threads_ = !in_caller && needs_lookup_thread(q);
  if (l->on_threads_) l->answered_ = std::move(answered);
  l->launch(0);
  return l;
}

void connect_lookups::launch(std::size_t i) {
  connect_query one = query_;
  one.family = answers_[i].family;  // written once, in start
  if (on_threads_) {
    try {
      auto self = shared_from_this();
      look_up_elsewhere(
          std::move(one),
          [self, i](connect_lookup found, std::exception_ptr error) {
            self->store(i, std::move(found), std::move(error), true);
          },
          [self, i] {
            std::lock_guard lock(self->m_);
            return !self->abandoned_ && !(i == 1 && self->ipv4_not_needed());
          });
      return;
    } catch (const std::system_error&) {  // no lookup thread could be started: here, then
    }
  }
  auto [found, error] = look_up_kept(one);
  store(i, std::move(found), std::move(error), false);
}

void connect_lookups::store(std::size_t i, connect_lookup found, std::exception_ptr error, bool notify) {
  std::function<void()> call;
  {
    std::lock_guard lock(m_);
    auto& a = answers_[i];
    a.answered = true;
    a.found = std::move(found);
    a.error = std::move(error);
    if (notify && answered_) {
      // The last answer releases the function, and what it holds (an async connect holds itself
      // there while it waits).
      if (!more_coming()) {
        call = std::move(answered_);
        answered_ = nullptr;
      } else {
        call = answered_;
      }
    }
  }
  if (call) call();
}

void connect_lookups::abandon() {
  std::function<void()> drop;
  bool unanswered = false;
  {
    std::lock_guard lock(m_);
    abandoned_ = true;
    drop = std::move(answered_);
    answered_ = nullptr;
    unanswered = on_threads_ && (!answers_[0].answered || (answers_.size() == 2 && answers_[1].started &&
                                                            !answers_[1].answered));
  }
  // A lookup of this connect that runs no longer counts: a queued one may have its place.
  if (unanswered) resolver_pool::instance().reconsider();
}

connect_lookups::news connect_lookups::take(clock::time_point now) {
  news n;
  {
    std::lock_guard lock(m_);
    n.more_coming = more_coming();
    const bool any_targets =
        std::any_of(answers_.begin(), answers_.end(), [](const answer& a) { return a.answered && !a.error; });
    if (!given_any_ && !any_targets) {
      // Nothing to connect to yet. The IPv4 lookup starts once the other has failed or has had
      // the resolution delay.
      if (answers_.size() == 2 && !answers_[1].started) {
        if (!answers_[0].answered && now < ipv4_due_) {
          n.wait_until = ipv4_due_;
          return n;
        }
        answers_[1].started = true;
      } else {
        if (!n.more_coming) n.failure = answers_[0].error;  // the lookup of both families, as before
        return n;
      }
    } else {
      for (auto& a : answers_) {
        if (!a.answered || a.given) continue;
        a.given = true;
        if (a.error) continue;
        if (!given_any_) n.local = a.found.local;
        given_any_ = true;
        n.targets.insert(n.targets.end(), a.found.targets.begin(), a.found.targets.end());
      }
      return n;
    }
  }
  launch(1);  // unlocked: without a lookup thread, it stores its answer here
  return take(now);
}

}  // namespace comm::detail
