// Asio TLS handshake rate: the client keeps --inflight connections going, each one
// connect + full (or, with --resume, resumed) TLS 1.3 handshake + a one-byte echo (so that the
// server has finished its side and the client has its session tickets), then close.
#include <cstdio>
#include <memory>

#include "asio_common.hpp"

using namespace bench_asio;

class server_session : public std::enable_shared_from_this<server_session> {
 public:
  server_session(tcp::socket s, asio::ssl::context& ctx) : stream_(std::move(s), ctx) {}
  void start() {
    auto self = shared_from_this();
    stream_.async_handshake(asio::ssl::stream_base::server, [self](std::error_code ec) {
      if (ec) return;
      asio::async_read(self->stream_, asio::buffer(self->byte_, 1), [self](std::error_code ec2, std::size_t) {
        if (ec2) return;
        asio::async_write(self->stream_, asio::buffer(self->byte_, 1), [self](std::error_code, std::size_t) {});
      });
    });
  }

 private:
  ssl_socket stream_;
  char byte_[1];
};

struct client_state {
  asio::io_context& io;
  asio::ssl::context& ctx;
  tcp::endpoint target;
  bool resume;
  bench::clock::time_point deadline;
  SSL_SESSION* session = nullptr;  // the latest ticket: what a client-side cache would hold
  long done = 0, resumed = 0, errors = 0;
};

class client_attempt : public std::enable_shared_from_this<client_attempt> {
 public:
  explicit client_attempt(client_state& st) : st_(st), stream_(st.io, st.ctx) {}
  void start() {
    auto self = shared_from_this();
    stream_.lowest_layer().async_connect(st_.target, [self](std::error_code ec) {
      if (ec) return self->finish(false);
      self->stream_.lowest_layer().set_option(tcp::no_delay(true));
      if (self->st_.resume && self->st_.session) SSL_set_session(self->stream_.native_handle(), self->st_.session);
      self->stream_.async_handshake(asio::ssl::stream_base::client, [self](std::error_code ec2) {
        if (ec2) return self->finish(false);
        asio::async_write(self->stream_, asio::buffer(self->byte_, 1), [self](std::error_code ec3, std::size_t) {
          if (ec3) return self->finish(false);
          asio::async_read(self->stream_, asio::buffer(self->byte_, 1),
                           [self](std::error_code ec4, std::size_t) { self->finish(!ec4); });
        });
      });
    });
  }

 private:
  void finish(bool ok) {
    SSL* ssl = stream_.native_handle();
    if (ok) {
      ++st_.done;
      if (SSL_session_reused(ssl)) ++st_.resumed;
      if (st_.resume) {
        if (st_.session) SSL_SESSION_free(st_.session);
        // A copy: the SSL marks its own session object not resumable when it is freed without
        // close_notify, as a client cache that stores sessions would not be affected by.
        st_.session = SSL_SESSION_dup(SSL_get0_session(ssl));
      }
    } else {
      ++st_.errors;
    }
    if (bench::clock::now() < st_.deadline && st_.errors < 1000) std::make_shared<client_attempt>(st_)->start();
  }
  client_state& st_;
  ssl_socket stream_;
  char byte_[1] = {'h'};
};

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  asio::io_context io;

  if (a.require("role") == "server") {
    auto ctx = server_context(a);
    tcp::acceptor acceptor(io, loopback(0));
    std::function<void()> do_accept = [&] {
      acceptor.async_accept([&](std::error_code ec, tcp::socket s) {
        if (!ec) {
          s.set_option(tcp::no_delay(true));
          std::make_shared<server_session>(std::move(s), ctx)->start();
        }
        do_accept();
      });
    };
    do_accept();
    bench::announce_port(acceptor.local_endpoint().port());
    auto stopper = stop_on_stdin_eof(io);
    io.run();
    stopper.join();
    bench::json_line().add("cpu_s", bench::cpu_seconds()).add("rss_kib", static_cast<double>(bench::rss_kib())).print();
    return 0;
  }

  auto ctx = client_context(a);
  const double seconds = static_cast<double>(a.num("millis", 2000)) / 1000.0;
  client_state st{io, ctx, loopback(static_cast<unsigned short>(a.num("port", 0))), a.flag("resume"),
                  bench::clock::now() + std::chrono::milliseconds(a.num("millis", 2000))};
  auto t0 = bench::clock::now();
  for (long long i = 0; i < a.num("inflight", 1); ++i) std::make_shared<client_attempt>(st)->start();
  io.run();
  double elapsed = bench::seconds_since(t0);
  if (st.session) SSL_SESSION_free(st.session);
  (void)seconds;
  return bench::print_handshakes(static_cast<double>(st.done) / elapsed, st.done, st.resumed, st.errors);
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_asio_handshake: %s\n", e.what());
  return 1;
}
