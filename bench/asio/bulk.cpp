// Asio bulk throughput over one connection (TLS or plain TCP), written the way Asio's examples
// are: one io_context, async_read_some on the receiving side, async_write of whole messages on
// the sending side. The client sends --total bytes in --size writes; the server answers one byte
// once it has them all; the client times first write to that byte.
#include <cstdio>
#include <memory>
#include <vector>

#include "asio_common.hpp"

using namespace bench_asio;

template <class Stream>
class receiver : public std::enable_shared_from_this<receiver<Stream>> {
 public:
  receiver(Stream s, std::size_t size, std::uint64_t total) : stream_(std::move(s)), buf_(size), left_(total) {}
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
    stream_.async_read_some(asio::buffer(buf_), [self](std::error_code ec, std::size_t n) {
      if (ec) return;
      self->left_ -= std::min<std::uint64_t>(n, self->left_);
      if (self->left_ == 0) {
        asio::async_write(self->stream_, asio::buffer(self->ack_, 1), [self](std::error_code, std::size_t) {});
      } else {
        self->do_read();
      }
    });
  }
  Stream stream_;
  std::vector<char> buf_;
  std::uint64_t left_;
  char ack_[1] = {'!'};
};

template <class Stream>
class sender : public std::enable_shared_from_this<sender<Stream>> {
 public:
  sender(Stream s, std::size_t size, std::uint64_t total) : stream_(std::move(s)), buf_(size, 'x'), left_(total) {}
  void start() {
    auto self = this->shared_from_this();
    if constexpr (std::is_same_v<Stream, ssl_socket>) {
      stream_.async_handshake(asio::ssl::stream_base::client, [self](std::error_code ec) {
        if (ec) throw std::system_error(ec, "handshake");
        self->t0_ = bench::clock::now();
        self->do_write();
      });
    } else {
      t0_ = bench::clock::now();
      do_write();
    }
  }
  double seconds = 0;

 private:
  void do_write() {
    auto self = this->shared_from_this();
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size(), left_));
    asio::async_write(stream_, asio::buffer(buf_.data(), n), [self, n](std::error_code ec, std::size_t) {
      if (ec) throw std::system_error(ec, "write");
      self->left_ -= n;
      if (self->left_ > 0) return self->do_write();
      asio::async_read(self->stream_, asio::buffer(self->ack_, 1), [self](std::error_code ec2, std::size_t) {
        if (ec2) throw std::system_error(ec2, "read ack");
        self->seconds = bench::seconds_since(self->t0_);
      });
    });
  }
  Stream stream_;
  std::vector<char> buf_;
  std::uint64_t left_;
  char ack_[1];
  bench::clock::time_point t0_;
};

int main(int argc, char** argv) {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  const bool tls = a.flag("tls");
  const auto size = static_cast<std::size_t>(a.num("size", 16384));
  const auto total = static_cast<std::uint64_t>(a.num("total", 64 << 20));
  asio::io_context io;

  if (a.require("role") == "server") {
    std::optional<asio::ssl::context> ctx;
    if (tls) ctx.emplace(server_context(a));
    tcp::acceptor acceptor(io, loopback(0));
    std::function<void()> do_accept = [&] {
      acceptor.async_accept([&](std::error_code ec, tcp::socket s) {
        if (!ec) {
          if (tls)
            std::make_shared<receiver<ssl_socket>>(ssl_socket(std::move(s), *ctx), size, total)->start();
          else
            std::make_shared<receiver<tcp::socket>>(std::move(s), size, total)->start();
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

  auto port = static_cast<unsigned short>(a.num("port", 0));
  tcp::socket sock(io);
  sock.connect(loopback(port));
  sock.set_option(tcp::no_delay(true));
  double seconds;
  if (tls) {
    auto ctx = client_context(a);
    auto s = std::make_shared<sender<ssl_socket>>(ssl_socket(std::move(sock), ctx), size, total);
    s->start();
    io.run();
    seconds = s->seconds;
  } else {
    auto s = std::make_shared<sender<tcp::socket>>(std::move(sock), size, total);
    s->start();
    io.run();
    seconds = s->seconds;
  }
  bench::json_line()
      .add("mib_s", static_cast<double>(total) / (1024.0 * 1024.0) / seconds)
      .add("seconds", seconds)
      .add("cpu_s", bench::cpu_seconds())
      .print();
  return 0;
}
