// Plain TCP bulk throughput over loopback: socket_stream against a raw send/recv loop, in one run.
// Runs alternate (stream, raw, stream, raw, ...) so machine noise hits both alike; the median of
// each side is reported with their ratio (goal: socket_stream >= 0.9x raw).
//
//   bench_stream_throughput [--mib N] [--chunk BYTES] [--runs N]
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/stream.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct config {
  std::size_t total = 512u << 20;
  std::size_t chunk = 16 * 1024;
  int runs = 5;
};

std::pair<comm::socket_handle, comm::socket_handle> connect_pair() {
  auto l = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  auto c = comm::connect_to_tcp_server("127.0.0.1", std::to_string(l.local_port()));
  auto s = l.accept(std::chrono::seconds(5));
  if (!s) throw std::runtime_error("accept timed out");
  return {std::move(c), std::move(*s)};
}

// MiB/s of sending cfg.total bytes in cfg.chunk writes, read in cfg.chunk reads.
double run_raw(const config& cfg) {
  auto [c, s] = connect_pair();
  std::vector<char> out(cfg.chunk, 'r');
  auto t0 = clock_type::now();
  std::thread sender([&, fd = c.get()] {
    std::size_t left = cfg.total;
    while (left > 0) {
      std::size_t n = std::min(left, out.size());
      ssize_t w = ::send(fd, out.data(), n, MSG_NOSIGNAL);
      if (w <= 0) std::abort();
      left -= static_cast<std::size_t>(w);
    }
    ::shutdown(fd, SHUT_WR);
  });
  std::vector<char> in(cfg.chunk);
  std::size_t got = 0;
  for (;;) {
    ssize_t r = ::recv(s.get(), in.data(), in.size(), 0);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  sender.join();
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (got != cfg.total) std::abort();
  return static_cast<double>(got) / (1 << 20) / secs;
}

double run_stream(const config& cfg) {
  auto [c, s] = connect_pair();
  comm::socket_stream client(std::move(c));
  comm::socket_stream server(std::move(s));
  std::vector<char> out(cfg.chunk, 's');
  auto t0 = clock_type::now();
  std::thread sender([&] {
    std::size_t left = cfg.total;
    while (left > 0) {
      std::size_t n = std::min(left, out.size());
      client.write_all(out.data(), n);
      left -= n;
    }
    comm::socket_stream_shutdown(client, comm::direction::output);
  });
  std::vector<char> in(cfg.chunk);
  std::size_t got = 0;
  for (;;) {
    std::size_t r = server.read_some(in.data(), in.size());
    if (r == 0) break;
    got += r;
  }
  sender.join();
  double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (got != cfg.total) std::abort();
  return static_cast<double>(got) / (1 << 20) / secs;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    long v = std::strtol(argv[i + 1], nullptr, 10);
    if (v <= 0) {
      std::fprintf(stderr, "bad value for %s\n", a.c_str());
      return 2;
    }
    if (a == "--mib") cfg.total = static_cast<std::size_t>(v) << 20;
    else if (a == "--chunk") cfg.chunk = static_cast<std::size_t>(v);
    else if (a == "--runs") cfg.runs = static_cast<int>(v);
    else {
      std::fprintf(stderr, "usage: %s [--mib N] [--chunk BYTES] [--runs N]\n", argv[0]);
      return 2;
    }
  }
  std::vector<double> stream, raw;
  for (int i = 0; i < cfg.runs; ++i) {
    stream.push_back(run_stream(cfg));
    raw.push_back(run_raw(cfg));
  }
  double ms = median(stream), mr = median(raw);
  std::printf("plain TCP bulk over loopback, %zu MiB per run, %zu-byte writes and reads, median of %d\n",
              cfg.total >> 20, cfg.chunk, cfg.runs);
  std::printf("socket_stream  %10.1f MiB/s\n", ms);
  std::printf("raw send/recv  %10.1f MiB/s\n", mr);
  std::printf("ratio          %10.3f x raw (goal >= 0.9)\n", ms / mr);
  return 0;
}
