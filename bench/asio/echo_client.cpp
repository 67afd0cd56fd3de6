// Asio echo latency client: one TLS (or plain) connection, --msg-byte requests, one in flight,
// async_write then async_read of the whole reply, each round trip timed.
#include <cstdio>
#include <memory>
#include <vector>

#include "asio_common.hpp"

using namespace bench_asio;

template <class Stream>
class pinger {
 public:
  pinger(Stream& s, std::size_t msg, long long warmup, long long count)
      : stream_(s), out_(msg, 'p'), in_(msg), warmup_(warmup), total_(warmup + count) {
    us.reserve(static_cast<std::size_t>(count));
  }
  void start() { next(); }
  std::vector<double> us;

 private:
  void next() {
    if (i_ == total_) return;
    t0_ = bench::clock::now();
    asio::async_write(stream_, asio::buffer(out_), [this](std::error_code ec, std::size_t) {
      if (ec) throw std::system_error(ec, "write");
      asio::async_read(stream_, asio::buffer(in_), [this](std::error_code ec2, std::size_t) {
        if (ec2) throw std::system_error(ec2, "read");
        if (i_++ >= warmup_) us.push_back(bench::seconds_since(t0_) * 1e6);
        next();
      });
    });
  }
  Stream& stream_;
  std::vector<char> out_, in_;
  long long warmup_, total_, i_ = 0;
  bench::clock::time_point t0_;
};

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  asio::io_context io;
  const auto msg = static_cast<std::size_t>(a.num("msg", 64));
  const auto warmup = a.num("warmup", 1000), count = a.num("count", 20000);
  tcp::socket sock(io);
  sock.connect(loopback(static_cast<unsigned short>(a.num("port", 0))));
  sock.set_option(tcp::no_delay(true));
  std::vector<double> us;
  if (a.flag("tls")) {
    auto ctx = client_context(a);
    ssl_socket stream(std::move(sock), ctx);
    stream.handshake(asio::ssl::stream_base::client);
    pinger<ssl_socket> p(stream, msg, warmup, count);
    p.start();
    io.run();
    us = std::move(p.us);
  } else {
    pinger<tcp::socket> p(sock, msg, warmup, count);
    p.start();
    io.run();
    us = std::move(p.us);
  }
  bench::json_line()
      .add("p50_us", bench::percentile(us, 50))
      .add("p99_us", bench::percentile(us, 99))
      .add("p999_us", bench::percentile(us, 99.9))
      .print();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_asio_echo_client: %s\n", e.what());
  return 1;
}
