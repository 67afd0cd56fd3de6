// start_up_server / server_terminate: pool, errors, clean stop, no leaked descriptors.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "stream/stream_helpers.hpp"

using namespace comm;
using namespace stream_test;

namespace {

void echo_lines(socket_stream& s) {
  while (auto line = s.read_line()) {
    s.write_all(*line + "\n");
    s.flush();
  }
}

}  // namespace

TEST(Server, AnnouncesPortAndEchoes) {
  std::promise<std::uint16_t> announced;
  server srv = start_up_server(echo_lines, {.address = "127.0.0.1",
                                            .announce = [&](std::uint16_t port, std::exception_ptr e) {
                                              EXPECT_EQ(e, nullptr);
                                              announced.set_value(port);
                                            }});
  auto port = announced.get_future().get();
  EXPECT_NE(port, 0);
  EXPECT_EQ(port, srv.local_port());
  EXPECT_TRUE(srv.alive());
  auto s = open_tcp_stream("127.0.0.1", std::to_string(port), {.read_timeout = 5s});
  s << "ping" << std::endl;
  EXPECT_EQ(s.read_line(), "ping");
  EXPECT_TRUE(server_terminate(srv));
  EXPECT_FALSE(srv.alive());
  EXPECT_FALSE(server_terminate(srv));  // idempotent
}

TEST(Server, StartupFailureIsAnnouncedAndThrown) {
  auto taken = tcp_listener::open("0", {.address = "127.0.0.1"});
  std::exception_ptr seen;
  std::uint16_t seen_port = 1;
  EXPECT_THROW(start_up_server(echo_lines, {.service = std::to_string(taken.local_port()),
                                            .address = "127.0.0.1",
                                            .announce =
                                                [&](std::uint16_t p, std::exception_ptr e) {
                                                  seen_port = p;
                                                  seen = e;
                                                }}),
               socket_create_error);
  EXPECT_EQ(seen_port, 0);
  ASSERT_NE(seen, nullptr);
  EXPECT_THROW(std::rethrow_exception(seen), socket_create_error);
}

TEST(Server, ThrowingHandlerLeavesServerServing) {
  std::atomic<int> calls{0};
  std::promise<std::string> reported;
  server srv = start_up_server(
      [&](socket_stream& s) {
        if (calls++ == 0) throw std::runtime_error("handler failed on purpose");
        echo_lines(s);
      },
      {.address = "127.0.0.1",
       .handler_error_callback = [&](std::exception_ptr e) {
         try {
           std::rethrow_exception(e);
         } catch (const std::exception& ex) {
           reported.set_value(ex.what());
         }
       }});
  std::string port = std::to_string(srv.local_port());
  {
    auto first = open_tcp_stream("127.0.0.1", port, {.read_timeout = 5s});
    EXPECT_EQ(first.read_line(), std::nullopt);  // closed after the handler threw
  }
  EXPECT_EQ(reported.get_future().get(), "handler failed on purpose");
  auto second = open_tcp_stream("127.0.0.1", port, {.read_timeout = 5s});
  second << "still serving" << std::endl;
  EXPECT_EQ(second.read_line(), "still serving");
}

TEST(Server, TwoHundredConcurrentClientsAllEchoed) {
  server srv = start_up_server(echo_lines, {.address = "127.0.0.1", .max_threads = 16});
  std::string port = std::to_string(srv.local_port());
  constexpr int clients = 200;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto s = open_tcp_stream("127.0.0.1", port, {.read_timeout = 20s});
        std::string msg = "client " + std::to_string(i) + " " + std::string(static_cast<std::size_t>(i) * 10, 'x');
        s << msg << std::endl;
        if (s.read_line() == msg) ++ok;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "client " << i << ": " << e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, clients);
}

TEST(Server, TerminateUnblocksHandlersAndLeavesNoDescriptors) {
  int before = open_fd_count();
  std::atomic<int> running{0};
  std::promise<void> both_running;
  server srv = start_up_server(
      [&](socket_stream& s) {
        if (++running == 2) both_running.set_value();
        char c;
        while (s.read_some(&c, 1) > 0) {
        }  // blocks until terminate shuts the socket down
      },
      {.address = "127.0.0.1"});
  std::string port = std::to_string(srv.local_port());
  {
    auto a = open_tcp_stream("127.0.0.1", port);
    auto b = open_tcp_stream("127.0.0.1", port);
    ASSERT_EQ(both_running.get_future().wait_for(5s), std::future_status::ready);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(server_terminate(srv));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  }
  EXPECT_FALSE(try_open_tcp_stream("127.0.0.1", port));  // no longer listening
  EXPECT_EQ(open_fd_count(), before);
}

TEST(Server, TerminateFromInsideHandlerDoesNotDeadlock) {
  server srv;
  std::promise<void> started;
  std::promise<bool> result;
  std::shared_future<void> ready = started.get_future().share();
  srv = start_up_server(
      [&](socket_stream& s) {
        ready.wait();
        result.set_value(server_terminate(srv));
        s << "terminated from inside" << std::endl;
      },
      {.address = "127.0.0.1"});
  started.set_value();
  auto c = open_tcp_stream("127.0.0.1", std::to_string(srv.local_port()), {.read_timeout = 5s});
  EXPECT_EQ(c.read_line(), "terminated from inside");
  EXPECT_TRUE(result.get_future().get());
  EXPECT_FALSE(srv.alive());
  // Accepting has stopped: the port is closed (bounded wait for the accept thread to see the stop).
  bool refused = false;
  for (auto deadline = std::chrono::steady_clock::now() + 5s; !refused && std::chrono::steady_clock::now() < deadline;) {
    auto r = try_open_tcp_stream("127.0.0.1", std::to_string(srv.local_port()), {.read_timeout = 1s});
    refused = !r;
    if (r) {
      // A connection that slipped in before the stop is closed or reset, never served.
      try {
        EXPECT_EQ(r->read_line(), std::nullopt);
      } catch (const socket_io_error& e) {
        EXPECT_EQ(e.code(), std::errc::connection_reset) << e.what();
      }
    }
  }
  EXPECT_TRUE(refused);
  EXPECT_FALSE(server_terminate(srv));  // finishes the joins from outside
}

TEST(Server, ConnectionsBeyondMaxConnectionsAreClosedAtOnce) {
  std::promise<void> first_in;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  server srv = start_up_server(
      [&](socket_stream& s) {
        first_in.set_value();
        released.wait();
        s << "served" << std::endl;
      },
      {.address = "127.0.0.1", .max_threads = 1, .max_connections = 1});
  std::string port = std::to_string(srv.local_port());
  auto first = open_tcp_stream("127.0.0.1", port, {.read_timeout = 5s});
  ASSERT_EQ(first_in.get_future().wait_for(5s), std::future_status::ready);
  auto second = open_tcp_stream("127.0.0.1", port, {.read_timeout = 5s});
  try {
    EXPECT_EQ(second.read_line(), std::nullopt);
  } catch (const socket_io_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_reset) << e.what();
  }
  release.set_value();
  EXPECT_EQ(first.read_line(), "served");
}

TEST(Server, DualStackServesIPv4AndIPv6) {
  server srv = start_up_server(echo_lines);
  std::string port = std::to_string(srv.local_port());
  for (const char* host : {"127.0.0.1", "::1"}) {
    auto s = open_tcp_stream(host, port, {.read_timeout = 5s});
    s << host << std::endl;
    EXPECT_EQ(s.read_line(), host);
  }
}
