// TLS on async states, for every tested implementation: echo at scale, handshake timeouts,
// verification failures, STARTTLS and back, independent peers (openssl s_client / s_server,
// Python ssl), and a hostile mix that must not disturb good clients.
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <thread>

#include "comm/stream.hpp"
#include "echo_helpers.hpp"
#include "peers/certificates.hpp"
#include "peers/implementations.hpp"
#include "peers/process.hpp"
#include "peers/test_data.hpp"

using namespace async_test;
using comm_test::pki;

namespace {

comm::ssl_abstract_context client_ctx(comm::ssl_implementation impl) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.trusted_file = pki().ca_file;
  return comm::create_ssl_client_context(std::move(o));
}

comm::ssl_abstract_context server_ctx(comm::ssl_implementation impl, const comm_test::credential& c = pki().good) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.cert_file = c.cert_file;
  o.key_file = c.key_file;
  return comm::create_ssl_server_context(std::move(o));
}

// Attaches TLS to a connected pair of states: the server side, and the client side for "localhost".
void attach_pair(comm::async_io_state& client, comm::async_io_state& server, comm::ssl_implementation impl,
                 comm::ssl_callback on_client, comm::ssl_callback on_server) {
  comm::attach_ssl_options so;
  so.ssl_ctx = server_ctx(impl);
  so.ssl_side = comm::ssl_side::server;
  comm::async_io_state_attach_ssl(server, std::move(so), std::move(on_server));
  comm::attach_ssl_options co;
  co.ssl_ctx = client_ctx(impl);
  co.ssl_side = comm::ssl_side::client;
  co.tlsext_host_name = "localhost";
  comm::async_io_state_attach_ssl(client, std::move(co), std::move(on_client));
}

// One TLS client exchange on a loop: connect, write `message`, read `expect_size` bytes.
struct exchange_result {
  std::exception_ptr error;
  std::string received;
  comm::ssl_protocol_version version = comm::ssl_protocol_version::unknown;
  std::string cipher;
  bool verified = false;
  bool found_by_ref = false;
  comm::ssl_implementation implementation{};
};

exchange_result exchange(const std::string& host, std::uint16_t port, comm::client_ssl_ctx_spec ctx,
                         const std::string& message, std::size_t expect_size,
                         std::optional<std::chrono::milliseconds> handshake_timeout = std::chrono::seconds(10)) {
  exchange_result r;
  waiter w;
  bool done = false;
  loop_thread lt("tls client");
  lt.call([&] {
    comm::async_connect_options o;
    o.ssl_ctx = std::move(ctx);
    o.handshake_timeout = handshake_timeout;
    o.connect_timeout = std::chrono::seconds(5);
    o.read_timeout = std::chrono::seconds(10);
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, host, std::to_string(port),
        [&](comm::async_io_state* s, std::exception_ptr e) {
          if (!s) {
            w.notify([&] { r.error = e, done = true; });
            return;
          }
          r.version = comm::ssl_connection_protocol_version(*s);
          r.cipher = comm::ssl_connection_cipher(*s);
          r.verified = comm::ssl_connection_verify(*s).ok;
          r.implementation = comm::ssl_connection_implementation(*s);
          r.found_by_ref = comm::find_ssl_connection_from_ssl_ref(comm::ssl_connection_ssl_ref(*s)) == s;
          comm::async_io_state_write_buffer(*s, message, {});
          comm::async_io_state_read_with_checking(*s, [&](comm::async_io_state& st, std::span<const std::byte> d) {
            if (d.size() >= expect_size || st.read_status() != comm::io_status::ok) {
              std::string got = text_of(d);
              if (st.read_status() == comm::io_status::error) r.error = st.read_error();
              comm::close_async_io_state(st);
              w.notify([&] { r.received = got, done = true; });
            }
          });
        },
        std::move(o));
    return 0;
  });
  EXPECT_TRUE(w.wait([&] { return done; }, std::chrono::seconds(30)));
  std::lock_guard lock(w.mutex());
  return r;
}

std::string what_of(std::exception_ptr e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
  return "?";
}

class AsyncTls : public ::testing::TestWithParam<comm::ssl_implementation> {};

}  // namespace

TEST_P(AsyncTls, ThousandConcurrentTlsClientsAreEchoedExactly) {
  raise_fd_limit(8192);
  int fds_before = count_open_fds();
  {
    // 1,000 clients, 200 connected at any time (a finished one starts the next): the server loop
    // always juggles 200 concurrent handshakes and echoes, and on a 2-core machine under
    // sanitizers no handshake has to wait behind all 1,000. Timeouts stay generous but bounded.
    echo_server server(server_ctx(GetParam()), std::chrono::seconds(60));
    auto result = run_echo_clients(server.port(), 1000, 64 * 1024, client_ctx(GetParam()), std::chrono::seconds(120), 200);
    EXPECT_EQ(result.ok, 1000) << result.first_error << result.failures;
    EXPECT_EQ(result.mismatched, 0);
    EXPECT_EQ(server.ssl_errors.load(), 0);
    std::printf("1000 TLS clients (%s) x 64 KiB echoed in %.2f s\n", std::string(comm::to_string(GetParam())).c_str(),
                std::chrono::duration<double>(result.elapsed).count());
  }
  EXPECT_EQ(count_open_fds(), fds_before);
}

TEST_P(AsyncTls, ConnectionFunctionsWorkOnAnAsyncState) {
  echo_server server(server_ctx(GetParam()));
  auto r = exchange("localhost", server.port(), client_ctx(GetParam()), "ping\n", 5);
  ASSERT_FALSE(r.error) << what_of(r.error);
  EXPECT_EQ(r.received, "ping\n");
  EXPECT_EQ(r.version, comm::ssl_protocol_version::tls_v1_3);
  EXPECT_FALSE(r.cipher.empty());
  EXPECT_TRUE(r.verified);
  EXPECT_TRUE(r.found_by_ref);
  EXPECT_EQ(r.implementation, GetParam());
}

TEST_P(AsyncTls, WrongHostCertificateFailsVerificationInTheCallback) {
  echo_server server(server_ctx(GetParam(), pki().wrong_host));
  auto r = exchange("localhost", server.port(), client_ctx(GetParam()), "x", 1);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(comm::ssl_failure_indicator(r.error), comm::ssl_failure_kind::ssl_condition);
  try {
    std::rethrow_exception(r.error);
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), comm::verify_reason::host_name_mismatch) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a verification failure: " << e.what();
  }
}

// An acceptor given a client context would fail every handshake later; it is refused at the call,
// naming the context. So is an acceptor without a callback.
TEST_P(AsyncTls, AnAcceptorRefusesAClientContextOrNoCallbackAtTheCall) {
  loop_thread lt;
  comm::accept_options o;
  o.address = "127.0.0.1";
  o.ssl_ctx = client_ctx(GetParam());
  const std::string name = o.ssl_ctx.name();
  try {
    lt.call([&] {
      return comm::accept_tcp_connections_creating_async_io_states(
          *lt, "0", [](comm::accepting_handle&, comm::async_io_state&) {}, o);
    });
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "accept_tcp_connections_creating_async_io_states: ssl_ctx '" + name +
                                         "' is a client context; a server context is needed");
  }
  o.ssl_ctx = server_ctx(GetParam());
  try {
    lt.call([&] { return comm::accept_tcp_connections_creating_async_io_states(*lt, "0", comm::accept_state_callback{}, o); });
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "accept_tcp_connections_creating_async_io_states: no callback");
  }
}

TEST_P(AsyncTls, ClientHandshakeTimeoutAgainstASilentPeer) {
  // Accepts TCP, never speaks TLS.
  auto silent = comm::tcp_listener::open("0", {});
  auto t0 = clock::now();
  auto r = exchange("127.0.0.1", silent.local_port(), client_ctx(GetParam()), "x", 1, std::chrono::milliseconds(300));
  auto took = clock::now() - t0;
  ASSERT_TRUE(r.error);
  EXPECT_EQ(comm::ssl_failure_indicator(r.error), comm::ssl_failure_kind::timeout) << what_of(r.error);
  EXPECT_NE(what_of(r.error).find("timed out after 300 ms"), std::string::npos) << what_of(r.error);
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::seconds(3));
}

TEST_P(AsyncTls, ServerHandshakeTimeoutReportsASilentClientToTheErrorCallback) {
  echo_server server(server_ctx(GetParam()), std::chrono::milliseconds(200));
  auto silent = raw_connect(server.port());
  ASSERT_TRUE(server.wait_ssl_errors(1));
  std::lock_guard lock(server.errors_mutex);
  EXPECT_EQ(server.ssl_error_kinds, std::vector<comm::ssl_failure_kind>{comm::ssl_failure_kind::timeout});
  EXPECT_EQ(recv_some(silent.get(), 1, std::chrono::seconds(2)), "");  // closed by the server
  EXPECT_EQ(server.handle->connections(), 0u);
}

TEST_P(AsyncTls, StartTlsAndBackOnAPairOfStates) {
  loop_thread lt("starttls");
  waiter w;
  auto [a, b] = tcp_pair();
  std::shared_ptr<comm::async_io_state> client, server;
  std::vector<std::string> events;
  auto note = [&](std::string e) { w.notify([&] { events.push_back(std::move(e)); }); };
  lt.call([&, a = std::make_shared<comm::socket_handle>(std::move(a)),
           b = std::make_shared<comm::socket_handle>(std::move(b))] {
    client = comm::create_async_io_state(*lt, std::move(*a));
    server = comm::create_async_io_state(*lt, std::move(*b));
    auto on_server = [&](comm::async_io_state& s, std::exception_ptr e) {
      EXPECT_FALSE(e) << what_of(e);
      comm::async_io_state_read_with_checking(s, [&](comm::async_io_state& st, std::span<const std::byte> d) {
        if (d.size() < 6) return;
        note("server read " + text_of(d));
        comm::async_io_state_finish(st, d.size());
        comm::async_io_state_detach_ssl(st, [&](comm::async_io_state& st2, std::exception_ptr e2) {
          EXPECT_FALSE(e2) << what_of(e2);
          note(std::string("server detached ") + (st2.is_ssl() ? "tls" : "plain"));
          comm::async_io_state_write_buffer(st2, std::string("plain!"), {});
        });
      });
    };
    auto on_client = [&](comm::async_io_state& s, std::exception_ptr e) {
      EXPECT_FALSE(e) << what_of(e);
      comm::async_io_state_write_buffer(s, std::string("secret"), [&](comm::async_io_state& st, std::size_t) {
        comm::async_io_state_detach_ssl(st, [&](comm::async_io_state& st2, std::exception_ptr e2) {
          EXPECT_FALSE(e2) << what_of(e2);
          note(std::string("client detached ") + (st2.is_ssl() ? "tls" : "plain"));
          comm::async_io_state_read_with_checking(st2, [&](comm::async_io_state& st3, std::span<const std::byte> d) {
            if (d.size() < 6) return;
            note("client read " + text_of(d));
            comm::async_io_state_finish(st3, d.size());
          });
        });
      });
    };
    attach_pair(*client, *server, GetParam(), on_client, on_server);
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return events.size() == 4; })) << events.size();
  std::sort(events.begin(), events.end());
  EXPECT_EQ(events, (std::vector<std::string>{"client detached plain", "client read plain!", "server detached plain",
                                              "server read secret"}));
}

// A peer that stops reading: the close_notify of an output shutdown cannot leave, so the FIN
// waits for it until the write timeout and then goes out anyway, reported as timed_out.
TEST_P(AsyncTls, OutputShutdownWaitsForRoomForTheCloseNotifyUpToTheWriteTimeout) {
  loop_thread lt("close_notify");
  waiter w;
  auto [a, b] = tcp_pair();
  int small = 4096;
  ::setsockopt(a.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ::setsockopt(b.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  std::shared_ptr<comm::async_io_state> client, server;
  int handshakes = 0;
  std::optional<std::error_code> shut;
  std::optional<std::error_code> returned;
  auto started = std::chrono::steady_clock::now();
  lt.call([&, a = std::make_shared<comm::socket_handle>(std::move(a)),
           b = std::make_shared<comm::socket_handle>(std::move(b))] {
    client = comm::create_async_io_state(*lt, std::move(*a));
    server = comm::create_async_io_state(*lt, std::move(*b));
    auto done = [&](comm::async_io_state&, std::exception_ptr e) {
      EXPECT_FALSE(e) << what_of(e);
      if (++handshakes < 2) return;
      // The client reads nothing from here on: 4 MiB cannot leave the server.
      server->set_write_timeout(std::chrono::milliseconds(300));
      comm::async_io_state_write_buffer(*server, std::string(4 << 20, 'x'), {});
      comm::apply_in_wait_state_collection_process(*lt, [&] {
        started = std::chrono::steady_clock::now();
        returned = comm::async_io_state_shutdown(*server, comm::direction::output, true,
                                                 [&](comm::async_io_state&, std::error_code ec) { w.notify([&] { shut = ec; }); });
      });
    };
    attach_pair(*client, *server, GetParam(), done, done);
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return shut.has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(*shut, std::make_error_code(std::errc::timed_out));
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(250));
  lt.call([&] {
    EXPECT_FALSE(returned.has_value());  // it could not run at once
    comm::close_async_io_state(*client);
    comm::close_async_io_state(*server);
    return 0;
  });
}

// Write-behind: a TLS write of 60,000 bytes (four records, under the 64 KiB the cork holds) is done
// once its records are made, before the socket took them. Closing from its callback must still
// deliver every byte. The peer is Python's ssl with a small receive buffer, and the client's send
// buffer is small too, so far less than 60,000 bytes fit in the sockets.
//   close:            the peer reads nothing until after the close; the state stays registered
//                     until the bytes have left.
//   close keep_alive: the peer reads from the start; the close waits for the bytes to leave
//                     before it hands the socket back.
//   tickets:          the peer sends TLS 1.3 session tickets, which have arrived (unread) when the
//                     write starts, and the client's send buffer is large, so the bytes wait in it
//                     at the close: closing over unread data must not reset the connection (Linux
//                     then throws away what the send buffer holds).
//   unread, then data: the same, and after the close the peer sends a line before it reads: the
//                     close must wait (dropping the line) until its bytes are transmitted.
//   late tickets:     the same, but the peer sends its tickets only after the close: they must not
//                     meet a closed socket (a reset) while bytes are still unsent.
//   late, owed:       late tickets with the small send buffer: records are still owed at the close.
//   late, owed, then unsent:
//                     the same, but the send buffer grows after the close, so that every owed record
//                     reaches the kernel while the tickets are still to come: the linger must go on
//                     to wait for the unsent bytes, not close the socket under them.
//   flood:            the peer writes 1 MiB before it reads anything, the client's receive buffer
//                     is small, and records are owed at the close: the linger must drop what
//                     arrives, or neither side ever reads.
namespace {

// A blocking client socket with the given buffer sizes (0: the system's), connected to 127.0.0.1:port.
comm::socket_handle connect_with_buffers(const std::string& port, int sndbuf, int rcvbuf = 0) {
  comm::socket_handle sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.is_open()) throw std::runtime_error("socket");
  if (sndbuf > 0 && ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
    throw std::runtime_error("SO_SNDBUF");
  if (rcvbuf > 0 && ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) != 0)
    throw std::runtime_error("SO_RCVBUF");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(port)));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) throw std::runtime_error("connect");
  return sock;
}

// An async state on lt over sock, with a write timeout when given, once its TLS client handshake
// (to "localhost") is done. Throws what the handshake failed with.
std::shared_ptr<comm::async_io_state> tls_client_state(loop_thread& lt, comm::socket_handle sock,
                                                       comm::ssl_implementation impl,
                                                       std::optional<std::chrono::milliseconds> write_timeout = {}) {
  waiter w;
  bool ready = false;
  std::exception_ptr failure;
  std::shared_ptr<comm::async_io_state> state;
  lt.call([&, s = std::make_shared<comm::socket_handle>(std::move(sock))] {
    state = comm::create_async_io_state(*lt, std::move(*s));
    if (write_timeout) state->set_write_timeout(*write_timeout);
    comm::attach_ssl_options co;
    co.ssl_ctx = client_ctx(impl);
    co.ssl_side = comm::ssl_side::client;
    co.tlsext_host_name = "localhost";
    comm::async_io_state_attach_ssl(*state, std::move(co), [&](comm::async_io_state&, std::exception_ptr e) {
      w.notify([&] { failure = e, ready = true; });
    });
    return 0;
  });
  if (!w.wait([&] { return ready; }, std::chrono::seconds(10))) throw std::runtime_error("no TLS handshake in 10 s");
  if (failure) std::rethrow_exception(failure);
  return state;
}

enum class tickets_mode { none, unread, unread_then_data, late, late_owed, late_owed_then_unsent, flood };

void close_right_after_a_write(comm::ssl_implementation impl, bool keep_alive,
                               tickets_mode ticket_mode = tickets_mode::none) {
  const bool tickets = ticket_mode != tickets_mode::none && ticket_mode != tickets_mode::flood;
  const bool owed = ticket_mode == tickets_mode::late_owed || ticket_mode == tickets_mode::late_owed_then_unsent;
  const bool late = ticket_mode == tickets_mode::late || owed;
  const bool flood = ticket_mode == tickets_mode::flood;
  comm_test::python_server peer(
      "tls_peer.py",
      {flood                                         ? "flood_sink"
       : late                                        ? "late_tickets"
       : ticket_mode == tickets_mode::unread_then_data ? "late_sink_talk"
       : tickets                                     ? "late_sink_tickets"
                                                     : "late_sink",
       pki().good.cert_file, pki().good.key_file});
  const std::string data = comm_test::random_bytes(60000, 21);
  comm::socket_handle sock = connect_with_buffers(peer.port, tickets && !owed ? 1 << 20 : 4096, flood ? 4096 : 0);
  const int fd = sock.get();
  loop_thread lt("write-behind close");
  waiter w;
  bool closed = false;
  std::size_t written = 0;
  // With a flood, a write timeout bounds the linger, should it wait in vain.
  auto state = tls_client_state(lt, std::move(sock), impl,
                                flood ? std::optional(std::chrono::milliseconds(3000)) : std::nullopt);
  peer.process.wait_for(late ? "^FLIGHT$" : "^READY$");
  if (tickets) {
    pollfd p{fd, POLLIN, 0};
    if (late) ASSERT_EQ(::poll(&p, 1, 0), 0) << "the session tickets came before the close";
    else ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the session tickets did not come";
  }
  if (keep_alive) peer.process.write_stdin("go\n");
  lt.call([&] {
    comm::async_io_state_write_buffer(*state, data, [&](comm::async_io_state& st, std::size_t n) {
      comm::close_async_io_state(st, keep_alive);
      if (keep_alive) comm::async_io_state_release_socket(st).reset();  // FIN: the peer's end
      w.notify([&] { written = n, closed = true; });
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return closed; }, std::chrono::seconds(10)));
  EXPECT_EQ(written, data.size());
  if (ticket_mode == tickets_mode::late_owed_then_unsent) {
    // Records are owed: the 4 KiB send buffer and the peer's 4 KiB receive buffer hold far less
    // than 60,000 bytes. Growing the send buffer wakes the socket (EPOLLOUT): the loop hands every
    // owed record to the kernel in one step, then finds the bytes unsent (the peer reads nothing).
    int queued = 0;
    ASSERT_EQ(::ioctl(fd, SIOCOUTQ, &queued), 0);
    ASSERT_LT(queued, 30000) << "no records were owed at the close";
    const int big = 1 << 20;
    ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big), 0);
    lt.call([] { return 0; });  // the edge was there before this call: the loop has handled it
    lt.call([] { return 0; });
    queued = 0;
    EXPECT_EQ(::ioctl(fd, SIOCOUTQ, &queued), 0) << "the socket was closed with its records just sent";
    EXPECT_GT(queued, 40000) << "the owed records did not reach the kernel";
  }
  if (flood) {
    EXPECT_EQ(peer.process.wait_for(R"(^SENT (.*)$)", std::chrono::seconds(10)), std::to_string(1 << 20));
  } else if (!keep_alive) {
    peer.process.write_stdin("go\n");
  }
  EXPECT_EQ(peer.process.wait_for(R"(^GOT (.*)$)", std::chrono::seconds(10)),
            std::to_string(data.size()) + " " + comm_test::sha256(data));
}

}  // namespace

TEST_P(AsyncTls, CloseRightAfterAWriteIsDoneStillDeliversItsBytes) { close_right_after_a_write(GetParam(), false); }

TEST_P(AsyncTls, KeepAliveCloseRightAfterAWriteIsDoneSendsItsBytesFirst) { close_right_after_a_write(GetParam(), true); }

TEST_P(AsyncTls, CloseWithSessionTicketsUnreadStillDeliversEveryByte) {
  close_right_after_a_write(GetParam(), false, tickets_mode::unread);
}

TEST_P(AsyncTls, CloseWithSessionTicketsUnreadAndMoreToComeStillDeliversEveryByte) {
  close_right_after_a_write(GetParam(), false, tickets_mode::unread_then_data);
}

TEST_P(AsyncTls, CloseBeforeTheSessionTicketsArriveStillDeliversEveryByte) {
  close_right_after_a_write(GetParam(), false, tickets_mode::late);
}

TEST_P(AsyncTls, CloseWithRecordsOwedBeforeTheSessionTicketsArriveStillDeliversEveryByte) {
  close_right_after_a_write(GetParam(), false, tickets_mode::late_owed);
}

TEST_P(AsyncTls, CloseWhoseOwedRecordsLeaveBeforeTheSessionTicketsStillDeliversEveryByte) {
  close_right_after_a_write(GetParam(), false, tickets_mode::late_owed_then_unsent);
}

TEST_P(AsyncTls, CloseWithRecordsOwedToAPeerThatWritesFirstStillDeliversEveryByte) {
  close_right_after_a_write(GetParam(), false, tickets_mode::flood);
}

// The other side of the linger: toward a peer that reads nothing, records owed at the close cannot
// leave. The socket stays open for them only until the write timeout (here 300 ms), then closes
// with the records dropped, so a peer that stops reading cannot hold a descriptor forever.
TEST_P(AsyncTls, CloseTowardAPeerThatNeverReadsGivesUpAtTheWriteTimeout) {
  comm_test::python_server peer("tls_peer.py", {"late_sink", pki().good.cert_file, pki().good.key_file});
  const std::string data = comm_test::random_bytes(60000, 22);
  comm::socket_handle sock = connect_with_buffers(peer.port, 4096);
  const int fd = sock.get();
  loop_thread lt("linger bound");
  waiter w;
  bool closed = false;
  auto state = tls_client_state(lt, std::move(sock), GetParam(), std::chrono::milliseconds(300));
  peer.process.wait_for("^READY$");
  clock::time_point closed_at;
  lt.call([&] {
    comm::async_io_state_write_buffer(*state, data, [&](comm::async_io_state& st, std::size_t) {
      comm::close_async_io_state(st);
      w.notify([&] { closed = true, closed_at = clock::now(); });
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return closed; }, std::chrono::seconds(10)));
  int queued = 0;
  ASSERT_EQ(::ioctl(fd, SIOCOUTQ, &queued), 0) << "the socket was closed at once, without waiting for its records";
  // The state owns the descriptor, and nothing in this process makes one meanwhile: fcntl sees the
  // same socket until the state closes it.
  const auto deadline = closed_at + std::chrono::seconds(5);
  while (::fcntl(fd, F_GETFD) != -1 && clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto held = clock::now() - closed_at;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1) << "still open 5 s after the close";
  EXPECT_GE(held, std::chrono::milliseconds(250));
  EXPECT_LT(held, std::chrono::seconds(3));
}

// A TLS server state closing over more unread input than one read round (1 MiB from a client that
// writes first), with 200,000 bytes still unsent: everything unread must go before the socket
// closes, or the close is a reset and the client never gets those bytes. (A server expects no
// tickets, so this close does not linger: it drops what is there and closes.)
TEST_P(AsyncTls, ServerCloseOverAMebibyteUnreadStillDeliversEveryByte) {
  loop_thread lt("unread close");
  waiter w;
  auto [a, b] = tcp_pair();
  const int server_fd = b.get();
  const int big = 4 << 20;
  ASSERT_EQ(::setsockopt(server_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big), 0);
  ASSERT_EQ(::setsockopt(server_fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big), 0);
  std::shared_ptr<comm::async_io_state> server;
  bool server_ready = false, closed = false;
  std::exception_ptr failure;
  lt.call([&, b = std::make_shared<comm::socket_handle>(std::move(b))] {
    server = comm::create_async_io_state(*lt, std::move(*b));
    comm::attach_ssl_options so;
    so.ssl_ctx = server_ctx(GetParam());
    so.ssl_side = comm::ssl_side::server;
    comm::async_io_state_attach_ssl(*server, std::move(so), [&](comm::async_io_state&, std::exception_ptr e) {
      w.notify([&] { failure = e, server_ready = true; });
    });
    return 0;
  });
  comm::socket_stream client(std::move(a), {.read_timeout = 5s, .write_timeout = 5s});
  comm::attach_ssl_options co;
  co.ssl_ctx = client_ctx(GetParam());
  co.ssl_side = comm::ssl_side::client;
  co.tlsext_host_name = "localhost";
  co.handshake_timeout = 5s;
  comm::attach_ssl(client, std::move(co));
  ASSERT_TRUE(w.wait([&] { return server_ready; }));
  ASSERT_FALSE(failure) << what_of(failure);

  const std::string flood(1 << 20, 'x');
  client.write_all(flood);
  client.flush();
  const int expected = (1 << 20) + 64 * 22;  // and the records' headers and tags
  int unread = 0;
  const auto deadline = clock::now() + 5s;
  while (::ioctl(server_fd, SIOCINQ, &unread) == 0 && unread < expected && clock::now() < deadline) {
    pollfd idle{-1, 0, 0};
    ::poll(&idle, 1, 5);
  }
  ASSERT_GE(unread, expected) << "the client's data has not all arrived";

  const std::string data = comm_test::random_bytes(200000, 23);
  lt.call([&] {
    comm::async_io_state_write_buffer(*server, data, [&](comm::async_io_state& st, std::size_t) {
      comm::close_async_io_state(st);
      w.notify([&] { closed = true; });
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return closed; }));
  std::string got;
  try {
    char buf[65536];
    while (std::size_t n = client.read_some(buf, sizeof buf)) got.append(buf, n);
  } catch (const comm::socket_error&) {
    // the end without a close_notify (the async close sends none), or a reset
  }
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data) << "the bytes differ";
}

// Application data the server sends as soon as its handshake completes reaches the client's socket
// while the client has no read active: the edge it makes is seen and passes. A read started later
// must try the transport first, not wait for an edge that will never come.
TEST_P(AsyncTls, ReadStartedAfterTheHandshakeFindsDataThatArrivedBeforeIt) {
  loop_thread lt("late read");
  waiter w;
  auto [a, b] = tcp_pair();
  const int client_fd = a.get();
  std::shared_ptr<comm::async_io_state> client, server;
  bool client_ready = false, server_sent = false;
  std::string received;
  lt.call([&, a = std::make_shared<comm::socket_handle>(std::move(a)),
           b = std::make_shared<comm::socket_handle>(std::move(b))] {
    client = comm::create_async_io_state(*lt, std::move(*a));
    server = comm::create_async_io_state(*lt, std::move(*b));
    comm::attach_ssl_options so;
    so.ssl_ctx = server_ctx(GetParam());
    so.ssl_side = comm::ssl_side::server;
    comm::async_io_state_attach_ssl(*server, std::move(so), [&](comm::async_io_state& s, std::exception_ptr e) {
      EXPECT_FALSE(e) << what_of(e);
      comm::async_io_state_write_buffer(s, std::string("early data\n"),
                                        [&](comm::async_io_state&, std::size_t) { w.notify([&] { server_sent = true; }); });
    });
    comm::attach_ssl_options co;
    co.ssl_ctx = client_ctx(GetParam());
    co.ssl_side = comm::ssl_side::client;
    co.tlsext_host_name = "localhost";
    comm::async_io_state_attach_ssl(*client, std::move(co), [&](comm::async_io_state&, std::exception_ptr e) {
      EXPECT_FALSE(e) << what_of(e);
      w.notify([&] { client_ready = true; });
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return client_ready && server_sent; }));
  // The record (5 + 11 + 1 + 16 bytes) is queued on the client's socket, unread.
  auto deadline = clock::now() + 5s;
  char peek[4096];
  while (::recv(client_fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT) < 33 && clock::now() < deadline) {
    pollfd p{client_fd, POLLIN, 0};
    ::poll(&p, 1, 50);
  }
  ASSERT_GE(::recv(client_fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT), 33);
  // Let the loop see (and pass) the edge before the read starts.
  lt.call([] { return 0; });
  lt.call([] { return 0; });
  lt.call([&] {
    comm::async_io_state_read_with_checking(*client, [&](comm::async_io_state& st, std::span<const std::byte> d) {
      if (std::memchr(d.data(), '\n', d.size()) == nullptr) return;
      std::string text = text_of(d);
      comm::async_io_state_finish(st, d.size());
      w.notify([&] { received = text; });
    });
    return 0;
  });
  EXPECT_TRUE(w.wait([&] { return !received.empty(); }, 5s)) << "the read waited for an edge";
  EXPECT_EQ(received, "early data\n");
  lt.call([&] {
    comm::close_async_io_state(*client);
    comm::close_async_io_state(*server);
    return 0;
  });
}

TEST_P(AsyncTls, DeferredHandshakeRunsOnAsyncIoStateHandshakeAndConfigureSeesTheNativeObject) {
  loop_thread lt("deferred");
  waiter w;
  auto [a, b] = tcp_pair();
  std::shared_ptr<comm::async_io_state> client, server;
  std::optional<std::size_t> native_index;
  std::exception_ptr client_error, server_error;
  int done = 0;
  lt.call([&, a = std::make_shared<comm::socket_handle>(std::move(a)),
           b = std::make_shared<comm::socket_handle>(std::move(b))] {
    client = comm::create_async_io_state(*lt, std::move(*a));
    server = comm::create_async_io_state(*lt, std::move(*b));
    comm::attach_ssl_options so;
    so.ssl_ctx = server_ctx(GetParam());
    comm::async_io_state_attach_ssl(*server, std::move(so), [&](comm::async_io_state&, std::exception_ptr e) {
      w.notify([&] { server_error = e, ++done; });
    });
    comm::attach_ssl_options co;
    co.ssl_ctx = client_ctx(GetParam());
    co.ssl_side = comm::ssl_side::client;
    co.tlsext_host_name = "localhost";
    co.defer_handshake = true;
    co.ssl_configure_callback = [&](comm::ssl_ref ref) { native_index = ref.index(); };
    comm::async_io_state_attach_ssl(*client, std::move(co), [&](comm::async_io_state& s, std::exception_ptr e) {
      EXPECT_FALSE(e) << what_of(e);
      EXPECT_TRUE(s.is_ssl());
      comm::async_io_state_handshake(
          s, [&](comm::async_io_state&, std::exception_ptr e2) { w.notify([&] { client_error = e2, ++done; }); },
          std::chrono::seconds(5));
    });
    return 0;
  });
  ASSERT_TRUE(w.wait([&] { return done == 2; }));
  EXPECT_FALSE(client_error) << what_of(client_error);
  EXPECT_FALSE(server_error) << what_of(server_error);
  ASSERT_TRUE(native_index.has_value());
  EXPECT_EQ(*native_index, GetParam() == comm::ssl_implementation::openssl ? 0u : 1u);
  EXPECT_EQ(lt.call([&] { return comm::ssl_connection_server_name(*server); }), "localhost");
  EXPECT_EQ(lt.call([&] { return comm::find_ssl_connection_from_ssl_ref(comm::ssl_connection_ssl_ref(*server)); }),
            server.get());
  lt.call([&] { return comm::close_async_io_state(*server); });
  // Closed: the native reference no longer leads to a connection, and TLS is detached.
  EXPECT_FALSE(server->is_ssl());
}

TEST_P(AsyncTls, OpensslSClientAgainstTheAsyncAcceptor) {
  echo_server server(server_ctx(GetParam()));
  comm_test::peer_process cli({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(server.port()),
                               "-CAfile", pki().ca_file, "-servername", "localhost", "-verify_hostname", "localhost",
                               "-verify_return_error", "-quiet", "-no_ign_eof"});
  cli.write_stdin("hello async acceptor\n");
  EXPECT_TRUE(cli.wait_for_text("hello async acceptor")) << cli.output();
  cli.close_stdin();
  EXPECT_EQ(cli.wait_exit(), std::optional<int>(0)) << cli.output();
}

TEST_P(AsyncTls, AsyncClientAgainstOpensslSServer) {
  comm_test::openssl_server server({"-cert", pki().good.cert_file, "-cert_chain", pki().good.cert_file, "-key",
                                         pki().good.key_file, "-rev"});
  auto r = exchange("localhost", static_cast<std::uint16_t>(std::stoi(server.port)), client_ctx(GetParam()),
                    "hello server\n", 13);
  ASSERT_FALSE(r.error) << what_of(r.error);
  EXPECT_EQ(r.received.substr(0, 12), "revres olleh");
  EXPECT_TRUE(r.verified);
}

TEST_P(AsyncTls, AsyncClientAgainstPythonSsl) {
  comm_test::peer_process py({"python3", "-u", std::string(COMM_SOURCE_DIR) + "/tests/async/tls_echo_server.py",
                              pki().good.cert_file, pki().good.key_file});
  std::string port = py.wait_for(R"(^PORT (\d+)$)");
  std::string msg(100'000, 'p');
  auto r = exchange("localhost", static_cast<std::uint16_t>(std::stoi(port)), client_ctx(GetParam()), msg, msg.size());
  ASSERT_FALSE(r.error) << what_of(r.error);
  EXPECT_EQ(r.received, msg);
  EXPECT_EQ(py.wait_for(R"(^VERSION (\S+)$)"), "TLSv1.3");
}

// The peer decides what shares one segment: "STARTTLS\r\n" with its ClientHello, and later an
// application record, its close_notify and plain bytes together. Bytes the state read past the
// command line must reach TLS, and bytes the TLS transport read past the close_notify must come
// back as plain data after the detach.
TEST_P(AsyncTls, StartTlsCommandAndTrailingPlainDataShareSegmentsWithTls) {
  loop_thread lt("starttls server");
  waiter w;
  std::vector<std::string> events;
  auto note = [&](std::string e) { w.notify([&] { events.push_back(std::move(e)); }); };
  auto ctx = server_ctx(GetParam());
  auto handle = lt.call([&] {
    comm::accept_options o;
    o.address = "127.0.0.1";
    o.read_timeout = std::chrono::seconds(10);
    return comm::accept_tcp_connections_creating_async_io_states(
        *lt, "0",
        [&](comm::accepting_handle&, comm::async_io_state& s) {
          comm::async_io_state_read_with_checking(s, [&](comm::async_io_state& st, std::span<const std::byte> d) {
            std::string text = text_of(d);
            if (st.read_status() != comm::io_status::ok) return note("plain read failed");
            if (text.find("\r\n") == std::string::npos) return;
            note("command " + text.substr(0, text.find("\r\n")));
            comm::async_io_state_finish(st, text.find("\r\n") + 2);  // the ClientHello stays buffered
            comm::attach_ssl_options so;
            so.ssl_ctx = ctx;
            so.ssl_side = comm::ssl_side::server;
            comm::async_io_state_attach_ssl(st, std::move(so), [&](comm::async_io_state& s2, std::exception_ptr e) {
              if (e) return note("handshake failed: " + what_of(e));
              comm::async_io_state_read_with_checking(s2, [&](comm::async_io_state& s3, std::span<const std::byte> d2) {
                if (s3.read_status() != comm::io_status::ok) return note("tls read failed: " + what_of(s3.read_error()));
                if (d2.size() < 6) return;
                note("tls " + text_of(d2));
                comm::async_io_state_finish(s3, d2.size());
                comm::async_io_state_detach_ssl(s3, [&](comm::async_io_state& s4, std::exception_ptr e4) {
                  if (e4) return note("detach failed: " + what_of(e4));
                  comm::async_io_state_read_with_checking(s4, [&](comm::async_io_state& s5, std::span<const std::byte> d3) {
                    if (s5.read_status() != comm::io_status::ok) return note("plain read failed");
                    if (d3.size() < 9) return;
                    std::string got = text_of(d3);
                    note("plain " + got);
                    comm::async_io_state_finish(s5, d3.size());
                    comm::async_io_state_write_buffer(s5, "ok:" + got, [](comm::async_io_state& s6, std::size_t) {
                      comm::close_async_io_state(s6);
                    });
                  });
                });
              });
            });
          });
        },
        std::move(o));
  });
  comm_test::peer_process py({"python3", "-u", std::string(COMM_SOURCE_DIR) + "/tests/async/starttls_peer.py",
                              std::to_string(handle->local_port()), pki().ca_file});
  EXPECT_EQ(py.wait_for(R"(^(?:PLAIN|ERROR) (.*)$)", std::chrono::seconds(20)), "ok:after-tls") << py.output();
  ASSERT_TRUE(w.wait([&] { return events.size() >= 3; })) << testing::PrintToString(events);
  EXPECT_EQ(events, (std::vector<std::string>{"command STARTTLS", "tls secret", "plain after-tls"}));
  lt.call([&] {
    comm::close_accepting_handle(*handle);
    return 0;
  });
}

TEST_P(AsyncTls, HostileClientsDoNotDisturbGoodOnes) {
  // Long enough for every good handshake on a loaded (sanitized, 2-core) machine.
  echo_server server(server_ctx(GetParam()), std::chrono::milliseconds(2000));
  std::vector<comm::socket_handle> hostile;
  for (int i = 0; i < 10; ++i) {  // garbage instead of a ClientHello
    hostile.push_back(raw_connect(server.port()));
    send_all(hostile.back().get(), "GET / HTTP/1.0\r\n\r\n" + std::string(100, static_cast<char>(i)));
  }
  for (int i = 0; i < 10; ++i) {  // stall mid-handshake: a record header and nothing more
    hostile.push_back(raw_connect(server.port()));
    send_all(hostile.back().get(), std::string("\x16\x03\x01\x02\x00\x01", 6));
  }
  for (int i = 0; i < 10; ++i) {  // reset at once
    auto s = raw_connect(server.port());
    linger lg{1, 0};
    ::setsockopt(s.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  auto result = run_echo_clients(server.port(), 50, 16 * 1024, client_ctx(GetParam()));
  EXPECT_EQ(result.ok, 50) << result.first_error << result.failures;
  // Every hostile client is eventually refused: 10 garbage + 10 stalled (+ the resets, which the
  // server may see as errors or as clean ends before any handshake byte).
  auto count = [&](comm::ssl_failure_kind kind) {
    std::lock_guard lock(server.errors_mutex);
    return std::count(server.ssl_error_kinds.begin(), server.ssl_error_kinds.end(), kind);
  };
  // The stalled ones time out (2 s); the garbage ones fail as TLS errors.
  EXPECT_TRUE(server.errors_changed.wait([&] { return count(comm::ssl_failure_kind::timeout) == 10; }));
  EXPECT_GE(count(comm::ssl_failure_kind::ssl_condition), 10);
  EXPECT_GE(server.ssl_errors.load(), 20);
  // The server still serves.
  auto again = run_echo_clients(server.port(), 5, 1024, client_ctx(GetParam()));
  EXPECT_EQ(again.ok, 5) << again.first_error << again.failures;
}

INSTANTIATE_TEST_SUITE_P(Implementations, AsyncTls, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name());

TEST(SslFailureIndicator, DecodesEachKindOfError) {
  using comm::ssl_failure_kind;
  EXPECT_EQ(comm::ssl_failure_indicator(nullptr), ssl_failure_kind::none);
  EXPECT_EQ(comm::ssl_failure_indicator(std::make_exception_ptr(
                comm::ssl_handshake_timeout(comm::ssl_errc::handshake_timeout, "TLS handshake with x: timed out"))),
            ssl_failure_kind::timeout);
  EXPECT_EQ(comm::ssl_failure_indicator(
                std::make_exception_ptr(comm::ssl_closed(comm::ssl_errc::closed, "TLS handshake with x"))),
            ssl_failure_kind::closed);
  EXPECT_EQ(comm::ssl_failure_indicator(
                std::make_exception_ptr(comm::ssl_error(comm::ssl_errc::library_error, "TLS handshake with x"))),
            ssl_failure_kind::ssl_condition);
  EXPECT_EQ(comm::ssl_failure_indicator(std::make_exception_ptr(
                comm::socket_connect_error(std::make_error_code(std::errc::connection_refused), "connect to x"))),
            ssl_failure_kind::not_tls);
}
