// A TLS start_up_server keeps serving well-behaved clients while others send plain HTTP, stall
// in the middle of the handshake, or reset.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "comm/stream.hpp"
#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using namespace std::chrono_literals;

class ServerResilience : public ::testing::TestWithParam<comm::ssl_implementation> {};

comm::socket_handle raw_connect(std::uint16_t port) {
  return comm::connect_to_tcp_server("127.0.0.1", std::to_string(port));
}

TEST_P(ServerResilience, GoodClientsAreServedAmongHostileOnes) {
  std::atomic<int> tls_errors{0};
  comm::server_options so;
  so.address = "127.0.0.1";
  so.max_threads = 4;
  so.ssl_ctx = server_with(GetParam(), pki().good);
  so.handshake_timeout = 500ms;
  so.stream.read_timeout = 5s;
  so.tls_error_callback = [&](const std::exception&) { ++tls_errors; };
  comm::server srv = comm::start_up_server(
      [](comm::socket_stream& s) {
        while (auto line = s.read_line()) {
          s.write_all(*line + "\n");
          s.flush();
        }
      },
      so);
  const auto port = srv.local_port();

  std::vector<comm::socket_handle> hostile;
  // Stalled: a TLS record header and nothing more.
  for (int i = 0; i < 6; ++i) {
    hostile.push_back(raw_connect(port));
    const unsigned char partial[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
    ::send(hostile.back().get(), partial, sizeof partial, MSG_NOSIGNAL);
  }
  // Plain HTTP.
  for (int i = 0; i < 3; ++i) {
    hostile.push_back(raw_connect(port));
    const char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ::send(hostile.back().get(), get, sizeof get - 1, MSG_NOSIGNAL);
  }
  // Reset right away.
  for (int i = 0; i < 3; ++i) {
    comm::socket_handle h = raw_connect(port);
    ::send(h.get(), "\x16\x03\x01", 3, MSG_NOSIGNAL);
    linger l{1, 0};
    ::setsockopt(h.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }

  comm::open_tcp_stream_options co;
  co.ssl_ctx = trusting_client(GetParam());
  co.handshake_timeout = 5s;
  co.read_timeout = 5s;
  for (int i = 0; i < 5; ++i) {
    auto s = comm::open_tcp_stream("localhost", std::to_string(port), co);
    const std::string msg = "good client " + std::to_string(i);
    s.write_all(msg + "\n");
    s.flush();
    EXPECT_EQ(s.read_line(), msg);
  }
  // The plain-HTTP clients were answered by closing (no crash, nothing echoed).
  for (std::size_t i = 6; i < 9; ++i) {
    char buf[512];
    pollfd p{hostile[i].get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    ssize_t n = ::recv(hostile[i].get(), buf, sizeof buf, 0);
    EXPECT_TRUE(n <= 0 || static_cast<unsigned char>(buf[0]) == 0x15) << "got " << n << " bytes";  // alert or close
  }
  EXPECT_TRUE(comm::server_terminate(srv));
  EXPECT_GE(tls_errors.load(), 3);
}

INSTANTIATE_TEST_SUITE_P(Implementations, ServerResilience, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

}  // namespace
}  // namespace comm_test
