// The event loop behind wait_state_collection: epoll, an eventfd for wake-ups and posted work,
// a timer map checked through the epoll timeout, and a table of registered members (states,
// acceptors, pending connects). Internal to src/async.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "comm/async.hpp"

namespace comm::detail {

using loop_clock = std::chrono::steady_clock;

// Anything registered with epoll in a collection.
class loop_member {
 public:
  virtual ~loop_member() = default;
  virtual void on_events(std::uint32_t events) = 0;
  // close_wait_state_collection: close without running any callback.
  virtual void close_quietly() noexcept = 0;
  // What defer_drive queued (an async_io_state's drive).
  virtual void deferred_drive() {}
  std::uint32_t slot = UINT32_MAX;
};

struct timer_entry {
  std::function<void()> function;
  timer_id id = 0;  // 0 = internal (owned by a member, which cancels it on close)
};
using timer_map = std::multimap<loop_clock::time_point, timer_entry>;
// Valid until the timer fires or is cancelled; end() of the map means "none".
using timer_token = timer_map::iterator;

class collection_impl final : public wait_state_collection {
 public:
  collection_impl(std::string name, collection_error_handler handler);
  ~collection_impl() override;

  // Registration. Members are kept alive by the collection while registered.
  // Edge-triggered unless level is set. Throws socket_create_error.
  void add(std::shared_ptr<loop_member> member, int fd, std::uint32_t events, bool level = false);
  void modify(loop_member& member, int fd, std::uint32_t events, bool level);
  // Hands old's registration of fd over to member, with new events (edge-triggered), in one
  // EPOLL_CTL_MOD: events already fetched for old are dropped. Adds member if old is not
  // registered. Throws socket_create_error; old is deregistered then.
  void replace(loop_member& old, std::shared_ptr<loop_member> member, int fd, std::uint32_t events);
  // Deregisters and drops the collection's reference (the caller must hold its own).
  void remove(loop_member& member, int fd) noexcept;

  timer_token add_timer(loop_clock::time_point when, std::function<void()> function, timer_id id = 0);
  void cancel_timer(timer_token& token) noexcept;
  timer_token no_timer() noexcept { return timers_.end(); }
  timer_id schedule_public(milliseconds delay, std::function<void()> function);
  bool cancel_public(timer_id id) noexcept;

  // Runs function later in this loop iteration, before waiting again (loop thread only).
  void defer(std::function<void()> function);
  // The same for member->deferred_drive(), in the same order, without allocating a closure
  // (one per request/reply otherwise).
  void defer_drive(std::shared_ptr<loop_member> member);
  void post(std::function<void()> function);  // any thread
  void report(std::exception_ptr error) noexcept;
  template <class F>
  void guarded(F&& f) noexcept {
    try {
      f();
    } catch (...) {
      report(std::current_exception());
    }
  }
  // std::logic_error when called from a thread other than the running loop's.
  void check_thread(const char* operation) const;

  void run(bool claimed = false);
  void stop() noexcept;
  void close_all() noexcept;
  // How many times close_all has run. Work that holds no registration while it waits elsewhere (a
  // host name being resolved on another thread) notes it first, and drops itself if it changed.
  std::uint64_t closes() const noexcept { return closes_; }
  // One buffer per loop that read_with_checking reads into when the state holds nothing yet (the
  // callback sees the bytes there; only what it leaves is copied to the state). As large as a
  // typical bulk write, so a bulk reader makes one recv per 256 KiB, not four.
  static constexpr std::size_t scratch_size = 256 * 1024;
  std::vector<std::byte>& scratch();

  const std::string& name_() const noexcept { return name__; }
  bool running_() const noexcept { return running__.load(std::memory_order_acquire); }
  bool in_loop_thread_() const noexcept;

  // create_and_run.
  void start_thread(std::shared_ptr<collection_impl> self);
  void stop_and_join() noexcept;
  std::atomic<bool> thread_alive{false};

 private:
  struct slot_entry {
    std::shared_ptr<loop_member> member;
    std::uint32_t generation = 0;
  };
  void dispatch(std::uint64_t data, std::uint32_t events);
  void run_posted();
  void run_deferred();
  void fire_timers();
  int wait_timeout_ms();
  void wake() noexcept;
  epoll_event registration(std::uint32_t index, std::uint32_t events, bool level) const noexcept;

  std::string name__;
  collection_error_handler handler_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::vector<slot_entry> slots_;
  std::uint64_t closes_ = 0;
  std::vector<std::uint32_t> free_slots_;
  timer_map timers_;
  std::unordered_map<timer_id, timer_token> public_timers_;
  timer_id next_timer_id_ = 1;
  struct deferred_work {
    std::function<void()> function;
    std::shared_ptr<loop_member> drive;  // or, when set, its deferred_drive()
  };
  std::vector<deferred_work> deferred_;
  std::vector<deferred_work> deferred_running_;  // run_deferred's batch
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> running__{false};
  std::atomic<std::thread::id> loop_thread_{};
  std::vector<std::byte> scratch_;
  std::thread thread_;
  std::mutex thread_mutex_;
  std::atomic<bool> has_thread_{false};
};

inline collection_impl& impl_of(wait_state_collection& c) noexcept { return static_cast<collection_impl&>(c); }
inline const collection_impl& impl_of(const wait_state_collection& c) noexcept {
  return static_cast<const collection_impl&>(c);
}

std::string errno_text(int err);

}  // namespace comm::detail
