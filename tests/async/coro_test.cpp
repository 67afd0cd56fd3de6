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

// Runs a task on a loop thread and hands back its result (or exception).
template <class T>
T run(loop_thread& lt, comm::task<T> t) {
  std::promise<T> result;
  auto fut = result.get_future();
  auto wrapper = [](comm::task<T> inner, std::promise<T>& out) -> comm::task<void> {
    try {
      out.set_value(co_await std::move(inner));
    } catch (...) {
      out.set_exception(std::current_exception());
    }
  };
  comm::co_spawn(*lt, wrapper(std::move(t), result));
  if (fut.wait_for(10s) != std::future_status::ready) throw std::runtime_error("coroutine did not finish");
  return fut.get();
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
