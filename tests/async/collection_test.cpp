// wait_state_collection: the loop, stopping it, posting into it, timers, error handling, closing.
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "async_helpers.hpp"

using namespace async_test;

TEST(WaitStateCollection, StopLoopFromAnotherThreadStopsPromptly) {
  auto c = comm::make_wait_state_collection("stopper");
  std::promise<void> started;
  std::thread t([&] {
    comm::apply_in_wait_state_collection_process(*c, [&] { started.set_value(); });
    comm::loop_processing_wait_state_collection(*c);
  });
  ASSERT_EQ(started.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(c->running());
  auto t0 = clock::now();
  comm::wait_state_collection_stop_loop(*c);
  t.join();
  EXPECT_LT(clock::now() - t0, 500ms);
  EXPECT_FALSE(c->running());
}

TEST(WaitStateCollection, StopRequestedBeforeTheLoopMakesItReturnAtOnce) {
  auto c = comm::make_wait_state_collection();
  comm::wait_state_collection_stop_loop(*c);
  auto t0 = clock::now();
  comm::loop_processing_wait_state_collection(*c);  // returns: the stop was pending
  EXPECT_LT(clock::now() - t0, 500ms);
}

TEST(WaitStateCollection, SecondConcurrentLoopIsAClearError) {
  loop_thread lt("busy");
  ASSERT_TRUE(lt.call([&] { return lt.c->in_loop_thread(); }));
  try {
    comm::loop_processing_wait_state_collection(*lt);
    FAIL() << "a second loop ran";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("already being processed"), std::string::npos) << e.what();
  }
}

TEST(WaitStateCollection, CreateAndRunNamesItsThreadAndEndsOnStop) {
  auto c = comm::create_and_run_wait_state_collection("named");
  EXPECT_TRUE(comm::wait_state_collection_alive_p(*c));
  std::promise<std::string> name;
  comm::apply_in_wait_state_collection_process(*c, [&] {
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof buf);
    name.set_value(buf);
  });
  auto f = name.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), "comm loop named");
  comm::wait_state_collection_stop_loop(*c);
  EXPECT_FALSE(comm::wait_state_collection_alive_p(*c));
}

TEST(WaitStateCollection, PostedWorkRunsInOrderInTheLoopThread) {
  loop_thread lt;
  std::vector<int> seen;
  waiter s;
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t)
    posters.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i)
        comm::apply_in_wait_state_collection_process(*lt, [&, t, i] {
          EXPECT_TRUE(lt.c->in_loop_thread());
          s.notify([&] { seen.push_back(t * 1000 + i); });
        });
    });
  for (auto& p : posters) p.join();
  ASSERT_TRUE(s.wait([&] { return seen.size() == 1000; }));
  // Per poster, the order is kept.
  for (int t = 0; t < 4; ++t) {
    int last = -1;
    for (int v : seen)
      if (v / 1000 == t) {
        EXPECT_GT(v, last);
        last = v;
      }
  }
}

TEST(WaitStateCollection, TimersFireInDeadlineOrderAndCanBeCancelled) {
  loop_thread lt;
  std::vector<int> fired;
  waiter s;
  auto t0 = clock::now();
  lt.call([&] {
    comm::wait_state_collection_schedule_timer(*lt, 60ms, [&] { s.notify([&] { fired.push_back(3); }); });
    comm::wait_state_collection_schedule_timer(*lt, 20ms, [&] { s.notify([&] { fired.push_back(1); }); });
    auto id = comm::wait_state_collection_schedule_timer(*lt, 40ms, [&] { s.notify([&] { fired.push_back(2); }); });
    EXPECT_TRUE(comm::wait_state_collection_cancel_timer(*lt, id));
    EXPECT_FALSE(comm::wait_state_collection_cancel_timer(*lt, id));
    return 0;
  });
  ASSERT_TRUE(s.wait([&] { return fired.size() == 2; }));
  EXPECT_GE(clock::now() - t0, 60ms);
  EXPECT_EQ(fired, (std::vector<int>{1, 3}));
}

TEST(WaitStateCollection, TimerFromAnotherThreadWhileRunningIsAClearError) {
  loop_thread lt;
  EXPECT_THROW(comm::wait_state_collection_schedule_timer(*lt, 1ms, [] {}), std::logic_error);
}

TEST(WaitStateCollection, CallbackExceptionGoesToTheHandlerAndTheLoopGoesOn) {
  std::vector<std::string> errors;
  waiter s;
  loop_thread lt("throwing", [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      s.notify([&] { errors.push_back(x.what()); });
    }
  });
  bool after = false;
  comm::apply_in_wait_state_collection_process(*lt, [] { throw std::runtime_error("boom in post"); });
  lt.call([&] {
    comm::wait_state_collection_schedule_timer(*lt, 1ms, [] { throw std::runtime_error("boom in timer"); });
    return 0;
  });
  comm::apply_in_wait_state_collection_process(*lt, [&] { s.notify([&] { after = true; }); });
  ASSERT_TRUE(s.wait([&] { return errors.size() == 2 && after; }));
  EXPECT_EQ(errors[0], "boom in post");
  EXPECT_EQ(errors[1], "boom in timer");
}

// What the loop writes to stderr (fd 2) while this object lives.
class stderr_capture {
 public:
  stderr_capture() {
    if (::pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::runtime_error("pipe2");
    saved_ = ::dup(2);
    ::dup2(pipe_[1], 2);
  }
  ~stderr_capture() { restore(); }
  // Restores fd 2 and returns what was written (all of it: the pipe holds 64 KiB).
  std::string restore() {
    if (saved_ >= 0) {
      ::dup2(saved_, 2);
      ::close(saved_);
      ::close(pipe_[1]);
      saved_ = -1;
      char buf[4096];
      ssize_t n;
      while ((n = ::read(pipe_[0], buf, sizeof buf)) > 0) text_.append(buf, static_cast<std::size_t>(n));
      ::close(pipe_[0]);
    }
    return text_;
  }

 private:
  int pipe_[2] = {-1, -1};
  int saved_ = -1;
  std::string text_;
};

// Without a handler, an exception escaping a callback is written to stderr naming the collection,
// and the loop goes on. A handler that throws itself loses neither error: both are written.
TEST(WaitStateCollection, WithoutAHandlerOrWithAThrowingOneTheErrorGoesToStderr) {
  std::string without, throwing;
  {
    loop_thread lt("no handler");
    stderr_capture capture;
    comm::apply_in_wait_state_collection_process(*lt, [] { throw std::runtime_error("boom"); });
    EXPECT_EQ(lt.call([] { return 7; }), 7);  // after the post: its error has been written
    without = capture.restore();
  }
  {
    loop_thread lt("bad handler", [](std::exception_ptr) { throw std::logic_error("handler broke"); });
    stderr_capture capture;
    comm::apply_in_wait_state_collection_process(*lt, [] { throw std::runtime_error("boom"); });
    EXPECT_EQ(lt.call([] { return 7; }), 7);
    throwing = capture.restore();
  }
  EXPECT_EQ(without, "comm: wait_state_collection 'no handler': callback failed: boom\n");
  EXPECT_EQ(throwing,
            "comm: wait_state_collection 'bad handler': callback failed: boom (and its error handler failed: "
            "handler broke)\n");
}

TEST(WaitStateCollection, SeveralCollectionsOnSeveralThreadsWorkSideBySide) {
  constexpr int n = 4;
  std::vector<std::unique_ptr<loop_thread>> loops;
  for (int i = 0; i < n; ++i) loops.push_back(std::make_unique<loop_thread>("side" + std::to_string(i)));
  std::atomic<int> ticks{0};
  waiter s;
  for (auto& l : loops)
    l->call([&, c = l->c.get()] {
      // Each collection ticks 10 times on its own timers.
      auto step = std::make_shared<std::function<void(int)>>();
      *step = [&, c, step](int left) {
        s.notify([&] { ++ticks; });
        if (left > 1) comm::wait_state_collection_schedule_timer(*c, 1ms, [step, left] { (*step)(left - 1); });
        else *step = nullptr;  // break the self-reference
      };
      comm::wait_state_collection_schedule_timer(*c, 1ms, [step] { (*step)(10); });
      return 0;
    });
  ASSERT_TRUE(s.wait([&] { return ticks.load() == n * 10; }));
  std::set<std::thread::id> ids;
  for (auto& l : loops) ids.insert(l->call([] { return std::this_thread::get_id(); }));
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(n));
}

TEST(WaitStateCollection, CloseClosesEveryStateAndAcceptorWithoutLeakingDescriptors) {
  int before = count_open_fds();
  {
    loop_thread lt("closer");
    std::vector<comm::socket_handle> peers;
    std::shared_ptr<comm::accepting_handle> acceptor;
    std::vector<std::shared_ptr<comm::async_io_state>> states;
    int callbacks = 0;
    lt.call([&] {
      acceptor = comm::accept_tcp_connections_creating_async_io_states(
          *lt, "0", [&](comm::accepting_handle&, comm::async_io_state&) {});
      for (int i = 0; i < 20; ++i) {
        auto [a, b] = tcp_pair();
        auto st = comm::create_async_io_state(*lt, std::move(a));
        comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state&, std::span<const std::byte>) {
          ++callbacks;
        });
        states.push_back(st);
        peers.push_back(std::move(b));
      }
      comm::wait_state_collection_schedule_timer(*lt, 10s, [&] { ++callbacks; });
      return 0;
    });
    EXPECT_GT(count_open_fds(), before + 40);
    lt.call([&] {
      comm::close_wait_state_collection(*lt);
      return 0;
    });
    for (auto& p : peers) send_all(p.get(), "x");  // would call back if anything were still open
    lt.call([] { return 0; });  // one more loop round
    EXPECT_EQ(callbacks, 0);
    for (auto& st : states) {
      EXPECT_FALSE(st->is_open());
      EXPECT_EQ(st->native_handle(), -1);
    }
    EXPECT_FALSE(acceptor->is_open());
    // The loop goes on and takes new states.
    EXPECT_TRUE(lt.call([&] {
      auto [a, b] = tcp_pair();
      return comm::create_async_io_state(*lt, std::move(a))->is_open();
    }));
  }
  EXPECT_EQ(count_open_fds(), before);
}
