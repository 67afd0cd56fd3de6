// The fault transport's idea over real sockets: a relay on 127.0.0.1 between a comm client and a
// comm server forwards every byte in random small pieces (1..max bytes per send, seeded), so TLS
// records reach socket_stream and async_io_state split at arbitrary points; it can also cut the
// server-to-client direction (FIN or RST) after a chosen number of bytes. Echoes are compared by
// sha256; a cut must surface as truncation (ssl_errc::truncated), never as a clean end.
#include <gtest/gtest.h>
#include "peers/test_data.hpp"
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <limits>
#include <random>
#include <string>
#include <thread>

#include "comm/async.hpp"
#include "comm/stream.hpp"
#include "comm/tls.hpp"
#include "peers/implementations.hpp"

namespace {

using namespace std::chrono_literals;

using comm_test::random_bytes;
using comm_test::sha256;

// Relays one connection at a time from its own port to `upstream_port`, in random pieces.
class chunking_proxy {
 public:
  chunking_proxy(std::uint16_t upstream_port, std::uint64_t seed, std::size_t max_piece,
                 std::size_t cut_down_after = std::numeric_limits<std::size_t>::max(), bool cut_with_reset = false)
      : upstream_(upstream_port), rng_(seed), max_piece_(max_piece), cut_after_(cut_down_after),
        cut_reset_(cut_with_reset) {
    comm::listen_options lo;
    lo.address = "127.0.0.1";
    listener_ = comm::tcp_listener::open("0", lo);
    thread_ = std::thread([this] { run(); });
  }
  ~chunking_proxy() {
    stop_ = true;
    thread_.join();
  }
  std::uint16_t port() const { return listener_.local_port(); }

 private:
  void run() {
    while (!stop_) {
      auto client = listener_.accept(100ms);
      if (!client) continue;
      comm::connect_options co;
      co.timeout = 5s;
      comm::socket_handle server = comm::connect_to_tcp_server("127.0.0.1", std::to_string(upstream_), co);
      relay(*client, server);
    }
  }
  // Sends `n` bytes in random pieces. False when the receiver is gone.
  bool forward(int to, const char* data, std::size_t n) {
    while (n > 0) {
      std::size_t piece = std::min<std::size_t>(n, 1 + rng_() % max_piece_);
      ssize_t w = ::send(to, data, piece, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }
  void relay(comm::socket_handle& client, comm::socket_handle& server) {
    std::size_t down = 0;  // server -> client bytes so far
    bool up_open = true, down_open = true;
    char buf[4096];
    while (!stop_ && (up_open || down_open)) {
      pollfd p[2] = {{client.get(), static_cast<short>(up_open ? POLLIN : 0), 0},
                     {server.get(), static_cast<short>(down_open ? POLLIN : 0), 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      if (p[0].revents) {
        ssize_t n = ::recv(client.get(), buf, sizeof buf, 0);
        if (n <= 0 || !forward(server.get(), buf, static_cast<std::size_t>(n))) {
          up_open = false;
          ::shutdown(server.get(), SHUT_WR);
        }
      }
      if (p[1].revents) {
        ssize_t n = ::recv(server.get(), buf, std::min(sizeof buf, cut_after_ - down), 0);
        if (n > 0) {
          down += static_cast<std::size_t>(n);
          if (!forward(client.get(), buf, static_cast<std::size_t>(n))) down_open = false;
        }
        if (n <= 0 || down >= cut_after_) {
          down_open = false;
          if (down >= cut_after_ && cut_reset_) {
            linger l{1, 0};
            ::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
            client.reset();
            return;
          }
          ::shutdown(client.get(), SHUT_WR);
          if (down >= cut_after_) {
            client.reset();
            return;
          }
        }
      }
    }
  }

  std::uint16_t upstream_;
  std::mt19937_64 rng_;
  std::size_t max_piece_;
  std::size_t cut_after_;
  bool cut_reset_;
  comm::tcp_listener listener_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class ChunkingProxy : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  comm::ssl_abstract_context server_ctx() {
    comm::ssl_context_options o;
    o.implementation = GetParam();
    o.cert_pem = comm_test::demo_credentials_for_loopback().cert_pem;
    o.key_pem = comm_test::demo_credentials_for_loopback().key_pem;
    return comm::create_ssl_server_context(std::move(o));
  }
  comm::ssl_abstract_context client_ctx() {
    comm::ssl_context_options o;
    o.implementation = GetParam();
    o.trusted_pem = comm_test::demo_credentials_for_loopback().ca_cert_pem;
    o.use_system_trusted = false;
    return comm::create_ssl_client_context(std::move(o));
  }
  comm::socket_stream connect(std::uint16_t port) {
    comm::open_tcp_stream_options o;
    o.timeout = 5s;
    o.read_timeout = 10s;
    o.write_timeout = 10s;
    o.ssl_ctx = client_ctx();
    o.handshake_timeout = 10s;
    return comm::open_tcp_stream("127.0.0.1", std::to_string(port), std::move(o));
  }
  // Sends `data` in pieces and reads the echo back; returns what came back.
  std::string echo(comm::socket_stream& s, const std::string& data) {
    std::string back;
    for (std::size_t off = 0; off < data.size(); off += 8192) {
      std::string piece = data.substr(off, 8192);
      s.write_all(piece);
      s.flush();
      std::string got(piece.size(), '\0');
      s.read_exact(got.data(), got.size());
      back += got;
    }
    return back;
  }
};

void stream_echo(comm::socket_stream& s) {
  char buf[16384];
  for (;;) {
    std::size_t n = s.read_some(buf, sizeof buf);
    if (n == 0) return;
    s.write_all(buf, n);
    s.flush();
  }
}

TEST_P(ChunkingProxy, StreamServerEchoesIdenticallyThroughRandomPieces) {
  comm::server_options so;
  so.address = "127.0.0.1";
  so.ssl_ctx = server_ctx();
  so.handler_error_callback = [](std::exception_ptr) {};
  comm::server srv = comm::start_up_server(stream_echo, so);
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    chunking_proxy proxy(srv.local_port(), seed, seed == 1 ? 1 : 97 * seed);
    auto s = connect(proxy.port());
    const std::string data = random_bytes(seed == 1 ? 20000 : 120000, seed);
    EXPECT_EQ(sha256(echo(s, data)), sha256(data)) << "seed " << seed;
    s.close();
  }
  comm::server_terminate(srv);
}

TEST_P(ChunkingProxy, AsyncAcceptorEchoesIdenticallyThroughRandomPieces) {
  auto loop = comm::create_and_run_wait_state_collection("proxy test");
  std::promise<std::uint16_t> port;
  std::shared_ptr<comm::accepting_handle> acceptor;
  auto ctx = server_ctx();
  comm::apply_in_wait_state_collection_process(*loop, [&] {
    comm::accept_options o;
    o.address = "127.0.0.1";
    o.queue_output = true;
    o.ssl_ctx = ctx;
    acceptor = comm::accept_tcp_connections_creating_async_io_states(
        *loop, "0",
        [](comm::accepting_handle&, comm::async_io_state& st) {
          comm::read_with_checking_options ro;
          ro.error_callback = [](comm::async_io_state& s, std::span<const std::byte>) { comm::close_async_io_state(s); };
          comm::async_io_state_read_with_checking(
              st,
              [](comm::async_io_state& s, std::span<const std::byte> d) {
                comm::async_io_state_write_buffer(s, std::string(reinterpret_cast<const char*>(d.data()), d.size()),
                                                  [](comm::async_io_state&, std::size_t) {});
                comm::async_io_state_discard(s, d.size());
              },
              std::move(ro));
        },
        std::move(o));
    port.set_value(acceptor->local_port());
  });
  const std::uint16_t server_port = port.get_future().get();
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    chunking_proxy proxy(server_port, seed, seed == 11 ? 1 : 61 * (seed - 10));
    auto s = connect(proxy.port());
    const std::string data = random_bytes(seed == 11 ? 20000 : 120000, seed);
    EXPECT_EQ(sha256(echo(s, data)), sha256(data)) << "seed " << seed;
    s.close();
  }
  comm::apply_in_wait_state_collection_process(*loop, [&] {
    comm::close_accepting_handle(*acceptor);
    comm::close_wait_state_collection(*loop);
  });
  comm::wait_state_collection_stop_loop(*loop);
}

// The relay cuts the server's stream partway into a large reply: the client must see truncation.
TEST_P(ChunkingProxy, CutInsideTheServersDataIsTruncationOnTheStream) {
  const std::string big = random_bytes(200000, 7);
  comm::server_options so;
  so.address = "127.0.0.1";
  so.ssl_ctx = server_ctx();
  so.handler_error_callback = [](std::exception_ptr) {};
  comm::server srv = comm::start_up_server(
      [&](comm::socket_stream& s) {
        char c;
        s.read_exact(&c, 1);
        s.write_all(big);
        s.flush();
        while (s.read_some(&c, 1) != 0) {
        }
      },
      so);
  for (bool reset : {false, true}) {
    chunking_proxy proxy(srv.local_port(), 5, 300, 60000, reset);
    auto s = connect(proxy.port());
    s.write_all("x");
    s.flush();
    std::string got;
    try {
      char buf[8192];
      for (;;) {
        std::size_t n = s.read_some(buf, sizeof buf);
        if (n == 0) break;
        got.append(buf, n);
      }
      ADD_FAILURE() << "clean end after " << got.size() << " bytes although the connection was cut"
                    << (reset ? " (reset)" : " (eof)");
    } catch (const comm::ssl_condition& e) {
      EXPECT_EQ(static_cast<const std::system_error&>(e).code(), make_error_code(comm::ssl_errc::truncated)) << e.what();
    } catch (const comm::socket_io_error& e) {
      ADD_FAILURE() << "not reported as truncation: " << e.what();
    }
    EXPECT_LT(got.size(), big.size());
    EXPECT_EQ(got, big.substr(0, got.size())) << "bytes before the cut must be intact";
  }
  comm::server_terminate(srv);
}

INSTANTIATE_TEST_SUITE_P(Implementations, ChunkingProxy, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name());

}  // namespace
