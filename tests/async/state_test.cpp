// async_io_state on plain sockets: reading (buffer, with checking), writing, timeouts, misuse,
// close / abort / shutdown, buffered data.
#include <thread>

#include "async_helpers.hpp"

using namespace async_test;

namespace {

struct state_fixture : ::testing::Test {
  waiter w;
  std::vector<std::string> errors;  // what the collection's handler received
  loop_thread lt{"state", [this](std::exception_ptr e) {
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& x) {
                     w.notify([&] { errors.push_back(x.what()); });
                   }
                 }};
  comm::socket_handle peer;
  std::shared_ptr<comm::async_io_state> st;

  void make(comm::async_io_state_options o = {}) {
    auto [a, b] = tcp_pair();
    peer = std::move(b);
    lt.call([&, s = std::make_shared<comm::socket_handle>(std::move(a))] {
      st = comm::create_async_io_state(*lt, std::move(*s), std::move(o));
      return 0;
    });
  }
  template <class F>
  void in_loop(F&& f) {
    lt.call([&] {
      f();
      return 0;
    });
  }
};

}  // namespace

TEST_F(state_fixture, ReadWithCheckingParsesLinesSentByteByByte) {
  make();
  std::vector<std::string> lines;
  struct call {
    std::size_t old_length, size, consumed;
  };
  std::vector<call> calls;
  std::size_t ncalls = 0;
  bool finished = false;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> data) {
      calls.push_back({s.old_length(), data.size(), 0});
      std::string text = text_of(data);
      std::size_t start = 0, nl;
      while ((nl = text.find('\n', start)) != std::string::npos) {
        std::string line = text.substr(start, nl - start);
        start = nl + 1;
        if (line == "QUIT") {
          calls.back().consumed = start;
          comm::async_io_state_finish(s, start);
          w.notify([&] { finished = true, ++ncalls; });
          return;
        }
        w.notify([&] { lines.push_back(line); });
      }
      calls.back().consumed = start;
      comm::async_io_state_discard(s, start);
      w.notify([&] { ++ncalls; });
    });
  });
  int one = 1;
  ::setsockopt(peer.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  // One byte at a time, each sent only once the previous one was seen: every byte is a packet.
  std::string msg = "alpha\nbeta\n\ngamma delta\nQUIT\n";
  for (std::size_t i = 0; i < msg.size(); ++i) {
    send_all(peer.get(), &msg[i], 1);
    ASSERT_TRUE(w.wait([&] { return ncalls == i + 1; })) << i;
  }
  send_all(peer.get(), "rest-after-quit");
  ASSERT_TRUE(w.wait([&] { return finished; }));
  EXPECT_EQ(lines, (std::vector<std::string>{"alpha", "beta", "", "gamma delta"}));
  // The bytes after QUIT stay buffered for the next read (those that had arrived at finish).
  std::string rest;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> data) {
      if (data.size() >= 15) {
        w.notify([&] { rest = text_of(data); });
        comm::async_io_state_finish(s, 5);
      }
    });
  });
  ASSERT_TRUE(w.wait([&] { return !rest.empty(); }));
  EXPECT_EQ(rest, "rest-after-quit");
  EXPECT_EQ(lt.call([&] { return st->buffered_data_length(); }), 10u);
  auto left = lt.call([&] { return comm::async_io_state_get_buffered_data(*st); });
  EXPECT_EQ(text_of(left), "after-quit");
  // old_length: what the previous callback saw and did not consume.
  ASSERT_EQ(calls.size(), msg.size());
  EXPECT_EQ(calls[0].old_length, 0u);
  for (std::size_t i = 1; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].old_length, calls[i - 1].size - calls[i - 1].consumed) << i;
    EXPECT_GT(calls[i].size, calls[i].old_length) << i;
  }
}

TEST_F(state_fixture, ReadBufferFillsTheWholeBufferThenCallsBack) {
  make();
  std::vector<std::byte> buf(10);
  std::size_t got = 0;
  comm::io_status status{};
  in_loop([&] {
    comm::async_io_state_read_buffer(*st, buf, [&](comm::async_io_state& s, std::span<std::byte>, std::size_t n) {
      w.notify([&] {
        got = n;
        status = s.read_status();
      });
    });
  });
  send_all(peer.get(), "01234");
  send_all(peer.get(), "56789xyz");
  ASSERT_TRUE(w.wait([&] { return got != 0; }));
  EXPECT_EQ(got, 10u);
  EXPECT_EQ(status, comm::io_status::ok);
  EXPECT_EQ(text_of(buf), "0123456789");
}

TEST_F(state_fixture, EndOfStreamGivesStatusEofWithTheBytesBefore) {
  make();
  std::vector<std::byte> buf(10);
  std::optional<std::size_t> got;
  comm::io_status status{};
  in_loop([&] {
    comm::async_io_state_read_buffer(*st, buf, [&](comm::async_io_state& s, std::span<std::byte>, std::size_t n) {
      w.notify([&] {
        got = n;
        status = s.read_status();
      });
    });
  });
  send_all(peer.get(), "abc");
  peer.reset();
  ASSERT_TRUE(w.wait([&] { return got.has_value(); }));
  EXPECT_EQ(*got, 3u);
  EXPECT_EQ(status, comm::io_status::eof);
}

// Bytes and the peer's end that arrived before the state existed: registering the socket reports
// them as the first edge (the state makes no read before it), so nothing waits for an edge that
// already passed.
TEST_F(state_fixture, InputThatCameBeforeTheStateIsReadWithoutANewEdge) {
  auto [a, b] = tcp_pair();
  send_all(b.get(), "abc");
  b.reset();
  std::vector<std::byte> buf(10);
  std::optional<std::size_t> got;
  comm::io_status status{};
  lt.call([&, s = std::make_shared<comm::socket_handle>(std::move(a))] {
    st = comm::create_async_io_state(*lt, std::move(*s));
    comm::async_io_state_read_buffer(*st, buf, [&](comm::async_io_state& s, std::span<std::byte>, std::size_t n) {
      w.notify([&] { got = n, status = s.read_status(); });
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return got.has_value(); }));
  EXPECT_EQ(*got, 3u);
  EXPECT_EQ(text_of(std::span<const std::byte>(buf.data(), 3)), "abc");
  EXPECT_EQ(status, comm::io_status::eof);
}

TEST_F(state_fixture, ReadTimeoutSetsStatusTimeoutAndCallsBackAndPersists) {
  make();
  std::vector<std::byte> buf(4);
  std::optional<comm::io_status> status;
  std::string what;
  auto t0 = clock::now();
  in_loop([&] {
    comm::async_io_state_read_buffer(
        *st, buf, [&](comm::async_io_state&, std::span<std::byte>, std::size_t) { ADD_FAILURE() << "callback"; },
        {.timeout = 100ms, .error_callback = [&](comm::async_io_state& s, std::span<std::byte>, std::size_t n) {
           EXPECT_EQ(n, 1u);
           try {
             std::rethrow_exception(s.read_error());
           } catch (const comm::socket_timeout_error& e) {
             what = e.what();
           }
           w.notify([&] { status = s.read_status(); });
         }});
  });
  send_all(peer.get(), "x");
  ASSERT_TRUE(w.wait([&] { return status.has_value(); }));
  auto took = clock::now() - t0;
  EXPECT_EQ(*status, comm::io_status::timeout);
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 2s);
  EXPECT_NE(what.find("timed out after 100 ms"), std::string::npos) << what;
  EXPECT_EQ(lt.call([&] { return st->read_timeout(); }), std::optional<std::chrono::milliseconds>(100ms));
  // The state stays usable: the next read (same persisted timeout) gets what arrives.
  status.reset();
  in_loop([&] {
    comm::async_io_state_read_buffer(*st, std::span(buf).first(3),
                                     [&](comm::async_io_state& s, std::span<std::byte>, std::size_t) {
                                       w.notify([&] { status = s.read_status(); });
                                     });
  });
  send_all(peer.get(), "yz!");
  ASSERT_TRUE(w.wait([&] { return status.has_value(); }));
  EXPECT_EQ(*status, comm::io_status::ok);
  EXPECT_EQ(text_of(std::span(buf).first(3)), "yz!");
}

TEST_F(state_fixture, MisuseIsAClearErrorNotCorruption) {
  make();
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [](comm::async_io_state&, std::span<const std::byte>) {});
    try {
      comm::async_io_state_read_with_checking(*st, [](comm::async_io_state&, std::span<const std::byte>) {});
      ADD_FAILURE() << "second read accepted";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("a read is already active"), std::string::npos) << e.what();
    }
    std::byte b[1];
    EXPECT_THROW(comm::async_io_state_read_buffer(*st, b, {}), std::logic_error);
    EXPECT_THROW(comm::async_io_state_discard(*st, 1), std::logic_error);
    EXPECT_THROW(comm::async_io_state_finish(*st), std::logic_error);
    comm::async_io_state_write_buffer(*st, std::string(1 << 20, 'w'), {});
    try {
      comm::async_io_state_write_buffer(*st, std::string("second"), {});
      ADD_FAILURE() << "second write accepted";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find("queue_output"), std::string::npos) << e.what();
    }
    EXPECT_THROW(comm::async_io_state_attach_ssl(*st, {}, {}), std::logic_error);
  });
  // From another thread while the loop runs.
  EXPECT_THROW(comm::async_io_state_write_buffer(*st, std::string("x"), {}), std::logic_error);
  in_loop([&] { comm::close_async_io_state(*st); });
  EXPECT_THROW(lt.call([&] {
    comm::async_io_state_write_buffer(*st, std::string("x"), {});
    return 0;
  }),
               std::logic_error);
}

// A write toward a peer that reads nothing: once the socket takes no more, the write timeout (the
// longest wait without progress) ends it with status timeout and an error naming the peer and the
// time. The callback's count is what the socket took, and exactly those bytes reach the peer.
TEST_F(state_fixture, WriteTimeoutEndsAStalledWriteWithTheBytesTaken) {
  comm::async_io_state_options o;
  o.write_timeout = 200ms;
  make(std::move(o));
  const std::string data = [] {
    auto v = random_bytes(8 << 20, 5);
    return std::string(reinterpret_cast<const char*>(v.data()), v.size());
  }();
  std::optional<comm::io_status> status;
  std::size_t taken = 0;
  std::string what;
  const std::string peer_port = std::to_string(comm::get_socket_address(peer.get())->port);
  clock::time_point stalled{};
  // Taken before the write begins: the timeout runs from the write's last progress, which may come
  // before in_loop returns.
  const auto t0 = clock::now();
  in_loop([&] {
    comm::async_io_state_write_buffer(*st, data, [&](comm::async_io_state& s, std::size_t n) {
      try {
        std::rethrow_exception(s.write_error());
      } catch (const comm::socket_timeout_error& e) {
        what = e.what();
      } catch (const std::exception& e) {
        what = std::string("not a socket_timeout_error: ") + e.what();
      }
      w.notify([&] { status = s.write_status(), taken = n, stalled = clock::now(); });
    });
  });
  ASSERT_TRUE(w.wait([&] { return status.has_value(); }));
  EXPECT_EQ(*status, comm::io_status::timeout);
  EXPECT_GE(stalled - t0, 200ms);
  EXPECT_LT(stalled - t0, 3s);
  EXPECT_EQ(what, "write to 127.0.0.1:" + peer_port + ": timed out after 200 ms: Connection timed out") << what;
  ASSERT_GT(taken, 0u);
  ASSERT_LT(taken, data.size());
  const std::string got = recv_some(peer.get(), taken + 1, 1000ms);
  EXPECT_EQ(got.size(), taken);
  EXPECT_TRUE(got == data.substr(0, taken)) << "the bytes the peer got are not the start of the write";
}

TEST_F(state_fixture, QueuedWritesGoOutInOrderAndBackPressureRefusesBeyondTheLimit) {
  comm::async_io_state_options o;
  o.queue_output = true;
  o.max_queued_output = 100'000;
  make(std::move(o));
  std::vector<std::size_t> done;
  std::optional<comm::io_status> refused_status;
  std::string refused_what;
  in_loop([&] {
    for (int i = 0; i < 5; ++i)
      comm::async_io_state_write_buffer(*st, std::string(10'000, static_cast<char>('a' + i)),
                                        [&](comm::async_io_state&, std::size_t n) { w.notify([&] { done.push_back(n); }); });
    EXPECT_EQ(st->queued_output(), 50'000u);
    comm::async_io_state_write_buffer(*st, std::string(60'000, 'z'), [&](comm::async_io_state& s, std::size_t n) {
      EXPECT_EQ(n, 0u);
      try {
        std::rethrow_exception(s.write_error());
      } catch (const comm::socket_io_error& e) {
        refused_what = e.what();
        EXPECT_EQ(e.code(), std::errc::no_buffer_space);
      }
      w.notify([&] { refused_status = s.write_status(); });
    });
  });
  std::string got = recv_some(peer.get(), 50'000);
  ASSERT_TRUE(w.wait([&] { return done.size() == 5 && refused_status; }));
  EXPECT_EQ(*refused_status, comm::io_status::error);
  EXPECT_NE(refused_what.find("limit 100000"), std::string::npos) << refused_what;
  ASSERT_EQ(got.size(), 50'000u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got.substr(i * 10'000, 10'000), std::string(10'000, static_cast<char>('a' + i)));
  EXPECT_EQ(done, std::vector<std::size_t>(5, 10'000u));
}

TEST_F(state_fixture, ReadWithCheckingBufferIsBoundedNotUnbounded) {
  comm::async_io_state_options o;
  o.max_buffer = 64 * 1024;
  make(std::move(o));
  std::optional<comm::io_status> status;
  std::size_t seen = 0;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> d) {
      if (s.read_status() != comm::io_status::ok) w.notify([&] { status = s.read_status(), seen = d.size(); });
      // never consumes: a peer that never ends its "line"
    });
  });
  std::string big(200 * 1024, 'x');
  std::thread sender([&] {
    try {
      send_all(peer.get(), big);
    } catch (...) {
    }
  });
  ASSERT_TRUE(w.wait([&] { return status.has_value(); }));
  EXPECT_EQ(*status, comm::io_status::error);
  EXPECT_GE(seen, 64u * 1024);
  EXPECT_LT(seen, 64u * 1024 + 65 * 1024);
  in_loop([&] { comm::close_async_io_state(*st); });
  peer.reset();
  sender.join();
}

TEST_F(state_fixture, CloseReturnsTheBufferedCountAndKeepAliveKeepsTheSocket) {
  make();
  bool shown = false;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> d) {
      if (d.size() == 6) {
        comm::async_io_state_finish(s, 2);
        w.notify([&] { shown = true; });
      }
    });
  });
  send_all(peer.get(), "HEAD:b");
  ASSERT_TRUE(w.wait([&] { return shown; }));
  std::size_t n = lt.call([&] { return comm::close_async_io_state(*st, /*keep_alive=*/true); });
  EXPECT_EQ(n, 4u);
  EXPECT_FALSE(st->is_open());
  EXPECT_EQ(text_of(comm::async_io_state_get_buffered_data(*st)), "AD:b");
  comm::socket_handle s = comm::async_io_state_release_socket(*st);
  ASSERT_TRUE(s.is_open());
  send_all(s.get(), "still here");
  EXPECT_EQ(recv_some(peer.get(), 10), "still here");
}

TEST_F(state_fixture, AbortStopsTheReadAndCallsTheAbortCallbackInstead) {
  make();
  bool aborted = false;
  in_loop([&] {
    comm::async_io_state_read_with_checking(
        *st, [&](comm::async_io_state&, std::span<const std::byte>) { ADD_FAILURE() << "read callback after abort"; });
    comm::async_io_state_abort(*st, [&](comm::async_io_state&) { w.notify([&] { aborted = true; }); });
  });
  ASSERT_TRUE(w.wait([&] { return aborted; }));
  send_all(peer.get(), "late");
  // A new read is allowed after the abort, and sees the data.
  std::string got;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> d) {
      if (d.size() == 4) {
        w.notify([&] { got = text_of(d); });
        comm::async_io_state_finish(s, 4);
      }
    });
  });
  ASSERT_TRUE(w.wait([&] { return !got.empty(); }));
  EXPECT_EQ(got, "late");
  bool closed = false;
  in_loop([&] { comm::async_io_state_abort_and_close(*st, [&](comm::async_io_state& s) {
    w.notify([&] { closed = !s.is_open(); });
  }); });
  ASSERT_TRUE(w.wait([&] { return closed; }));
  EXPECT_EQ(recv_some(peer.get(), 1, 2000ms), "");  // the peer sees the close
}

TEST_F(state_fixture, ShutdownOutputWaitsForPendingWritesThenHalfCloses) {
  make();
  std::optional<std::error_code> result;
  in_loop([&] {
    comm::async_io_state_write_buffer(*st, std::string(300'000, 'q'), {});
    auto r = comm::async_io_state_shutdown(*st, comm::direction::output, false,
                                           [&](comm::async_io_state&, std::error_code ec) { w.notify([&] { result = ec; }); });
    EXPECT_FALSE(r.has_value());  // asynchronous: a write is pending
  });
  std::string got = recv_some(peer.get(), 400'000, 5000ms);  // until EOF
  EXPECT_EQ(got.size(), 300'000u);
  ASSERT_TRUE(w.wait([&] { return result.has_value(); }));
  EXPECT_FALSE(*result);
  // Input still works after the output shutdown.
  std::string in;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> d) {
      w.notify([&] { in = text_of(d); });
      comm::async_io_state_finish(s, d.size());
    });
  });
  send_all(peer.get(), "reply");
  ASSERT_TRUE(w.wait([&] { return !in.empty(); }));
  EXPECT_EQ(in, "reply");
}

TEST_F(state_fixture, CallbackExceptionIsReportedAndTheStateCarriesOn) {
  make();
  int calls = 0;
  in_loop([&] {
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> d) {
      comm::async_io_state_discard(s, d.size());
      w.notify([&] { ++calls; });
      throw std::runtime_error("bad callback");
    });
  });
  send_all(peer.get(), "1");
  ASSERT_TRUE(w.wait([&] { return calls == 1 && errors.size() == 1; }));
  send_all(peer.get(), "2");
  ASSERT_TRUE(w.wait([&] { return calls == 2 && errors.size() == 2; }));
  EXPECT_EQ(errors[0], "bad callback");
}

// Closing over input the user never read. Linux answers close() over unread data with a reset,
// which throws away the output that has not left yet: here most of it, since the peer's receive
// window is small and it reads nothing until the state is closed. The state drops the unread
// input and keeps the socket open, dropping what else arrives, until its bytes have left; the
// peer gets every byte and then a clean end of stream.
TEST_F(state_fixture, CloseOverUnreadInputDeliversEveryByteThenAnEnd) {
  auto [a, b] = tcp_pair({.their_receive_buffer = 4096, .our_send_buffer = 1 << 20});
  peer = std::move(b);
  send_all(peer.get(), "a request that is never read\n");
  pollfd p{a.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  const auto data = random_bytes(200000, 31);
  bool written = false;
  lt.call([&, s = std::make_shared<comm::socket_handle>(std::move(a))] {
    comm::async_io_state_options o;
    o.write_timeout = 5s;
    st = comm::create_async_io_state(*lt, std::move(*s), std::move(o));
    comm::async_io_state_write_buffer(*st, data, [&](comm::async_io_state& s, std::size_t) {
      comm::close_async_io_state(s);
      w.notify([&] { written = true; });
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return written; }));
  std::string got = recv_some(peer.get(), data.size() + 1, 10s);
  ASSERT_EQ(got.size(), data.size());
  EXPECT_EQ(sha256(got.data(), got.size()), sha256(data.data(), data.size()));
  char c;
  EXPECT_EQ(::recv(peer.get(), &c, 1, 0), 0) << "not a clean end: " << std::strerror(errno);
}

TEST_F(state_fixture, CreateFromASocketStreamKeepsItsBufferedInput) {
  auto [a, b] = tcp_pair();
  send_all(b.get(), "line one\nrest");
  comm::socket_stream stream(std::move(a));
  ASSERT_EQ(stream.read_line(), std::optional<std::string>("line one"));
  std::string got;
  lt.call([&] {
    st = comm::create_async_io_state(*lt, std::move(stream));
    comm::async_io_state_read_with_checking(*st, [&](comm::async_io_state& s, std::span<const std::byte> d) {
      if (d.size() >= 8) {
        w.notify([&] { got = text_of(d); });
        comm::async_io_state_finish(s, d.size());
      }
    });
    return 0;
  });
  send_all(b.get(), "+more");
  ASSERT_TRUE(w.wait([&] { return !got.empty(); }));
  EXPECT_EQ(got, "rest+more");
  EXPECT_FALSE(stream.is_open());
}
