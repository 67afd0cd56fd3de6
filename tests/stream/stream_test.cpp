// socket_stream over real loopback connections: data integrity, lines, iostream, timeouts, faults.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "peers/tcp_pair.hpp"
#include "stream/stream_helpers.hpp"

using namespace comm;
using namespace stream_test;

namespace {

// Sends `size` random bytes from client to server and back (an echo thread), comparing digests.
void round_trip(std::size_t size) {
  auto pair = connected_pair();  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  std::thread echo([&server] {
    std::vector<char> buf(64 * 1024);
    for (;;) {
      std::size_t n = server.read_some(buf.data(), buf.size());
      if (n == 0) break;
      server.write_all(buf.data(), n);
    }
    server.flush();
    socket_stream_shutdown(server, direction::output);
  });
  auto data = random_bytes(size, static_cast<unsigned>(size));
  std::thread writer([&] {
    // Mixed write sizes: small buffered writes, then one large write that bypasses the buffer.
    std::size_t off = 0;
    for (std::size_t chunk = 1; off < data.size() && chunk < 4096; chunk *= 2) {
      std::size_t n = std::min(chunk, data.size() - off);
      client.write_all(data.data() + off, n);
      off += n;
    }
    client.write_all(data.data() + off, data.size() - off);
    client.flush();
    socket_stream_shutdown(client, direction::output);
  });
  std::vector<char> got;
  got.reserve(size);
  std::vector<char> buf(100 * 1000);
  for (;;) {
    std::size_t n = client.read_some(buf.data(), buf.size());
    if (n == 0) break;
    got.insert(got.end(), buf.data(), buf.data() + n);
  }
  writer.join();
  echo.join();
  ASSERT_EQ(got.size(), size);
  EXPECT_EQ(sha256_hex(got.data(), got.size()), sha256_hex(data.data(), data.size()));
}

}  // namespace

TEST(SocketStream, RoundTripZeroBytes) { round_trip(0); }
TEST(SocketStream, RoundTripOneByte) { round_trip(1); }
TEST(SocketStream, RoundTripOneMiB) { round_trip(1 << 20); }
TEST(SocketStream, RoundTrip64MiB) { round_trip(64u << 20); }

TEST(SocketStream, ReadExactAcrossSmallBuffer) {
  auto [client, server] = connected_pair({.buffer_size = 7});
  auto data = random_bytes(1000);
  client.write_all(data.data(), data.size());
  client.flush();
  std::vector<char> got(1000);
  server.read_exact(got.data(), got.size());
  EXPECT_EQ(got, data);
  client.close();
  char c;
  try {
    server.read_exact(&c, 1);
    FAIL() << "no exception";
  } catch (const socket_io_error& e) {
    EXPECT_NE(std::string(e.what()).find("end of stream after 0 of 1 bytes"), std::string::npos) << e.what();
    EXPECT_EQ(e.connection(), &server);
  }
}

TEST(SocketStream, IostreamFormattedIO) {
  auto [client, server] = connected_pair();
  client << 42 << ' ' << 3.5 << " word " << std::hex << 255 << '\n' << std::flush;
  int i = 0;
  double d = 0;
  std::string w;
  int h = 0;
  server >> i >> d >> w >> std::hex >> h;
  EXPECT_TRUE(server.good());
  EXPECT_EQ(i, 42);
  EXPECT_EQ(d, 3.5);
  EXPECT_EQ(w, "word");
  EXPECT_EQ(h, 255);
  std::string rest;
  std::getline(server, rest);  // the newline after 255
  server << "line one\nline two\n" << std::flush;
  std::getline(client, rest);
  EXPECT_EQ(rest, "line one");
  std::getline(client, rest);
  EXPECT_EQ(rest, "line two");
  server.close();
  EXPECT_FALSE(std::getline(client, rest));
  EXPECT_TRUE(client.eof());
}

TEST(SocketStream, IostreamUnformattedIO) {
  auto [client, server] = connected_pair({.read_timeout = 5s, .write_timeout = 5s});
  check_unformatted_io(client, server);
}

TEST(SocketStream, IostreamErrorsSetBadbitOrRethrow) {
  auto [client, server] = connected_pair({.read_timeout = 50ms});
  int x = 0;
  server >> x;  // nothing comes: the timeout becomes badbit
  EXPECT_TRUE(server.bad());
  server.clear();
  server.exceptions(std::ios::badbit);
  EXPECT_THROW(server >> x, socket_timeout_error);
  server.clear();
  client << "7\n" << std::flush;
  server >> x;
  EXPECT_EQ(x, 7);
}

TEST(SocketStream, ReadLineLfCrlfAndFinalLineWithoutNewline) {
  auto [client, server] = connected_pair();
  client.write_all(std::string_view("first\nsecond\r\n\r\nlast"));
  client.close();
  EXPECT_EQ(server.read_line(), "first");
  EXPECT_EQ(server.read_line(), "second");
  EXPECT_EQ(server.read_line(), "");
  EXPECT_EQ(server.read_line(), "last");
  EXPECT_EQ(server.read_line(), std::nullopt);
}

TEST(SocketStream, ReadLineAcrossTinyBufferAndExactBound) {
  auto [client, server] = connected_pair({.buffer_size = 3, .max_line_length = 10});
  client.write_all(std::string_view("0123456789\r\nabc\n"));
  client.flush();
  EXPECT_EQ(server.read_line(), "0123456789");  // exactly the bound, CRLF not counted
  EXPECT_EQ(server.read_line(), "abc");
}

TEST(SocketStream, OverLongLineIsMessageSizeError) {
  auto [client, server] = connected_pair({.max_line_length = 100});
  std::string big(1000, 'x');
  client.write_all(big + "\n");
  client.flush();
  try {
    server.read_line();
    FAIL() << "no exception";
  } catch (const socket_io_error& e) {
    EXPECT_EQ(e.code(), std::errc::message_size);
    EXPECT_NE(std::string(e.what()).find("line longer than 100 bytes"), std::string::npos) << e.what();
  }
}

TEST(SocketStream, ReadTimeoutFiresWithinBoundAndStreamStaysUsable) {
  auto [client, server] = connected_pair({.read_timeout = 100ms});
  char buf[16];
  auto t0 = std::chrono::steady_clock::now();
  try {
    server.read_some(buf, sizeof buf);
    FAIL() << "no exception";
  } catch (const socket_timeout_error& e) {
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(e.code(), std::errc::timed_out);
    EXPECT_GE(took, 95ms);
    EXPECT_LT(took, 1s);
    std::string what = e.what();
    EXPECT_NE(what.find("read from 127.0.0.1:"), std::string::npos) << what;
    EXPECT_NE(what.find("timed out after 100 ms"), std::string::npos) << what;
  }
  // A partial line survives a timeout in read_line.
  client.write_all(std::string_view("hel"));
  client.flush();
  EXPECT_THROW(server.read_line(), socket_timeout_error);
  client.write_all(std::string_view("lo\n"));
  client.flush();
  EXPECT_EQ(server.read_line(), "hello");
  EXPECT_EQ(server.read_timeout(), 100ms);
  server.set_read_timeout(std::nullopt);
  EXPECT_EQ(server.read_timeout(), std::nullopt);
}

TEST(SocketStream, WriteTimeoutWhenPeerDoesNotRead) {
  auto [client, server] = connected_pair({.write_timeout = 100ms});
  std::vector<char> chunk(1 << 20, 'z');
  auto t0 = std::chrono::steady_clock::now();
  bool timed_out = false;
  for (int i = 0; i < 256 && !timed_out; ++i) {  // at most 256 MiB: far beyond any socket buffer
    try {
      client.write_all(chunk.data(), chunk.size());
    } catch (const socket_timeout_error& e) {
      timed_out = true;
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
  }
  EXPECT_TRUE(timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
}

TEST(SocketStream, PeerResetMidReadIsIoErrorNamingPeer) {
  auto pair = connected_pair({.read_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  server.write_all(std::string_view("0123456789"));
  server.flush();
  char buf[10];
  client.read_exact(buf, 10);
  std::string peer = client.peer_endpoint()->to_string();
  std::thread resetter([&server] {
    linger l{1, 0};  // close with RST
    ::setsockopt(server.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    server.close();
  });
  try {
    client.read_some(buf, sizeof buf);
    ADD_FAILURE() << "no exception";
  } catch (const socket_timeout_error& e) {
    ADD_FAILURE() << "timed out: " << e.what();
  } catch (const socket_io_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_reset);
    EXPECT_NE(std::string(e.what()).find(peer), std::string::npos) << e.what();
  }
  resetter.join();
}

TEST(SocketStream, WriteAfterOutputShutdownIsError) {
  auto [client, server] = connected_pair();
  client.write_all(std::string_view("bye"));
  socket_stream_shutdown(client, direction::output);  // flushes first
  EXPECT_THROW(client.write_all(std::string_view("more")), socket_io_error);
  char buf[8];
  std::size_t n = server.read_some(buf, sizeof buf);
  EXPECT_EQ(std::string(buf, n), "bye");
  EXPECT_EQ(server.read_some(buf, sizeof buf), 0u);  // EOF after the half-close
  // The other direction still works.
  server.write_all(std::string_view("reply"));
  server.flush();
  EXPECT_EQ(client.read_some(buf, sizeof buf), 5u);
}

TEST(SocketStream, InputShutdownKeepsBufferedInputThenErrors) {
  auto [client, server] = connected_pair();
  client.write_all(std::string_view("ab"));
  client.flush();
  char c;
  server.read_exact(&c, 1);  // "b" is now buffered
  socket_stream_shutdown(server, direction::input);
  server.read_exact(&c, 1);
  EXPECT_EQ(c, 'b');
  EXPECT_THROW(server.read_some(&c, 1), socket_io_error);
}

TEST(SocketStream, AbortShutdownDiscardsBufferedOutput) {
  auto [client, server] = connected_pair();
  client.write_all(std::string_view("never sent"));
  socket_stream_shutdown(client, direction::output, true);
  char buf[16];
  EXPECT_EQ(server.read_some(buf, sizeof buf), 0u);
}

TEST(SocketStream, CloseFlushesIsIdempotentAndReleasesDescriptor) {
  int before = open_fd_count();
  {
    auto [client, server] = connected_pair();
    EXPECT_EQ(open_fd_count(), before + 2);
    client.write_all(std::string_view("flushed by close"));
    client.close();
    client.close();
    EXPECT_FALSE(client.is_open());
    EXPECT_EQ(client.native_handle(), -1);
    EXPECT_EQ(server.read_line(), "flushed by close");
    EXPECT_THROW(client.write_all(std::string_view("x")), socket_io_error);
  }
  EXPECT_EQ(open_fd_count(), before);
}

// Closing over input the user never read. Linux answers close() over unread data with a reset,
// which throws away the output that has not left yet: here most of it, since the peer's receive
// window is small and it reads nothing until close() returns. close() drops the unread input
// first and, the peer having been seen writing, waits (up to the write timeout, as the peer reads
// nothing) for the bytes to leave; the peer then gets every byte and a clean end of stream.
TEST(SocketStream, CloseOverUnreadInputDeliversEveryByteThenAnEnd) {
  auto [ours, theirs] = comm_test::tcp_pair({.their_receive_buffer = 4096, .our_send_buffer = 1 << 20});
  const std::string request = "a request that is never read\n";
  ASSERT_EQ(::send(theirs.get(), request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  socket_stream s(std::move(ours), {.write_timeout = 300ms});
  pollfd p{s.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  const auto data = random_bytes(200000, 31);
  s.write_all(data.data(), data.size());
  s.close();
  std::string got;
  char buf[65536];
  ssize_t n = 0;
  timeval tv{10, 0};
  ASSERT_EQ(::setsockopt(theirs.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  while ((n = ::recv(theirs.get(), buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<std::size_t>(n));
  EXPECT_EQ(n, 0) << "not a clean end: " << std::strerror(errno);
  ASSERT_EQ(got.size(), data.size());
  EXPECT_EQ(sha256_hex(got.data(), got.size()), sha256_hex(data.data(), data.size()));
}

TEST(SocketStream, MoveKeepsConnectionAndEmptiesSource) {
  auto [client, server] = connected_pair();
  client.write_all(std::string_view("before move\n"));
  socket_stream moved(std::move(client));
  EXPECT_FALSE(client.is_open());
  EXPECT_EQ(client.native_handle(), -1);
  EXPECT_THROW(client.read_line(), socket_io_error);
  client << "into a moved-from stream" << std::flush;  // no buffer: badbit, no crash
  EXPECT_TRUE(client.bad());
  moved << "after move" << std::endl;
  EXPECT_EQ(server.read_line(), "before move");
  EXPECT_EQ(server.read_line(), "after move");

  auto [c2, s2] = connected_pair();
  c2 = std::move(moved);  // c2's own connection is closed, it takes over moved's
  EXPECT_EQ(s2.read_line(), std::nullopt);
  c2 << "assigned" << std::endl;
  EXPECT_EQ(server.read_line(), "assigned");
  server << "to the new owner\n" << std::flush;
  std::string line;
  std::getline(c2, line);
  EXPECT_EQ(line, "to the new owner");
  socket_stream empty;
  EXPECT_FALSE(empty.is_open());
  EXPECT_THROW(empty.read_line(), socket_io_error);
}

TEST(SocketStream, ReplaceSocketReturnsOldOneUnclosed) {
  auto [a_client, a_server] = connected_pair();
  auto [b_client, b_server] = connected_pair();
  int b_fd = b_client.native_handle();
  socket_handle b_socket = replace_socket_stream_socket(b_client, socket_handle{});
  EXPECT_EQ(b_socket.get(), b_fd);
  EXPECT_FALSE(b_client.is_open());
  socket_handle old = replace_socket_stream_socket(a_client, std::move(b_socket));
  ASSERT_TRUE(old);
  EXPECT_FALSE(::fcntl(old.get(), F_GETFL) & O_NONBLOCK);  // handed back blocking
  a_client.write_all(std::string_view("via b\n"));
  a_client.flush();
  EXPECT_EQ(b_server.read_line(), "via b");
  ASSERT_EQ(::send(old.get(), "via a\n", 6, 0), 6);  // the old socket still works
  EXPECT_EQ(a_server.read_line(), "via a");
}

TEST(SocketStream, LocalAndPeerEndpoints) {
  auto [client, server] = connected_pair();
  EXPECT_EQ(client.local_endpoint(), server.peer_endpoint());
  EXPECT_EQ(client.peer_endpoint(), server.local_endpoint());
  EXPECT_FALSE(client.is_ssl());
  EXPECT_EQ(client.tls_engine_(), nullptr);
}

TEST(WaitForInputStreams, TimeoutSocketDataAndBufferedData) {
  auto [c1, s1] = connected_pair();
  auto [c2, s2] = connected_pair();
  auto [c3, s3] = connected_pair();
  std::vector<socket_stream*> all{&s1, &s2, &s3};
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(wait_for_input_streams(all, 50ms).empty());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 45ms);
  EXPECT_TRUE(wait_for_input_streams(all, 0ms).empty());

  c2.write_all(std::string_view("xy"));
  c2.flush();
  EXPECT_EQ(wait_for_input_streams(all, 5s), std::vector<socket_stream*>{&s2});
  char c;
  s2.read_exact(&c, 1);  // "y" stays in s2's buffer, nothing in its socket
  c3.close();            // end of stream counts as ready
  auto ready = wait_for_input_streams(all, 5s);
  EXPECT_EQ(ready, (std::vector<socket_stream*>{&s2, &s3}));
  EXPECT_GT(s2.buffered_input(), 0u);
}

TEST(OpenTcpStream, RefusedIsConnectErrorNamingHostAndPort) {
  std::string port = std::to_string(tcp_listener::open("0", {.address = "127.0.0.1"}).local_port());
  try {
    open_tcp_stream("127.0.0.1", port);
    FAIL() << "no exception";
  } catch (const socket_connect_error& e) {
    EXPECT_EQ(std::string(e.what()), "connect to 127.0.0.1:" + port + ": Connection refused");
  }
  auto r = try_open_tcp_stream("127.0.0.1", port);
  ASSERT_FALSE(r);
  ASSERT_NE(r.error_as<socket_connect_error>(), nullptr);
  EXPECT_EQ(r.error_code(), std::errc::connection_refused);
}

TEST(OpenTcpStream, UnknownHostErrorNamesHost) {
  auto r = try_open_tcp_stream("nosuchhost.invalid", "80");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error_message().find("nosuchhost.invalid"), std::string::npos) << r.error_message();
  EXPECT_NE(r.error_as<socket_connect_error>(), nullptr);
}

TEST(OpenTcpStream, IPv6LoopbackWithOptions) {
  auto l = tcp_listener::open("0", {.address = "::1"});
  auto s = open_tcp_stream("::1", std::to_string(l.local_port()),
                           {.read_timeout = 2s, .local_address = "::1", .family = address_family::ipv6});
  auto peer = l.accept(5s);
  ASSERT_TRUE(peer);
  socket_stream server(std::move(*peer));
  EXPECT_EQ(s.peer_endpoint()->address, ip_address::loopback_v6());
  EXPECT_EQ(s.read_timeout(), 2s);
  s << "over v6" << std::endl;
  EXPECT_EQ(server.read_line(), "over v6");
}
