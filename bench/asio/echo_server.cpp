// Asio TLS (or plain) echo server, as in Asio's own SSL server example: one io_context per loop,
// a session per connection with a 1024-byte buffer, async_read_some then async_write.
// --loops=N runs N io_contexts on N threads, each with its own acceptor on the same port
// (SO_REUSEPORT), the same layout as comm's multi-loop server.
#include <cstdio>
#include <memory>
#include <vector>

#include "asio_common.hpp"

using namespace bench_asio;

template <class Stream>
class session : public std::enable_shared_from_this<session<Stream>> {
 public:
  explicit session(Stream s) : stream_(std::move(s)) {}
  void start() {
    if constexpr (std::is_same_v<Stream, ssl_socket>) {
      auto self = this->shared_from_this();
      stream_.async_handshake(asio::ssl::stream_base::server, [self](std::error_code ec) {
        if (!ec) self->do_read();
      });
    } else {
      do_read();
    }
  }

 private:
  void do_read() {
    auto self = this->shared_from_this();
    stream_.async_read_some(asio::buffer(data_, max_length), [self](std::error_code ec, std::size_t n) {
      if (!ec) self->do_write(n);
    });
  }
  void do_write(std::size_t n) {
    auto self = this->shared_from_this();
    asio::async_write(stream_, asio::buffer(data_, n), [self](std::error_code ec, std::size_t) {
      if (!ec) self->do_read();
    });
  }
  Stream stream_;
  enum { max_length = 1024 };
  char data_[max_length];
};

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

struct loop {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::ssl::context* ctx = nullptr;

  void listen(unsigned short port) {
    auto ep = loopback(port);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.set_option(reuse_port(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
    do_accept();
  }
  void do_accept() {
    acceptor.async_accept([this](std::error_code ec, tcp::socket s) {
      if (!ec) {
        s.set_option(tcp::no_delay(true));
        if (ctx)
          std::make_shared<session<ssl_socket>>(ssl_socket(std::move(s), *ctx))->start();
        else
          std::make_shared<session<tcp::socket>>(std::move(s))->start();
      }
      do_accept();
    });
  }
};

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  bench::raise_nofile();
  std::optional<asio::ssl::context> ctx;
  if (a.flag("tls")) ctx.emplace(server_context(a));
  const auto n = static_cast<std::size_t>(std::max<long long>(1, a.num("loops", 1)));
  std::vector<std::unique_ptr<loop>> loops;
  unsigned short port = 0;
  for (std::size_t i = 0; i < n; ++i) {
    loops.push_back(std::make_unique<loop>());
    loops.back()->ctx = ctx ? &*ctx : nullptr;
    loops.back()->listen(port);
    port = loops.back()->acceptor.local_endpoint().port();
  }
  bench::announce_port(port);
  std::vector<std::thread> threads;
  for (auto& l : loops) threads.emplace_back([&l] { l->io.run(); });
  bench::wait_stdin_eof();
  for (auto& l : loops) l->io.stop();
  for (auto& t : threads) t.join();
  bench::json_line().add("cpu_s", bench::cpu_seconds()).add("rss_kib", static_cast<double>(bench::rss_kib())).print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_asio_echo_server: %s\n", e.what());
  return 1;
}
