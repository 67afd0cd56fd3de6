// Connecting and accepting on a collection: errors, timeouts, limits, and a 1,000-client echo.
#include <fcntl.h>

#include <atomic>
#include <map>

#include "async_helpers.hpp"
#include "echo_helpers.hpp"

using namespace async_test;

TEST(AsyncConnect, RefusedConnectionGivesSocketConnectErrorNamingHostAndPort) {
  loop_thread lt;
  // A port with nothing listening: bind, read the port, close.
  std::uint16_t port;
  {
    auto l = comm::tcp_listener::open("0", {});
    port = l.local_port();
  }
  waiter w;
  std::string what;
  bool called = false, inside_call = true;
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "127.0.0.1", std::to_string(port), [&](comm::async_io_state* s, std::exception_ptr e) {
          EXPECT_EQ(s, nullptr);
          EXPECT_FALSE(inside_call);
          try {
            std::rethrow_exception(e);
          } catch (const comm::socket_connect_error& x) {
            what = x.what();
            EXPECT_EQ(x.code(), std::errc::connection_refused);
          }
          EXPECT_EQ(comm::ssl_failure_indicator(e), comm::ssl_failure_kind::not_tls);
          w.notify([&] { called = true; });
        });
    inside_call = false;
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return called; }));
  EXPECT_EQ(what, "connect to 127.0.0.1:" + std::to_string(port) + ": Connection refused");
}

TEST(AsyncConnect, UnknownHostGivesAnErrorNamingTheHost) {
  loop_thread lt;
  waiter w;
  std::string what;
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "no-such-host.invalid", "80", [&](comm::async_io_state* s, std::exception_ptr e) {
          EXPECT_EQ(s, nullptr);
          try {
            std::rethrow_exception(e);
          } catch (const comm::socket_connect_error& x) {
            w.notify([&] { what = x.what(); });
          }
        });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return !what.empty(); }));
  EXPECT_NE(what.find("no-such-host.invalid"), std::string::npos) << what;
}

TEST(AsyncConnect, ConnectTimeoutFiresWithinItsBound) {
  // A listener with a full backlog that never accepts: further SYNs go unanswered.
  int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::listen(l, 0);
  socklen_t len = sizeof sa;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &len);
  std::uint16_t port = ntohs(sa.sin_port);
  auto filler = raw_connect(port);
  loop_thread lt;
  waiter w;
  std::string what;
  auto t0 = clock::now();
  clock::duration took{};
  lt.call([&] {
    comm::async_connect_options o;
    o.connect_timeout = 200ms;
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "127.0.0.1", std::to_string(port),
        [&](comm::async_io_state* s, std::exception_ptr e) {
          EXPECT_EQ(s, nullptr);
          try {
            std::rethrow_exception(e);
          } catch (const comm::socket_connect_error& x) {
            EXPECT_EQ(x.code(), std::errc::timed_out);
            what = x.what();
          }
          w.notify([&] { took = clock::now() - t0; });
        },
        std::move(o));
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return took != clock::duration{}; }));
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(what.rfind("connect to 127.0.0.1:" + std::to_string(port) + ": timed out after 200 ms", 0), 0u) << what;
  ::close(l);
}

namespace {

// Connects on lt's loop with options o; the state (kept open) or the error.
struct connect_outcome {
  std::optional<comm::endpoint> local;  // the client socket's own address
  std::exception_ptr error;
  bool done = false;
};
connect_outcome connect_with(loop_thread& lt, const std::string& host, std::uint16_t port,
                             comm::async_connect_options o) {
  waiter w;
  connect_outcome out;
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, host, std::to_string(port),
        [&](comm::async_io_state* s, std::exception_ptr e) {
          auto local = s ? comm::get_socket_address(s->native_handle()) : std::nullopt;
          w.notify([&] { out.local = local, out.error = e, out.done = true; });
        },
        std::move(o));
    return 0;
  });
  EXPECT_TRUE(w.wait([&] { return out.done; }));
  return out;
}

// An acceptor on host (an ephemeral port) that records the peer address of the state it accepts.
std::shared_ptr<comm::accepting_handle> recording_acceptor(loop_thread& lt, const std::string& host, waiter& w,
                                                           std::optional<comm::endpoint>& server_sees) {
  return lt.call([&] {
    comm::accept_options o;
    o.address = host;
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0",
        [&](comm::accepting_handle&, comm::async_io_state& s) { w.notify([&] { server_sees = s.peer_address(); }); },
        o);
  });
}

std::uint16_t free_port(const std::string& host) { return comm::tcp_listener::open("0", {.address = host}).local_port(); }

}  // namespace

// Each side's state names the other end, on IPv4 and IPv6: the client's state the address it
// connected to, the server's state the client's own address and port. (comm reads these from the
// connect and accept calls themselves, not by asking the socket again.)
TEST(AsyncConnect, ConnectedAndAcceptedStatesNameTheirPeers) {
  for (const std::string host : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(host);
    loop_thread lt;
    waiter w;
    std::optional<comm::endpoint> server_sees, client_sees, client_local;
    auto h = recording_acceptor(lt, host, w, server_sees);
    const std::uint16_t port = h->local_port();
    std::string failure;
    lt.call([&] {
      comm::create_async_io_state_and_connected_tcp_socket(
          *lt, host, std::to_string(port), [&](comm::async_io_state* s, std::exception_ptr e) {
            if (e) return w.notify([&] { failure = "connect failed"; });
            auto local = comm::get_socket_address(s->native_handle());
            w.notify([&] { client_sees = s->peer_address(), client_local = local; });
          });
      return 0;
    });
    ASSERT_TRUE(w.wait([&] { return !failure.empty() || (server_sees && client_sees); })) << failure;
    ASSERT_EQ(failure, "");
    const comm::endpoint expected{comm::ip_address::parse(host), port};
    EXPECT_EQ(client_sees->to_string(), expected.to_string());
    ASSERT_TRUE(client_local.has_value());
    EXPECT_NE(client_local->port, 0);
    EXPECT_EQ(server_sees->to_string(), client_local->to_string());
  }
}


// A local address and port of one's choice: the server sees the client come from exactly there.
TEST(AsyncConnect, BindsToTheLocalAddressAndPortGiven) {
  for (const std::string host : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(host);
    loop_thread lt;
    waiter w;
    std::optional<comm::endpoint> server_sees;
    auto h = recording_acceptor(lt, host, w, server_sees);
    const std::uint16_t local_port = free_port(host);
    comm::async_connect_options o;
    o.local_address = host;
    o.local_port = std::to_string(local_port);
    connect_outcome c = connect_with(lt, host, h->local_port(), o);
    ASSERT_FALSE(c.error);
    const comm::endpoint expected{comm::ip_address::parse(host), local_port};
    ASSERT_TRUE(c.local.has_value());
    EXPECT_EQ(c.local->to_string(), expected.to_string());
    ASSERT_TRUE(w.wait([&] { return server_sees.has_value(); }));
    EXPECT_EQ(server_sees->to_string(), expected.to_string());
  }
}

// As with the blocking connect: an address of the host that the local address has no family for
// is skipped, and with none left the error names why (not a failed bind).
TEST(AsyncConnect, ALocalAddressOfTheOtherFamilyIsAConnectErrorNamingIt) {
  loop_thread lt;
  auto l = comm::tcp_listener::open("0", {.address = "::1"});
  const std::string port = std::to_string(l.local_port());
  comm::async_connect_options o;
  o.local_address = "127.0.0.1";
  connect_outcome c = connect_with(lt, "::1", l.local_port(), o);
  ASSERT_TRUE(c.error);
  try {
    std::rethrow_exception(c.error);
  } catch (const comm::socket_connect_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_family_not_supported);
    EXPECT_EQ(std::string(e.what()).rfind("connect to [::1]:" + port + ": local address 127.0.0.1 has no address of "
                                          "the family of [::1]:" + port, 0), 0u) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a socket_connect_error: " << e.what();
  }
}

// Errors name the peer as the blocking connect's do, an IPv6 literal in one pair of brackets
// whether it came bracketed or not: the refusal, and the bind of a local port in use.
TEST(AsyncConnect, ErrorsNameThePeerAsGiven) {
  loop_thread lt;
  auto probe = comm::tcp_listener::open("0", {.address = "::1"});
  const std::uint16_t port = probe.local_port();
  probe = comm::tcp_listener();  // nothing listens there now
  auto holder = comm::tcp_listener::open("0", {.address = "::1"});
  const std::string held = std::to_string(holder.local_port());
  comm::async_connect_options bind_held;
  bind_held.local_address = "::1";
  bind_held.local_port = held;
  for (const std::string host : {"[::1]", "::1"}) {
    connect_outcome refused = connect_with(lt, host, port, {});
    connect_outcome unbound = connect_with(lt, host, port, bind_held);
    try {
      std::rethrow_exception(refused.error);
    } catch (const comm::socket_connect_error& e) {
      EXPECT_EQ(std::string(e.what()), "connect to [::1]:" + std::to_string(port) + ": Connection refused");
    }
    try {
      std::rethrow_exception(unbound.error);
    } catch (const comm::socket_create_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("bind to [::1]:" + held + " for connect to [::1]:" + std::to_string(port), 0),
                0u)
          << e.what();
    }
  }
}

// A local port that a listener holds cannot be bound: a socket_create_error naming the bind.
TEST(AsyncConnect, ALocalPortInUseIsACreateErrorNamingTheBind) {
  loop_thread lt;
  auto server = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  auto holder = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  comm::async_connect_options o;
  o.local_address = "127.0.0.1";
  o.local_port = std::to_string(holder.local_port());
  connect_outcome c = connect_with(lt, "127.0.0.1", server.local_port(), o);
  ASSERT_TRUE(c.error);
  try {
    std::rethrow_exception(c.error);
  } catch (const comm::socket_create_error& e) {
    EXPECT_EQ(e.code(), std::errc::address_in_use);
    EXPECT_EQ(std::string(e.what()).rfind("bind to 127.0.0.1:" + o.local_port + " for connect to 127.0.0.1:" +
                                              std::to_string(server.local_port()), 0),
              0u)
        << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a socket_create_error: " << e.what();
  }
}

TEST(AsyncAccept, InitFunctionSeesThePortAndClosingFreesIt) {
  loop_thread lt;
  std::uint16_t seen_port = 0;
  int seen_fd = -1;
  auto h = lt.call([&] {
    comm::accept_options o;
    o.init_function = [&](int fd, std::uint16_t port) {
      seen_fd = fd;
      seen_port = port;
    };
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0", [](comm::accepting_handle&, comm::async_io_state&) {}, std::move(o));
  });
  EXPECT_NE(seen_port, 0);
  EXPECT_EQ(seen_port, h->local_port());
  EXPECT_EQ(seen_fd, h->native_handle());
  waiter w;
  bool closed = false;
  lt.call([&] {
    comm::close_accepting_handle(*h, [&](comm::wait_state_collection&) { w.notify([&] { closed = true; }); });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return closed; }));
  EXPECT_FALSE(h->is_open());
  // The port is free again.
  comm::listen_options lo;
  EXPECT_NO_THROW(comm::tcp_listener::open(std::to_string(seen_port), lo));
}

TEST(AsyncAccept, BusyPortIsASocketCreateErrorAtTheCall) {
  loop_thread lt;
  auto busy = comm::tcp_listener::open("0", {});
  comm::accept_options o;
  o.address = "127.0.0.1";
  EXPECT_THROW(lt.call([&] {
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, std::to_string(busy.local_port()), [](comm::accepting_handle&, comm::async_io_state&) {}, o);
  }),
               comm::socket_create_error);
}

TEST(AsyncAccept, WithoutCreateStateTheCallbackGetsTheBlockingSocket) {
  loop_thread lt;
  waiter w;
  comm::socket_handle got;
  auto h = lt.call([&] {
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0", comm::accept_socket_callback([&](comm::accepting_handle&, comm::socket_handle s) {
          w.notify([&] { got = std::move(s); });
        }));
  });
  auto client = raw_connect(h->local_port());
  ASSERT_TRUE(w.wait([&] { return got.is_open(); }));
  // Blocking, usable with a socket_stream.
  comm::socket_stream stream(std::move(got));
  send_all(client.get(), "hello\n");
  EXPECT_EQ(stream.read_line(), std::optional<std::string>("hello"));
  EXPECT_EQ(lt.call([&] { return h->connections(); }), 0u);
}

TEST(AsyncAccept, MaxConnectionsClosesTheExtraClientsAtOnce) {
  loop_thread lt;
  waiter w;
  int accepted = 0;
  auto h = lt.call([&] {
    comm::accept_options o;
    o.max_connections = 2;
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0", [&](comm::accepting_handle&, comm::async_io_state&) { w.notify([&] { ++accepted; }); }, o);
  });
  auto c1 = raw_connect(h->local_port());
  auto c2 = raw_connect(h->local_port());
  ASSERT_TRUE(w.wait([&] { return accepted == 2; }));
  auto c3 = raw_connect(h->local_port());
  EXPECT_EQ(recv_some(c3.get(), 1, 3000ms), "");  // closed by the server
  EXPECT_EQ(lt.call([&] { return h->connections(); }), 2u);
  EXPECT_EQ(accepted, 2);
}

// Lowers the soft descriptor limit to the lowest free descriptor number, so that no descriptor can
// be made until the destructor puts the limit back.
struct no_free_descriptors {
  rlimit saved{};
  no_free_descriptors() {
    ::getrlimit(RLIMIT_NOFILE, &saved);
    int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (lowest < 0) throw std::runtime_error("open /dev/null");
    ::close(lowest);
    rlimit now = saved;
    now.rlim_cur = static_cast<rlim_t>(lowest);
    if (::setrlimit(RLIMIT_NOFILE, &now) != 0) throw std::runtime_error("setrlimit");
  }
  ~no_free_descriptors() { ::setrlimit(RLIMIT_NOFILE, &saved); }
  no_free_descriptors(const no_free_descriptors&) = delete;
  no_free_descriptors& operator=(const no_free_descriptors&) = delete;
};

// Out of descriptors (EMFILE), the acceptor does not spin on its readable listener: it stops
// listening, reports the error once to the collection's handler, and 100 ms later listens again
// and accepts the client that waited.
TEST(AsyncAccept, OutOfDescriptorsPausesAcceptingReportsOnceAndResumes) {
  waiter w;
  std::vector<std::exception_ptr> reports;  // looked at once descriptors are free again
  loop_thread lt("emfile", [&](std::exception_ptr e) { w.notify([&] { reports.push_back(e); }); });
  int accepted = 0;
  auto h = lt.call([&] {
    comm::accept_options o;
    o.address = "127.0.0.1";
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0", [&](comm::accepting_handle&, comm::async_io_state&) { w.notify([&] { ++accepted; }); }, o);
  });
  const std::uint16_t port = h->local_port();
  comm::socket_handle client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));  // made while it can be
  ASSERT_TRUE(client.is_open());
  // UndefinedBehaviorSanitizer checks the target of a virtual call by making a pipe the first time
  // it meets the call's pair of types, which it cannot do without a free descriptor. The library's
  // error path asks the error category for its message: that call is made once before.
  EXPECT_EQ(std::error_code(EMFILE, std::generic_category()).message(), std::strerror(EMFILE));
  {
    no_free_descriptors limit;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << std::strerror(errno);
    ASSERT_TRUE(w.wait([&] { return !reports.empty(); }, 5000ms));
    EXPECT_EQ(accepted, 0);
  }
  ASSERT_TRUE(w.wait([&] { return accepted == 1; }, 5000ms));
  std::lock_guard lock(w.mutex());
  ASSERT_EQ(reports.size(), 1u);
  try {
    std::rethrow_exception(reports[0]);
  } catch (const comm::socket_create_error& e) {
    EXPECT_EQ(e.code(), std::errc::too_many_files_open);
    EXPECT_EQ(std::string(e.what()).rfind("accept on port " + std::to_string(port) + " (accepting paused for 100 ms)", 0),
              0u)
        << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a socket_create_error: " << e.what();
  }
}

TEST(AsyncEcho, ThousandConcurrentPlainClientsAreEchoedExactly) {
  raise_fd_limit(8192);
  int fds_before = count_open_fds();
  {
    echo_server server;
    auto result = run_echo_clients(server.port(), 1000, 64 * 1024, {});
    EXPECT_EQ(result.ok, 1000) << result.first_error << result.failures;
    EXPECT_EQ(result.mismatched, 0);
    EXPECT_LT(result.elapsed, 60s);
    std::printf("1000 plain clients x 64 KiB echoed in %.2f s\n",
                std::chrono::duration<double>(result.elapsed).count());
  }
  EXPECT_EQ(count_open_fds(), fds_before);
}

TEST(AsyncAccept, SeveralLoopsShareOnePortWithReuseport) {
  loop_thread a("share a"), b("share b");
  std::atomic<int> on_a{0}, on_b{0};
  comm::accept_options o;
  o.address = "127.0.0.1";
  o.reuseport = true;
  auto ha = a.call([&] {
    return comm::accept_tcp_connections_creating_async_io_states(
        *a, "0", [&](comm::accepting_handle&, comm::async_io_state& s) { ++on_a, start_echo(s); }, o);
  });
  std::string port = std::to_string(ha->local_port());
  auto hb = b.call([&] {
    return comm::accept_tcp_connections_creating_async_io_states(
        *b, port, [&](comm::accepting_handle&, comm::async_io_state& s) { ++on_b, start_echo(s); }, o);
  });
  EXPECT_EQ(ha->local_port(), hb->local_port());
  auto result = run_echo_clients(ha->local_port(), 64, 4096, {});
  EXPECT_EQ(result.ok, 64) << result.first_error << result.failures;
  EXPECT_EQ(on_a + on_b, 64);
  EXPECT_GT(on_a.load(), 0);  // the kernel spreads connections over both listeners
  EXPECT_GT(on_b.load(), 0);
}
