// Coroutines over async states: co_await connect / read_some / write, results and errors.
#include "echo_helpers.hpp"

using namespace async_test;

namespace {

comm::task<std::string> echo_round_trip(comm::wait_state_collection& loop, std::uint16_t port, std::string text) {
  auto conn = co_await comm::connect(loop, "127.0.0.1", std::to_string(port));
  co_await conn->write(bytes_of(text));
  std::string got;
  std::byte buf[7];  // small on purpose: several reads per message
  while (got.size() < text.size()) {
    std::size_t n = co_await conn->read_some(buf);
    if (n == 0) throw std::runtime_error("end of stream before the echo");
    got.append(reinterpret_cast<const char*>(buf), n);
  }
  comm::close_async_io_state(*conn);
  co_return got;
}

// Starts a task on a loop thread; the future gets its result (or exception).
template <class T>
std::future<T> start(loop_thread& lt, comm::task<T> t) {
  auto result = std::make_shared<std::promise<T>>();
  auto fut = result->get_future();
  auto wrapper = [](comm::task<T> inner, std::shared_ptr<std::promise<T>> out) -> comm::task<void> {
    try {
      out->set_value(co_await std::move(inner));
    } catch (...) {
      out->set_exception(std::current_exception());
    }
  };
  comm::co_spawn(*lt, wrapper(std::move(t), result));
  return fut;
}

// Runs a task on a loop thread and hands back its result (or exception).
template <class T>
T run(loop_thread& lt, comm::task<T> t) {
  auto fut = start(lt, std::move(t));
  if (fut.wait_for(10s) != std::future_status::ready) throw std::runtime_error("coroutine did not finish");
  return fut.get();
}

std::shared_ptr<comm::async_io_state> state_on(loop_thread& lt, comm::socket_handle socket) {
  std::shared_ptr<comm::async_io_state> st;
  lt.call([&, s = std::make_shared<comm::socket_handle>(std::move(socket))] {
    st = comm::create_async_io_state(*lt, std::move(*s));
    return 0;
  });
  return st;
}

// The exception a finished future holds: its error code and text.
template <class T>
std::pair<std::error_code, std::string> failure_of(std::future<T>& fut) {
  if (fut.wait_for(10s) != std::future_status::ready) return {{}, "coroutine was not resumed"};
  try {
    fut.get();
  } catch (const comm::socket_io_error& e) {
    return {e.code(), e.what()};
  } catch (const std::exception& e) {
    return {{}, std::string("unexpected: ") + e.what()};
  }
  return {{}, "no exception"};
}

}  // namespace

TEST(Coroutines, ConnectWriteAndReadSomeRoundTrip) {
  echo_server server;
  loop_thread lt("coro");
  std::string text = "a coroutine sends this and reads it back";
  EXPECT_EQ(run(lt, echo_round_trip(*lt, server.port(), text)), text);
}

TEST(Coroutines, ConnectFailureIsThrownIntoTheCoroutine) {
  std::uint16_t port;
  {
    auto l = comm::tcp_listener::open("0", {});
    port = l.local_port();
  }
  loop_thread lt("coro");
  EXPECT_THROW(run(lt, echo_round_trip(*lt, port, "x")), comm::socket_connect_error);
}

TEST(Coroutines, ReadSomeReturnsZeroAtEndOfStreamAndThrowsOnTimeout) {
  loop_thread lt("coro");
  auto [a, b] = tcp_pair();
  std::shared_ptr<comm::async_io_state> st;
  lt.call([&, s = std::make_shared<comm::socket_handle>(std::move(a))] {
    st = comm::create_async_io_state(*lt, std::move(*s));
    st->set_read_timeout(100ms);
    return 0;
  });
  auto read_once = [](std::shared_ptr<comm::async_io_state> s) -> comm::task<std::size_t> {
    std::byte buf[16];
    co_return co_await s->read_some(buf);
  };
  EXPECT_THROW(run(lt, read_once(st)), comm::socket_timeout_error);
  send_all(b.get(), "abc");
  EXPECT_EQ(run(lt, read_once(st)), 3u);
  b.reset();
  EXPECT_EQ(run(lt, read_once(st)), 0u);
}

TEST(Coroutines, AnExceptionEscapingASpawnedTaskGoesToTheHandler) {
  waiter w;
  std::string seen;
  loop_thread lt("coro", [&](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      w.notify([&] { seen = x.what(); });
    }
  });
  auto failing = []() -> comm::task<void> {
    throw std::runtime_error("task failed");
    co_return;
  };
  comm::co_spawn(*lt, failing());
  ASSERT_TRUE(w.wait([&] { return !seen.empty(); }));
  EXPECT_EQ(seen, "task failed");
}

TEST(Coroutines, AReadSuspendedOnAStateClosedElsewhereResumesWithOperationCanceled) {
  loop_thread lt("coro");
  auto [a, b] = tcp_pair();  // b never writes
  auto st = state_on(lt, std::move(a));
  auto read_once = [](std::shared_ptr<comm::async_io_state> s) -> comm::task<std::size_t> {
    std::byte buf[16];
    co_return co_await s->read_some(buf);
  };
  auto fut = start(lt, read_once(st));
  lt.call([&] {
    comm::close_async_io_state(*st);
    return 0;
  });
  auto [code, text] = failure_of(fut);
  EXPECT_EQ(code, std::errc::operation_canceled) << text;
  EXPECT_NE(text.find("closed during the read"), std::string::npos) << text;
}

TEST(Coroutines, AWriteSuspendedOnAnAbortedOutputResumesWithOperationCanceled) {
  loop_thread lt("coro");
  auto [a, b] = tcp_pair();  // b never reads: 32 MiB cannot all leave
  auto st = state_on(lt, std::move(a));
  auto big = std::make_shared<std::vector<std::byte>>(32u << 20);
  auto write_all = [](std::shared_ptr<comm::async_io_state> s,
                      std::shared_ptr<std::vector<std::byte>> data) -> comm::task<int> {
    co_await s->write(*data);
    co_return 1;
  };
  auto fut = start(lt, write_all(st, big));
  lt.call([&] {
    comm::async_io_state_abort(*st, nullptr, comm::direction::output);
    return 0;
  });
  auto [code, text] = failure_of(fut);
  EXPECT_EQ(code, std::errc::operation_canceled) << text;
  EXPECT_NE(text.find("aborted during the write"), std::string::npos) << text;
  // The state itself is still usable for reading.
  send_all(b.get(), "after");
  auto read_once = [](std::shared_ptr<comm::async_io_state> s) -> comm::task<std::string> {
    std::byte buf[16];
    std::size_t n = co_await s->read_some(buf);
    co_return std::string(reinterpret_cast<const char*>(buf), n);
  };
  EXPECT_EQ(run(lt, read_once(st)), "after");
  lt.call([&] {
    comm::close_async_io_state(*st);
    return 0;
  });
}

TEST(Coroutines, CallbackOperationsDroppedByCloseStillGetNoCallback) {
  loop_thread lt("coro");
  auto [a, b] = tcp_pair();
  auto st = state_on(lt, std::move(a));
  std::atomic<int> calls{0};
  lt.call([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state&, std::span<const std::byte>) { ++calls; });
    comm::close_async_io_state(*st);
    return 0;
  });
  lt.call([] { return 0; });  // a full loop round later: anything deferred has run
  EXPECT_EQ(calls.load(), 0);
}
