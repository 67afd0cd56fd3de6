// wait_state_collection: the epoll loop, wake-ups, posted work, timers and the member table.
#include "async/collection.hpp"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace comm {
namespace detail {

namespace {
constexpr std::uint64_t wake_tag = ~std::uint64_t{0};
constexpr int max_events = 256;
}  // namespace

std::string errno_text(int err) { return std::generic_category().message(err); }

collection_impl::collection_impl(std::string name, collection_error_handler handler)
    : name__(std::move(name)), handler_(std::move(handler)) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    int e = errno;
    throw socket_create_error(std::error_code(e, std::generic_category()),
                              "wait_state_collection '" + name__ + "': epoll_create1");
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    int e = errno;
    ::close(epoll_fd_);
    throw socket_create_error(std::error_code(e, std::generic_category()),
                              "wait_state_collection '" + name__ + "': eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = wake_tag;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
}

collection_impl::~collection_impl() {
  close_all();
  {
    std::lock_guard lock(thread_mutex_);
    if (thread_.joinable()) {
      // Only the loop thread itself can drop the last reference while the thread exists (it holds
      // one until its very end), so detaching is safe: it touches nothing after this.
      if (thread_.get_id() == std::this_thread::get_id())
        thread_.detach();
      else
        thread_.join();
    }
  }
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

// What epoll reports for the slot: its index and generation (stale events are told apart by it).
epoll_event collection_impl::registration(std::uint32_t index, std::uint32_t events, bool level) const noexcept {
  epoll_event ev{};
  ev.events = events | (level ? 0u : static_cast<std::uint32_t>(EPOLLET));
  ev.data.u64 = (std::uint64_t{slots_[index].generation} << 32) | index;
  return ev;
}

void collection_impl::add(std::shared_ptr<loop_member> member, int fd, std::uint32_t events, bool level) {
  std::uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slot_entry& s = slots_[index];
  epoll_event ev = registration(index, events, level);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    free_slots_.push_back(index);
    throw socket_create_error(std::error_code(e, std::generic_category()),
                              "wait_state_collection '" + name__ + "': register descriptor " +
                                  std::to_string(fd));
  }
  member->slot = index;
  s.member = std::move(member);
}

void collection_impl::modify(loop_member& member, int fd, std::uint32_t events, bool level) {
  if (member.slot >= slots_.size()) return;
  epoll_event ev = registration(member.slot, events, level);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void collection_impl::replace(loop_member& old, std::shared_ptr<loop_member> member, int fd, std::uint32_t events) {
  std::uint32_t index = old.slot;
  if (index >= slots_.size() || slots_[index].member.get() != &old) return add(std::move(member), fd, events);
  slot_entry& s = slots_[index];
  ++s.generation;  // events already fetched for old are now stale
  epoll_event ev = registration(index, events, false);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0) {
    int e = errno;
    remove(old, fd);
    throw socket_create_error(std::error_code(e, std::generic_category()),
                              "wait_state_collection '" + name__ + "': register descriptor " +
                                  std::to_string(fd));
  }
  old.slot = UINT32_MAX;
  member->slot = index;
  auto keep = std::exchange(s.member, std::move(member));  // old may be freed after this
}

void collection_impl::remove(loop_member& member, int fd) noexcept {
  std::uint32_t index = member.slot;
  if (index >= slots_.size() || slots_[index].member.get() != &member) return;
  if (fd >= 0) ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  member.slot = UINT32_MAX;
  slot_entry& s = slots_[index];
  ++s.generation;  // events already fetched for this slot are now stale
  auto keep = std::move(s.member);
  free_slots_.push_back(index);
}

timer_token collection_impl::add_timer(loop_clock::time_point when, std::function<void()> function, timer_id id) {
  return timers_.emplace(when, timer_entry{std::move(function), id});
}

void collection_impl::cancel_timer(timer_token& token) noexcept {
  if (token != timers_.end()) {
    if (token->second.id != 0) public_timers_.erase(token->second.id);
    timers_.erase(token);
    token = timers_.end();
  }
}

timer_id collection_impl::schedule_public(milliseconds delay, std::function<void()> function) {
  check_thread("wait_state_collection_schedule_timer");
  timer_id id = next_timer_id_++;
  public_timers_[id] = add_timer(loop_clock::now() + delay, std::move(function), id);
  wake();  // a loop blocked in epoll_wait must learn the new, possibly earlier deadline
  return id;
}

bool collection_impl::cancel_public(timer_id id) noexcept {
  auto it = public_timers_.find(id);
  if (it == public_timers_.end()) return false;
  timer_token t = it->second;
  cancel_timer(t);
  return true;
}

void collection_impl::defer(std::function<void()> function) { deferred_.push_back({std::move(function), nullptr}); }

void collection_impl::defer_drive(std::shared_ptr<loop_member> member) {
  deferred_.push_back({nullptr, std::move(member)});
}

void collection_impl::post(std::function<void()> function) {
  {
    std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(function));
  }
  wake();
}

void collection_impl::wake() noexcept {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

namespace {
std::string what_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}
}  // namespace

void collection_impl::report(std::exception_ptr error) noexcept {
  std::exception_ptr handler_error;
  try {
    if (handler_) {
      handler_(error);
      return;
    }
  } catch (...) {
    handler_error = std::current_exception();  // a handler that throws: both go to stderr
  }
  try {
    std::string line = "comm: wait_state_collection '" + name__ + "': callback failed: " + what_of(error);
    if (handler_error) line += " (and its error handler failed: " + what_of(handler_error) + ")";
    std::fprintf(stderr, "%s\n", line.c_str());
  } catch (...) {  // no memory for the line
    std::fputs("comm: wait_state_collection: callback failed\n", stderr);
  }
}

bool collection_impl::in_loop_thread_() const noexcept {
  return loop_thread_.load(std::memory_order_acquire) == std::this_thread::get_id();
}

void collection_impl::check_thread(const char* operation) const {
  if (running_() && !in_loop_thread_())
    throw std::logic_error(std::string(operation) + ": wait_state_collection '" + name__ +
                           "' runs in another thread; use apply_in_wait_state_collection_process");
}

std::vector<std::byte>& collection_impl::scratch() {
  if (scratch_.empty()) scratch_.resize(scratch_size);
  return scratch_;
}

int collection_impl::wait_timeout_ms() {
  if (!deferred_.empty()) return 0;
  if (timers_.empty()) return -1;
  auto d = timers_.begin()->first - loop_clock::now();
  if (d <= loop_clock::duration::zero()) return 0;
  // Round up so that a timer is never woken for early and spun on.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
  return ms > 60'000 ? 60'000 : static_cast<int>(ms);
}

void collection_impl::run(bool claimed) {
  bool expected = false;
  if (!claimed && !running__.compare_exchange_strong(expected, true))
    throw std::logic_error("loop_processing_wait_state_collection: wait_state_collection '" + name__ +
                           "' is already being processed by another loop");
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_release);
  epoll_event events[max_events];
  while (!stop_requested_.load(std::memory_order_acquire)) {
    run_deferred();
    if (stop_requested_.load(std::memory_order_acquire)) break;
    int n = ::epoll_wait(epoll_fd_, events, max_events, wait_timeout_ms());
    if (n < 0 && errno != EINTR) {
      report(std::make_exception_ptr(std::system_error(errno, std::generic_category(), "epoll_wait")));
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == wake_tag) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wake_fd_, &v, sizeof v);
        continue;
      }
      dispatch(events[i].data.u64, events[i].events);
    }
    run_posted();
    fire_timers();
  }
  stop_requested_.store(false, std::memory_order_release);
  loop_thread_.store(std::thread::id{}, std::memory_order_release);
  running__.store(false, std::memory_order_release);
}

void collection_impl::dispatch(std::uint64_t data, std::uint32_t events) {
  auto index = static_cast<std::uint32_t>(data & 0xffffffffu);
  auto generation = static_cast<std::uint32_t>(data >> 32);
  if (index >= slots_.size() || slots_[index].generation != generation || !slots_[index].member) return;
  std::shared_ptr<loop_member> member = slots_[index].member;  // may be removed by its own callback
  guarded([&] { member->on_events(events); });
}

void collection_impl::run_posted() {
  std::vector<std::function<void()>> work;
  {
    std::lock_guard lock(posted_mutex_);
    work.swap(posted_);
  }
  for (auto& f : work) guarded(f);
}

void collection_impl::run_deferred() {
  // Only what is queued now: work that queues more (a flooded reader) yields to epoll first.
  // The two vectors trade places and keep their capacity, so queueing allocates no array.
  deferred_running_.swap(deferred_);
  for (auto& w : deferred_running_) {
    if (w.drive) guarded([&] { w.drive->deferred_drive(); });
    else guarded(w.function);
  }
  deferred_running_.clear();
}

void collection_impl::fire_timers() {
  auto now = loop_clock::now();
  // Bounded by the timers due now; timers added by callbacks with a past deadline run next round.
  std::size_t budget = timers_.size();
  while (budget-- > 0 && !timers_.empty() && timers_.begin()->first <= now) {
    auto it = timers_.begin();
    auto f = std::move(it->second.function);
    if (it->second.id != 0) public_timers_.erase(it->second.id);
    timers_.erase(it);
    guarded(f);
  }
}

void collection_impl::stop() noexcept {
  stop_requested_.store(true, std::memory_order_release);
  wake();
}

void collection_impl::close_all() noexcept {
  ++closes_;
  // Copy first: closing removes members from the table.
  std::vector<std::shared_ptr<loop_member>> members;
  for (auto& s : slots_)
    if (s.member) members.push_back(s.member);
  for (auto& m : members) m->close_quietly();
  while (!public_timers_.empty()) {
    timer_token t = public_timers_.begin()->second;
    cancel_timer(t);
  }
  deferred_.clear();
}

void collection_impl::start_thread(std::shared_ptr<collection_impl> self) {
  thread_alive.store(true);
  has_thread_.store(true, std::memory_order_release);
  // Claimed before the thread starts, so that calls made right after create_and_run from other
  // threads are already recognised as foreign.
  running__.store(true);
  std::lock_guard lock(thread_mutex_);
  thread_ = std::thread([self = std::move(self)]() mutable {
    std::string thread_name = "comm loop " + self->name__;
    thread_name.resize(std::min<std::size_t>(thread_name.size(), 15));
    ::pthread_setname_np(::pthread_self(), thread_name.c_str());
    try {
      self->run(/*claimed=*/true);
    } catch (...) {
      self->report(std::current_exception());
    }
    self->close_all();
    self->thread_alive.store(false);
    self.reset();  // may destroy the collection here (then the thread is detached)
  });
  loop_thread_.store(thread_.get_id(), std::memory_order_release);
}

void collection_impl::stop_and_join() noexcept {
  stop();
  // Hand-driven collections end here: this part is async-signal-safe (an atomic store and an
  // eventfd write), so a signal handler may stop a loop.
  if (!has_thread_.load(std::memory_order_acquire) || in_loop_thread_()) return;
  std::lock_guard lock(thread_mutex_);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace detail

using detail::impl_of;

const std::string& wait_state_collection::name() const noexcept { return impl_of(*this).name_(); }
bool wait_state_collection::running() const noexcept { return impl_of(*this).running_(); }
bool wait_state_collection::in_loop_thread() const noexcept { return impl_of(*this).in_loop_thread_(); }

std::shared_ptr<wait_state_collection> make_wait_state_collection(std::string name, collection_error_handler handler) {
  return std::make_shared<detail::collection_impl>(std::move(name), std::move(handler));
}

void loop_processing_wait_state_collection(wait_state_collection& collection) { impl_of(collection).run(); }

std::shared_ptr<wait_state_collection> create_and_run_wait_state_collection(std::string name,
                                                                           collection_error_handler handler) {
  auto c = std::make_shared<detail::collection_impl>(std::move(name), std::move(handler));
  c->start_thread(c);
  return c;
}

void wait_state_collection_stop_loop(wait_state_collection& collection) { impl_of(collection).stop_and_join(); }

void apply_in_wait_state_collection_process(wait_state_collection& collection, std::function<void()> function) {
  impl_of(collection).post(std::move(function));
}

void close_wait_state_collection(wait_state_collection& collection) {
  impl_of(collection).check_thread("close_wait_state_collection");
  impl_of(collection).close_all();
}

bool wait_state_collection_alive_p(const wait_state_collection& collection) noexcept {
  return impl_of(collection).thread_alive.load();
}

void wait_state_collection_report_error(wait_state_collection& collection, std::exception_ptr error) noexcept {
  impl_of(collection).report(std::move(error));
}

timer_id wait_state_collection_schedule_timer(wait_state_collection& collection, milliseconds delay,
                                              std::function<void()> function) {
  return impl_of(collection).schedule_public(delay, std::move(function));
}

bool wait_state_collection_cancel_timer(wait_state_collection& collection, timer_id id) noexcept {
  return impl_of(collection).cancel_public(id);
}

}  // namespace comm
