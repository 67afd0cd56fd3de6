// Connecting, listening, socket options on real loopback sockets.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "comm/net.hpp"

using namespace comm;
using namespace std::chrono_literals;

namespace {

int int_option(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(::getsockopt(fd, level, name, &v, &len), 0);
  return v;
}

// A port on which nothing listens (bound once, then closed).
std::uint16_t closed_port() {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  return l.local_port();
}

}  // namespace

TEST(Listener, EphemeralPortConnectAndAddresses) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  std::uint16_t port = l.local_port();
  ASSERT_NE(port, 0);
  EXPECT_EQ(l.local_endpoint(), (endpoint{ip_address::loopback_v4(), port}));
  socket_handle c = connect_to_tcp_server("127.0.0.1", std::to_string(port));
  ASSERT_TRUE(c);
  auto s = l.accept(2s);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(get_socket_peer_address(c.get()), (endpoint{ip_address::loopback_v4(), port}));
  EXPECT_EQ(get_socket_address(c.get()), get_socket_peer_address(s->get()));
  EXPECT_EQ(get_socket_address(s->get()), get_socket_peer_address(c.get()));
  EXPECT_FALSE(get_socket_peer_address(l.native_handle()).has_value());
  EXPECT_FALSE(get_socket_address(-1).has_value());
}

TEST(Listener, DescriptorsAreCloexecAndConnectedOnesBlocking) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1", .keepalive = true});
  socket_handle c = connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port()));
  auto s = l.accept(2s);
  ASSERT_TRUE(s);
  for (int fd : {l.native_handle(), c.get(), s->get()}) EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  EXPECT_FALSE(::fcntl(c.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_FALSE(::fcntl(s->get(), F_GETFL) & O_NONBLOCK);
  // nodelay is on by default on both ends; keepalive where asked.
  EXPECT_NE(int_option(c.get(), IPPROTO_TCP, TCP_NODELAY), 0);
  EXPECT_NE(int_option(s->get(), IPPROTO_TCP, TCP_NODELAY), 0);
  EXPECT_EQ(int_option(c.get(), SOL_SOCKET, SO_KEEPALIVE), 0);
  EXPECT_NE(int_option(s->get(), SOL_SOCKET, SO_KEEPALIVE), 0);
  EXPECT_NE(int_option(l.native_handle(), SOL_SOCKET, SO_REUSEADDR), 0);
}

TEST(Listener, AcceptTimesOutWithinBound) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(l.accept(100ms).has_value());
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 95ms);
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(l.accept(0ms).has_value());
}

TEST(Listener, DualStackByDefault) {
  auto l = tcp_listener::open("0");
  EXPECT_TRUE(l.local_endpoint().address.is_unspecified());
  std::string port = std::to_string(l.local_port());
  socket_handle c4 = connect_to_tcp_server("127.0.0.1", port);
  auto s4 = l.accept(2s);
  ASSERT_TRUE(s4);
  EXPECT_EQ(get_socket_peer_address(s4->get())->address, ip_address::loopback_v4());  // not ::ffff:127.0.0.1
  socket_handle c6 = connect_to_tcp_server("::1", port);
  auto s6 = l.accept(2s);
  ASSERT_TRUE(s6);
  EXPECT_EQ(get_socket_peer_address(s6->get())->address, ip_address::loopback_v6());
}

TEST(Listener, IPv6Loopback) {
  auto l = tcp_listener::open("0", {.address = "::1"});
  EXPECT_EQ(l.local_endpoint().address, ip_address::loopback_v6());
  socket_handle c = connect_to_tcp_server("::1", std::to_string(l.local_port()), {.family = address_family::ipv6});
  auto s = l.accept(2s);
  ASSERT_TRUE(s);
  EXPECT_EQ(get_socket_address(c.get())->address, ip_address::loopback_v6());
  EXPECT_EQ(get_socket_peer_address(c.get())->to_string(), "[::1]:" + std::to_string(l.local_port()));
}

TEST(Listener, PortInUseIsCreateErrorNamingAddress) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  std::string port = std::to_string(l.local_port());
  try {
    tcp_listener::open(port, {.address = "127.0.0.1", .reuseaddr = false});
    FAIL() << "no exception";
  } catch (const socket_create_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_in_use);
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + port), std::string::npos) << e.what();
  }
}

TEST(Listener, ReusePortLetsTwoListenersShareAPort) {
  auto a = tcp_listener::open("0", {.address = "127.0.0.1", .reuseport = true});
  auto b = tcp_listener::open(std::to_string(a.local_port()), {.address = "127.0.0.1", .reuseport = true});
  EXPECT_EQ(a.local_port(), b.local_port());
}

TEST(Connect, RefusedNamesHostAndPort) {
  std::string port = std::to_string(closed_port());
  try {
    connect_to_tcp_server("127.0.0.1", port);
    FAIL() << "no exception";
  } catch (const socket_connect_error& e) {
    EXPECT_EQ(e.code(), std::errc::connection_refused);
    EXPECT_EQ(std::string(e.what()), "connect to 127.0.0.1:" + port + ": Connection refused");
    EXPECT_EQ(e.connection(), nullptr);
  }
}

TEST(Connect, UnknownHostNamesHost) {
  try {
    connect_to_tcp_server("nosuchhost.invalid", "80");
    FAIL() << "no exception";
  } catch (const socket_connect_error& e) {
    EXPECT_NE(std::string(e.what()).find("nosuchhost.invalid"), std::string::npos) << e.what();
  }
}

TEST(Connect, LocalBindChoosesSourceAddressAndPort) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  std::uint16_t local_port = closed_port();
  socket_handle c = connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port()),
                                          {.local_address = "127.0.0.1", .local_port = std::to_string(local_port)});
  auto s = l.accept(2s);
  ASSERT_TRUE(s);
  EXPECT_EQ(get_socket_peer_address(s->get()), (endpoint{ip_address::loopback_v4(), local_port}));
}

TEST(Connect, LocalBindFailureIsCreateError) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  // 192.0.2.1 (TEST-NET-1) is not an address of this host: bind fails before any packet is sent.
  EXPECT_THROW(connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port()), {.local_address = "192.0.2.1"}),
               socket_create_error);
}

// A connection from a local port of one's choice that the client closed first leaves that port in
// TIME_WAIT for a minute. Connecting from it again (to another server) works: comm binds a chosen
// port with SO_REUSEADDR, which Linux honours when the earlier socket had it too.
TEST(Connect, AChosenLocalPortInTimeWaitServesTheNextConnect) {
  auto first = tcp_listener::open("0", {.address = "127.0.0.1"});
  auto second = tcp_listener::open("0", {.address = "127.0.0.1"});
  const std::uint16_t local_port = closed_port();
  const connect_options from{.local_address = "127.0.0.1", .local_port = std::to_string(local_port)};
  {
    socket_handle c = connect_to_tcp_server("127.0.0.1", std::to_string(first.local_port()), from);
    auto s = first.accept(2s);
    ASSERT_TRUE(s);
    c.reset();  // the client closes first: its end goes to TIME_WAIT once the server's FIN comes
    char b;
    ASSERT_EQ(::recv(s->get(), &b, 1, 0), 0);
  }
  socket_handle again = connect_to_tcp_server("127.0.0.1", std::to_string(second.local_port()), from);
  auto s = second.accept(2s);
  ASSERT_TRUE(s);
  EXPECT_EQ(get_socket_peer_address(s->get()), (endpoint{ip_address::loopback_v4(), local_port}));
}

// A local address of the other family than every address of the host: each is skipped, and the
// error names why.
TEST(Connect, ALocalAddressOfTheOtherFamilyIsAConnectErrorNamingIt) {
  auto l = tcp_listener::open("0", {.address = "::1"});
  const std::string port = std::to_string(l.local_port());
  try {
    connect_to_tcp_server("::1", port, {.local_address = "127.0.0.1"});
    FAIL() << "no exception";
  } catch (const socket_connect_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_family_not_supported);
    EXPECT_EQ(std::string(e.what()).rfind("connect to [::1]:" + port + ": local address 127.0.0.1 has no address of "
                                          "the family of [::1]:" + port, 0), 0u) << e.what();
  }
}

TEST(Connect, KeepaliveAndNodelayOptions) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  socket_handle c = connect_to_tcp_server("localhost", std::to_string(l.local_port()),
                                          {.nodelay = false, .keepalive = true, .family = address_family::ipv4});
  EXPECT_EQ(int_option(c.get(), IPPROTO_TCP, TCP_NODELAY), 0);
  EXPECT_NE(int_option(c.get(), SOL_SOCKET, SO_KEEPALIVE), 0);
}

TEST(Connect, TimeoutAgainstAFullBacklog) {
  // A listener that never accepts, with backlog 0: once its queue is full the kernel drops further
  // SYNs, so a connect neither succeeds nor fails until our timeout.
  auto l = tcp_listener::open("0", {.address = "127.0.0.1", .backlog = 0});
  std::string port = std::to_string(l.local_port());
  std::vector<socket_handle> fillers;
  bool full = false;
  for (int i = 0; i < 16 && !full; ++i) {
    try {
      fillers.push_back(connect_to_tcp_server("127.0.0.1", port, {.timeout = 200ms}));
    } catch (const socket_connect_error& e) {
      ASSERT_EQ(e.code(), std::errc::timed_out) << e.what();
      full = true;
    }
  }
  ASSERT_TRUE(full) << "backlog never filled";
  auto t0 = std::chrono::steady_clock::now();
  try {
    connect_to_tcp_server("127.0.0.1", port, {.timeout = 150ms});
    FAIL() << "connected";
  } catch (const socket_connect_error& e) {
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(e.code(), std::errc::timed_out);
    EXPECT_EQ(std::string(e.what()), "connect to 127.0.0.1:" + port + ": timed out after 150 ms: Connection timed out");
    EXPECT_GE(took, 140ms);
    EXPECT_LT(took, 1500ms);
  }
}

TEST(SocketOptions, NonblockingToggles) {
  auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
  socket_handle c = connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port()));
  set_nonblocking(c.get(), true);
  EXPECT_TRUE(::fcntl(c.get(), F_GETFL) & O_NONBLOCK);
  set_nonblocking(c.get(), false);
  EXPECT_FALSE(::fcntl(c.get(), F_GETFL) & O_NONBLOCK);
  EXPECT_THROW(set_nodelay(-1, true), socket_create_error);
}

TEST(SocketHandle, ResetClosesAndReleaseKeeps) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  {
    socket_handle a(fds[0]);
    socket_handle b(std::move(a));
    EXPECT_FALSE(a.is_open());
    EXPECT_EQ(b.get(), fds[0]);
  }
  EXPECT_EQ(::fcntl(fds[0], F_GETFD), -1);  // closed by the handle
  socket_handle c(fds[1]);
  int raw = c.release();
  EXPECT_FALSE(c);
  EXPECT_NE(::fcntl(raw, F_GETFD), -1);
  ::close(raw);
}
