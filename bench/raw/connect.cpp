// Raw floor of the handshake workloads: what a connection costs without TLS. Each of --inflight
// client threads repeats connect + a 1-byte echo + close for --millis, as the handshake programs
// do around their TLS handshake; the server accepts on one thread and echoes on a thread per
// connection, as start_up_server hands each connection to a worker. Reports connections/s and,
// with the server's CPU, what TCP set-up and teardown alone cost per connection on this machine.
#include <cstdio>
#include <thread>
#include <vector>

#include "../common/bench_common.hpp"
#include "raw_socket.hpp"

using namespace bench_raw;

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);

  if (a.require("role") == "server") {
    run_server(
        [](int c) {
          char b;
          recv_all(c, &b, 1);
          send_all(c, &b, 1);  // then close, as the handshake servers' handlers return
        },
        true);
  }

  const auto port = static_cast<unsigned>(a.num("port", 0));
  const auto deadline = bench::clock::now() + std::chrono::milliseconds(a.num("millis", 2000));
  auto r = bench::repeat_on_threads(a.num("inflight", 1), deadline, [&] {
    fd_guard s(connect_loopback(port));
    char b = 'h';
    send_all(s.fd, &b, 1);
    recv_all(s.fd, &b, 1);
  });
  if (!r.first_error.empty()) std::fprintf(stderr, "bench_raw_connect: %s\n", r.first_error.c_str());
  return bench::print_handshakes(r.per_second(), r.done, std::nullopt, r.errors);
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_raw_connect: %s\n", e.what());
  return 1;
}
