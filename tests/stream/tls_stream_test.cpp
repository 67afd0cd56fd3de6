// TLS as a property of a live socket_stream: STARTTLS and back, handshake limits, servers, moves.
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "peers/certificates.hpp"
#include "peers/implementations.hpp"
#include "peers/process.hpp"
#include "stream/stream_helpers.hpp"
#include "tls/engine.hpp"

using namespace comm;
using namespace stream_test;

namespace {

class TlsStream : public ::testing::TestWithParam<ssl_implementation> {
 protected:
  ssl_abstract_context server_ctx() const {
    ssl_context_options o;
    o.implementation = GetParam();
    o.cert_file = comm_test::pki().good.cert_file;
    o.key_file = comm_test::pki().good.key_file;
    return create_ssl_server_context(o);
  }
  ssl_abstract_context client_ctx() const {
    ssl_context_options o;
    o.implementation = GetParam();
    o.trusted_file = comm_test::pki().ca_file;
    return create_ssl_client_context(o);
  }
  // A client of a tls_peer.py sink with a 1 MiB send buffer: a large write is taken whole although
  // the peer reads nothing yet.
  socket_stream connect_sender(const comm_test::python_server& peer, milliseconds write_timeout) const {
    open_tcp_stream_options o;
    o.ssl_ctx = client_ctx();
    o.handshake_timeout = 5s;
    o.write_timeout = write_timeout;
    auto s = open_tcp_stream("localhost", peer.port, o);
    int big = 1 << 20;
    if (::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big) != 0)
      throw std::system_error(errno, std::generic_category(), "SO_SNDBUF");
    return s;
  }
  attach_ssl_options server_side(std::optional<milliseconds> timeout = 5s) const {
    attach_ssl_options a;
    a.ssl_ctx = server_ctx();
    a.ssl_side = ssl_side::server;
    a.handshake_timeout = timeout;
    return a;
  }
  // A connected pair with TLS attached on both ends (the handshakes run concurrently).
  std::pair<socket_stream, socket_stream> tls_pair(stream_options options = {.read_timeout = 5s}) const {
    auto pair = connected_pair(options);
    std::thread s([&] { attach_ssl(pair.second, server_side()); });
    attach_ssl(pair.first, client_side());
    s.join();
    return pair;
  }
  attach_ssl_options client_side(bool defer = false) const {
    attach_ssl_options a;
    a.ssl_ctx = client_ctx();
    a.ssl_side = ssl_side::client;
    a.tlsext_host_name = "localhost";
    a.handshake_timeout = 5s;
    a.defer_handshake = defer;
    return a;
  }
};

// Waits (bounded) until at least n bytes are queued on fd, without consuming them.
bool wait_queued(int fd, std::size_t n) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  std::vector<char> buf(n);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) > 0 && ::recv(fd, buf.data(), n, MSG_PEEK | MSG_DONTWAIT) >= static_cast<ssize_t>(n))
      return true;
  }
  return false;
}

// Reads data.size() bytes from s and expects them to be data.
void expect_reads(socket_stream& s, const std::vector<char>& data) {
  std::vector<char> got(data.size());
  s.read_exact(got.data(), got.size());
  EXPECT_EQ(got, data);
}

// Bytes queued on fd for reading (on loopback a send has reached the peer's queue when it returns).
int queued(int fd) {
  int n = -1;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? n : -1;
}

}  // namespace

TEST_P(TlsStream, StartTlsWithClientHelloAlreadyBufferedThenDetachToPlain) {
  auto pair = connected_pair({.read_timeout = 5s, .write_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  std::promise<ssl_ref> client_ref;
  std::thread c([&] {
    client << "STARTTLS\r\n" << std::flush;
    client_ref.set_value(attach_ssl(client, client_side()));
    client << "secret from client\n" << std::flush;
    EXPECT_EQ(client.read_line(), "secret from server");
    detach_ssl(client);
    EXPECT_FALSE(client.is_ssl());
    client << "plain again\n" << std::flush;
  });
  // The server reads its command only once the ClientHello is queued behind it: attach_ssl must
  // hand the bytes it already buffered to the engine.
  ASSERT_TRUE(wait_queued(server.native_handle(), 20));
  EXPECT_EQ(server.read_line(), "STARTTLS");
  EXPECT_GT(server.buffered_input(), 0u);
  ssl_ref ref = attach_ssl(server, server_side());
  EXPECT_TRUE(server.is_ssl());
  EXPECT_EQ(ssl_connection_ssl_ref(server), ref);
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(ref), &server);
  EXPECT_EQ(server.read_line(), "secret from client");
  server << "secret from server\n" << std::flush;
  detach_ssl(server);
  EXPECT_FALSE(server.is_ssl());
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(ref), nullptr);
  EXPECT_EQ(server.read_line(), "plain again");
  c.join();
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(client_ref.get_future().get()), nullptr);
}

// The TLS stream reads ahead (one recv for a record header and body): when the peer's close_notify
// and the plain data after it are already queued together with the last TLS record, the read-ahead
// takes them all, and detach_ssl must give the plain bytes back to the plain stream. The server has
// no read timeout, so its TLS reads take the blocking path.
TEST_P(TlsStream, PlainDataQueuedRightAfterCloseNotifySurvivesTheReadAheadOnDetach) {
  auto pair = connected_pair({.write_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  std::promise<void> client_sent, server_done;
  std::thread c([&, done = server_done.get_future()] {
    attach_ssl(client, client_side());
    client << "secret\n" << std::flush;
    detach_ssl(client, {.retry_count = std::nullopt});  // our close_notify only
    client << "plain after tls\n" << std::flush;
    client_sent.set_value();
    // Bounds the server's untimed reads: if it hangs, end of stream ends them.
    if (done.wait_for(10s) != std::future_status::ready) ::shutdown(client.native_handle(), SHUT_RDWR);
  });
  attach_ssl(server, server_side());
  // Everything is sent (so queued here, or already read ahead by the handshake) before the first
  // read: the record, the close_notify and the plain bytes come in as few recvs as possible.
  const bool sent = client_sent.get_future().wait_for(10s) == std::future_status::ready;
  EXPECT_TRUE(sent);
  if (sent) {
    EXPECT_EQ(server.read_line(), "secret");
    detach_ssl(server);
    EXPECT_FALSE(server.is_ssl());
    EXPECT_EQ(server.read_line(), "plain after tls");
  }
  server_done.set_value();
  c.join();
}

// A second attach_ssl on a stream that has TLS is refused with a clear error, and the TLS stream
// it was called on goes on working.
TEST_P(TlsStream, AttachingTlsTwiceIsRefusedAndTheStreamKeepsWorking) {
  auto [client, server] = tls_pair();
  try {
    attach_ssl(client, client_side());
    FAIL() << "a second attach_ssl succeeded";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(static_cast<const std::system_error&>(e).code(), comm::ssl_errc::invalid_argument) << e.what();
    EXPECT_NE(std::string(e.what()).find(": TLS is already attached"), std::string::npos) << e.what();
  }
  client.write_all("still TLS\n");
  client.flush();
  EXPECT_EQ(server.read_line(), "still TLS");
}

TEST_P(TlsStream, IostreamUnformattedIO) {
  auto [client, server] = tls_pair({.read_timeout = 5s, .write_timeout = 5s});
  check_unformatted_io(client, server);
}

TEST_P(TlsStream, HandshakeTimeoutAgainstSilentPeerLeavesPlainStream) {
  auto [client, server] = connected_pair({.read_timeout = 5s});
  auto t0 = std::chrono::steady_clock::now();
  try {
    attach_ssl(server, server_side(100ms));
    FAIL() << "no exception";
  } catch (const ssl_handshake_timeout& e) {
    auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 95ms);
    EXPECT_LT(took, 2s);
    EXPECT_EQ(e.std::system_error::code(), ssl_errc::handshake_timeout);
    EXPECT_EQ(e.code().kind, ssl_code_kind::handshake_timeout);
    EXPECT_EQ(e.connection(), &server);
    std::string what = e.what();
    EXPECT_NE(what.find("TLS handshake with 127.0.0.1:"), std::string::npos) << what;
    EXPECT_NE(what.find("timed out after 100 ms"), std::string::npos) << what;
  }
  EXPECT_FALSE(server.is_ssl());
  client << "still plain\n" << std::flush;
  EXPECT_EQ(server.read_line(), "still plain");
}

TEST_P(TlsStream, DeferredHandshakeAndSocketStreamHandshake) {
  auto pair = connected_pair({.read_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  attach_ssl(client, client_side(true));
  EXPECT_TRUE(client.is_ssl());
  EXPECT_FALSE(socket_stream_handshake(client, 50ms));  // the server has not started: timeout = false
  std::thread s([&] {
    attach_ssl(server, server_side());
    server << "hello" << std::endl;
  });
  EXPECT_TRUE(socket_stream_handshake(client, 5s));
  EXPECT_EQ(client.read_line(), "hello");
  EXPECT_EQ(ssl_connection_protocol_version(client), ssl_protocol_version::tls_v1_3);
  s.join();
  auto [plain, other] = connected_pair();
  EXPECT_THROW(socket_stream_handshake(plain, 10ms), ssl_failure);
}

TEST_P(TlsStream, CloseSendsCloseNotifyAndPeerSeesCleanEnd) {
  auto pair = connected_pair({.read_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  std::thread s([&] { attach_ssl(server, server_side()); });
  ssl_ref ref = attach_ssl(client, client_side());
  s.join();
  client << "last words" << std::endl;
  client.close();
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(ref), nullptr);
  EXPECT_EQ(server.read_line(), "last words");
  EXPECT_EQ(server.read_line(), std::nullopt);  // close_notify: a clean end, not truncation
}

TEST_P(TlsStream, MoveKeepsRegistryAndEngineOwnerCurrent) {
  auto pair = connected_pair({.read_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  std::thread s([&] { attach_ssl(server, server_side()); });
  ssl_ref ref = attach_ssl(client, client_side());
  s.join();
  socket_stream moved(std::move(client));
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(ref), &moved);
  ASSERT_NE(moved.tls_engine_(), nullptr);
  EXPECT_EQ(moved.tls_engine_()->owner, &moved);
  EXPECT_FALSE(client.is_ssl());
  socket_stream assigned;
  assigned = std::move(moved);
  EXPECT_EQ(find_ssl_connection_from_ssl_ref(ref), &assigned);
  assigned << "after two moves" << std::endl;
  EXPECT_EQ(server.read_line(), "after two moves");
}

TEST_P(TlsStream, DetachWithoutPeerCloseNotifyFailsAfterRetriesButLeavesPlainStream) {
  auto [client, server] = tls_pair();
  auto t0 = std::chrono::steady_clock::now();
  try {
    detach_ssl(client, {.retry_count = 1, .retry_timeout = 20ms});  // the server never answers
    FAIL() << "no exception";
  } catch (const ssl_failure& e) {
    EXPECT_NE(std::string(e.what()).find("no close_notify from 127.0.0.1:"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_FALSE(client.is_ssl());
}

TEST_P(TlsStream, ConstructorWithTlsClosesEverythingOnFailure) {
  int before = open_fd_count();
  {
    auto l = tcp_listener::open("0", {.address = "127.0.0.1"});
    socket_handle c = connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port()));
    auto peer = l.accept(5s);  // silent peer
    attach_ssl_options a = client_side();
    a.handshake_timeout = 50ms;
    EXPECT_THROW(socket_stream(std::move(c), {}, std::move(a)), ssl_handshake_timeout);
  }
  EXPECT_EQ(open_fd_count(), before);
}

TEST_P(TlsStream, TlsServerAndOpenTcpStreamClient) {
  int before = open_fd_count();
  std::promise<std::string> tls_error;
  server_options so;
  so.address = "127.0.0.1";
  so.ssl_ctx = server_ctx();
  so.handshake_timeout = 2s;
  so.tls_error_callback = [&](const std::exception& e) { tls_error.set_value(e.what()); };
  server srv = start_up_server(
      [](socket_stream& s) {
        while (auto line = s.read_line()) s << *line << std::endl;
      },
      so);
  std::string port = std::to_string(srv.local_port());
  {
    // A client that speaks plain text where a ClientHello is due: reported, never handled.
    auto plain = open_tcp_stream("127.0.0.1", port, {.read_timeout = 5s});
    plain << "GET / HTTP/1.0\r\n\r\n" << std::flush;
    auto f = tls_error.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_FALSE(f.get().empty());
  }
  open_tcp_stream_options co;
  co.read_timeout = 5s;
  co.ssl_ctx = client_ctx();
  co.handshake_timeout = 5s;
  auto s = open_tcp_stream("localhost", port, co);
  EXPECT_TRUE(s.is_ssl());
  s << "over TLS" << std::endl;
  EXPECT_EQ(s.read_line(), "over TLS");
  EXPECT_TRUE(ssl_connection_verify(s).ok);

  // Verification failure: the default context trusts only the system store.
  open_tcp_stream_options untrusting;
  untrusting.ssl_ctx = ssl_protocol_keyword::default_;
  untrusting.handshake_timeout = 5s;
  auto r = try_open_tcp_stream("localhost", port, untrusting);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error_as<ssl_condition>(), nullptr) << r.error_message();
  s.close();
  EXPECT_TRUE(server_terminate(srv));
  EXPECT_EQ(open_fd_count(), before);  // nothing left by the failed client, the server or its pool
}

TEST_P(TlsStream, ReadTimeoutUnderTlsIsSocketTimeoutAndStreamGoesOn) {
  auto [client, server] = tls_pair();
  client.set_read_timeout(100ms);
  char buf[32];
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(client.read_some(buf, sizeof buf), socket_timeout_error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  server << "late reply" << std::endl;
  EXPECT_EQ(client.read_line(), "late reply");
  // The peer's close_notify ends the stream cleanly; socket_stream_handshake on a finished
  // handshake is simply true.
  EXPECT_TRUE(socket_stream_handshake(client, 10ms));
  server.close();
  EXPECT_EQ(client.read_line(), std::nullopt);
}

// Under TLS one thread at a time. While one thread waits in a read, another thread's flush (which
// would drive the same engine) is refused with a socket_io_error naming the cause, instead of
// racing inside OpenSSL or GnuTLS; the buffer keeps its bytes, and afterwards the stream goes on,
// every byte delivered once. Either side may be the one refused while the reader is still on its
// way into the read, so the reader retries a refusal too.
TEST_P(TlsStream, SecondThreadDuringATlsReadIsRefusedAndLosesNothing) {
  auto pair = tls_pair({.read_timeout = 20s, .write_timeout = 5s});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  const auto busy = std::make_error_code(std::errc::device_or_resource_busy);
  std::atomic<bool> reading{false};
  std::string got;
  std::exception_ptr reader_error;
  std::thread reader([&] {
    reading = true;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    try {
      while (std::chrono::steady_clock::now() < deadline) {
        try {
          got = client.read_line().value_or("<end of stream>");
          return;
        } catch (const socket_io_error& e) {
          if (e.code() != busy) throw;
        }
      }
      got = "<reader gave up>";
    } catch (...) {
      reader_error = std::current_exception();
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!reading && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  int pings = 0;
  std::string refusal;
  std::exception_ptr writer_error;
  try {
    while (refusal.empty() && std::chrono::steady_clock::now() < deadline) {
      try {
        client.write_all("ping\n");  // into the output buffer: refused only if it must seal
        ++pings;
        client.flush();
      } catch (const socket_io_error& e) {
        if (e.code() != busy) throw;
        refusal = e.what();
      }
    }
    server.write_all("wake\n");
    server.flush();
  } catch (...) {
    writer_error = std::current_exception();
  }
  reader.join();  // bounded by the read timeout
  if (writer_error) std::rethrow_exception(writer_error);
  if (reader_error) std::rethrow_exception(reader_error);
  EXPECT_EQ(got, "wake");
  ASSERT_FALSE(refusal.empty()) << "no refusal in 10 s of flushes beside a waiting TLS read";
  EXPECT_NE(refusal.find("another thread is using this TLS stream"), std::string::npos) << refusal;

  client.flush();  // one thread again: the refused flush's bytes leave now
  for (int i = 0; i < pings; ++i) ASSERT_EQ(server.read_line(), "ping") << "line " << i << " of " << pings;
  client.write_all("end\n");
  client.flush();
  EXPECT_EQ(server.read_line(), "end");
  server.write_all("reply\n");
  server.flush();
  EXPECT_EQ(client.read_line(), "reply");
}

TEST_P(TlsStream, OutputShutdownSendsCloseNotifyAndDetachCanSkipWaiting) {
  auto [client, server] = tls_pair();
  client << "then half-close" << std::endl;
  socket_stream_shutdown(client, direction::output);
  EXPECT_EQ(server.read_line(), "then half-close");
  // (GnuTLS refuses to write once it has read the peer's close_notify, so answer before that.)
  server << "server still talks" << std::endl;
  EXPECT_EQ(server.read_line(), std::nullopt);  // close_notify, then FIN: a clean end
  EXPECT_EQ(client.read_line(), "server still talks");
  // retry_count none: send close_notify and go, whatever the peer does.
  auto t0 = std::chrono::steady_clock::now();
  detach_ssl(server, {.retry_count = std::nullopt});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_FALSE(server.is_ssl());
}


// Records made from large writes are held until 64 KiB of them are ready: three 16 KiB writes
// have not left when the last returns, and flush() sends them.
TEST_P(TlsStream, RecordsOfLargeWritesAreHeldUntilFlush) {
  auto [client, server] = tls_pair();
  ASSERT_EQ(queued(server.native_handle()), 0);
  auto data = random_bytes(3 * 16384, 11);
  for (int i = 0; i < 3; ++i) client.write_all(data.data() + i * 16384, 16384);
  EXPECT_EQ(queued(server.native_handle()), 0);
  client.flush();
  expect_reads(server, data);
}

// Four records reach 64 KiB: they leave without a flush.
TEST_P(TlsStream, SixtyFourKiBOfRecordsLeaveWithoutFlush) {
  auto [client, server] = tls_pair();
  auto data = random_bytes(4 * 16384, 12);
  for (int i = 0; i < 4; ++i) client.write_all(data.data() + i * 16384, 16384);
  expect_reads(server, data);
}

// A full output buffer is sealed and held like a large write; close() sends what is held, then
// close_notify.
TEST_P(TlsStream, CloseSendsHeldRecordsBeforeCloseNotify) {
  auto [client, server] = tls_pair();
  auto data = random_bytes(40000, 13);
  for (std::size_t i = 0; i < data.size(); i += 1000) client.write_all(data.data() + i, 1000);
  EXPECT_EQ(queued(server.native_handle()), 0);
  client.close();
  expect_reads(server, data);
  char b[8];
  EXPECT_EQ(server.read_some(b, sizeof b), 0u);  // close_notify: a clean end
}

// Against Python's ssl module: a request of 48 KiB written without flush reaches the peer as soon
// as the reply is awaited, by read_line and by wait_for_input_streams.
TEST_P(TlsStream, HeldRequestLeavesWhenItsReplyIsAwaited) {
  comm_test::python_server peer("tls_peer.py", {"digest", comm_test::pki().good.cert_file,
                                                comm_test::pki().good.key_file});
  open_tcp_stream_options o;
  o.read_timeout = 5s;
  o.write_timeout = 5s;
  o.ssl_ctx = client_ctx();
  o.handshake_timeout = 5s;
  auto s = open_tcp_stream("localhost", peer.port, o);
  auto data = random_bytes(3 * 16384, 14);
  const std::string expected = std::to_string(data.size()) + " " + sha256_hex(data.data(), data.size());
  s.write_all(std::to_string(data.size()) + "\n");
  s.write_all(data.data(), data.size());
  EXPECT_EQ(s.read_line(), expected);

  s.write_all(std::to_string(data.size()) + "\n");
  s.write_all(data.data(), data.size());
  auto ready = wait_for_input_streams({&s}, 5s);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_EQ(s.read_line(), expected);
  s.close();
  EXPECT_NO_THROW(peer.process.wait_for("^DONE$"));
}

// Writes that time out because the peer does not read lose nothing and repeat nothing: once the
// peer reads again, flush() sends what they took. Two timed-out writes in a row (the second finds
// the held records still there) with bytes told apart by their high bit: the peer must receive a
// prefix of the first stream, then a prefix of the second, then what came after.
TEST_P(TlsStream, WriteTimeoutsThenFlushDeliverEachTakenByteOnce) {
  auto pair = tls_pair({.read_timeout = 5s, .write_timeout = 100ms});  // named, not bound: clang 14 cannot capture structured bindings
  auto& client = pair.first;
  auto& server = pair.second;
  // Fixed buffers: left to autotuning, the send buffer can grow between the two writes (as late
  // acknowledgements come in), and the second write then finds room instead of timing out.
  const int buffer = 256 * 1024;
  ASSERT_EQ(::setsockopt(client.native_handle(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer), 0);
  ASSERT_EQ(::setsockopt(server.native_handle(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer), 0);
  auto first = [](std::size_t i) { return static_cast<char>(((i * 2654435761u) >> 13) & 0x7f); };
  auto second = [](std::size_t i) { return static_cast<char>(((i * 40503u) >> 7) | 0x80); };
  const std::size_t chunk = 256 * 1024;
  std::vector<char> buf(chunk);
  std::size_t offered = 0;
  bool timed_out = false;
  for (int i = 0; i < 1024 && !timed_out; ++i) {  // at most 256 MiB: far beyond any socket buffer
    for (std::size_t j = 0; j < chunk; ++j) buf[j] = first(offered + j);
    try {
      client.write_all(buf.data(), buf.size());
      offered += chunk;
    } catch (const socket_timeout_error& e) {
      timed_out = true;
      EXPECT_EQ(e.code(), std::errc::timed_out);
    }
  }
  ASSERT_TRUE(timed_out);
  for (std::size_t j = 0; j < chunk; ++j) buf[j] = second(j);
  EXPECT_THROW(client.write_all(buf.data(), buf.size()), socket_timeout_error);

  std::vector<char> got;
  std::string reader_error;
  std::thread reader([&] {
    try {
      char b[65536];
      while (std::size_t n = server.read_some(b, sizeof b)) got.insert(got.end(), b, b + n);
    } catch (const std::exception& e) {
      reader_error = e.what();
    }
  });
  client.set_write_timeout(5s);
  try {
    client.flush();
    client.write_all(std::string_view("END"));
    // close_notify and FIN after the data. (A close() now could reset the connection: the
    // client never read the server's session tickets.)
    socket_stream_shutdown(client, direction::output);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "after the timeouts: " << e.what();
    socket_stream_shutdown(client, direction::io, true);
  }
  reader.join();
  EXPECT_EQ(reader_error, "");
  ASSERT_GE(got.size(), offered + 3);
  EXPECT_EQ(std::string(got.end() - 3, got.end()), "END");
  const std::size_t end = got.size() - 3;
  std::size_t i = 0;
  while (i < end && !(got[i] & 0x80)) {
    ASSERT_EQ(got[i], first(i)) << "first stream, byte " << i << " of " << end;
    ++i;
  }
  EXPECT_GE(i, offered);
  EXPECT_LE(i, offered + chunk);
  for (std::size_t j = 0; i < end; ++i, ++j) ASSERT_EQ(got[i], second(j)) << "second stream, byte " << j;
}

// TLS 1.3 servers send session tickets right after the handshake. A client that writes and closes
// without reading leaves them unread, and Linux answers close() on a socket with unread data with a
// reset, throwing away what the send buffer still holds. close() must still deliver every byte it
// accepted: here 200,000 bytes wait in the client's send buffer (the peer, Python's ssl with a
// small receive buffer, reads only after the close) when the tickets are known to have arrived.
TEST_P(TlsStream, CloseWithSessionTicketsUnreadStillDeliversEveryByte) {
  comm_test::python_server peer("tls_peer.py", {"late_sink_tickets", comm_test::pki().good.cert_file,
                                                comm_test::pki().good.key_file});
  auto s = connect_sender(peer, 5s);
  pollfd p{s.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the session tickets did not come";
  auto data = random_bytes(200000, 15);
  s.write_all(data.data(), data.size());
  peer.process.wait_for("^READY$");
  s.close();
  peer.process.write_stdin("go\n");
  EXPECT_EQ(peer.process.wait_for(R"(^GOT (.*)$)", 10s),
            std::to_string(data.size()) + " " + sha256_hex(data.data(), data.size()));
}

// The same when the tickets come only after close() was called: the peer holds them back until the
// client is inside close(), with 200,000 bytes still unsent (the peer's receive buffer is small and
// it reads nothing until then). Tickets meeting a closed socket draw a reset, which throws away the
// unsent bytes: close() must keep the socket open, dropping what arrives, until they have left.
TEST_P(TlsStream, CloseBeforeTheSessionTicketsArriveStillDeliversEveryByte) {
  comm_test::python_server peer("tls_peer.py", {"late_tickets", comm_test::pki().good.cert_file,
                                                comm_test::pki().good.key_file});
  auto s = connect_sender(peer, 5s);
  peer.process.wait_for("^FLIGHT$");
  auto data = random_bytes(200000, 16);
  s.write_all(data.data(), data.size());
  pollfd p{s.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 0) << "the session tickets came before the close";
  // close() returns at once if it leaves the unsent bytes to the kernel, or waits for them: either
  // way the tickets go once it has had the time to get that far (the wait only bounds how late).
  auto closed = std::async(std::launch::async, [&] { s.close(); });
  (void)closed.wait_for(300ms);
  peer.process.write_stdin("go\n");
  EXPECT_EQ(peer.process.wait_for(R"(^GOT (.*)$)", 10s),
            std::to_string(data.size()) + " " + sha256_hex(data.data(), data.size()));
  ASSERT_EQ(closed.wait_for(10s), std::future_status::ready);
  closed.get();
}

// close() drops what arrived unread, all of it: a receive buffer can hold megabytes, and one byte
// left unread turns the close into a reset that throws away the unsent bytes. Here 1 MiB of the
// peer's data waits unread (behind the session tickets) and 200,000 bytes wait unsent.
TEST_P(TlsStream, CloseOverAMebibyteUnreadStillDeliversEveryByte) {
  comm_test::python_server peer("tls_peer.py", {"flood_late_sink", comm_test::pki().good.cert_file,
                                                comm_test::pki().good.key_file});
  auto s = connect_sender(peer, 5s);
  int big = 4 << 20;
  ASSERT_EQ(::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big), 0);
  peer.process.wait_for("^READY$");
  peer.process.write_stdin("flood\n");
  ASSERT_EQ(peer.process.wait_for(R"(^SENT (.*)$)", 10s), std::to_string(1 << 20));
  // Its last segments may still be on their way (the window opens as they come): the close must
  // find them all here, so wait until 1 MiB and the record headers (22 bytes per 16 KiB) are in.
  const int expected = (1 << 20) + 64 * 22;
  int unread = 0;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (::ioctl(s.native_handle(), SIOCINQ, &unread) == 0 && unread < expected &&
         std::chrono::steady_clock::now() < deadline) {
    pollfd idle{-1, 0, 0};
    ::poll(&idle, 1, 5);
  }
  ASSERT_GE(unread, expected) << "the peer's data has not all arrived";
  auto data = random_bytes(200000, 18);
  s.write_all(data.data(), data.size());
  s.close();
  peer.process.write_stdin("go\n");
  EXPECT_EQ(peer.process.wait_for(R"(^GOT (.*)$)", 10s),
            std::to_string(data.size()) + " " + sha256_hex(data.data(), data.size()));
}

// That wait is bounded by the write timeout: a peer that never reads does not hold close() up.
TEST_P(TlsStream, CloseWaitsForUnsentBytesNoLongerThanTheWriteTimeout) {
  comm_test::python_server peer("tls_peer.py", {"late_tickets", comm_test::pki().good.cert_file,
                                                comm_test::pki().good.key_file});
  auto s = connect_sender(peer, 300ms);
  peer.process.wait_for("^FLIGHT$");
  auto data = random_bytes(200000, 17);
  s.write_all(data.data(), data.size());
  const auto start = std::chrono::steady_clock::now();
  s.close();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2s);
  peer.process.write_stdin("go\n");  // lets the peer finish
}

INSTANTIATE_TEST_SUITE_P(Implementations, TlsStream, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});
