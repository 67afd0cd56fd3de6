// socket_stream against independent peers: Python's socket module and socat, started by the test.
#include <gtest/gtest.h>

#include "peers/process.hpp"
#include "stream/stream_helpers.hpp"

using namespace comm;
using namespace stream_test;
using comm_test::peer_process;

namespace {

// Echoes one connection, then prints the sha256 of what it received.
const char* python_echo_server = R"(
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(('127.0.0.1', 0))
s.listen(1)
print('PORT', s.getsockname()[1], flush=True)
c, _ = s.accept()
h = hashlib.sha256()
while True:
    b = c.recv(65536)
    if not b:
        break
    h.update(b)
    c.sendall(b)
c.shutdown(socket.SHUT_WR)
print('SHA256', h.hexdigest(), flush=True)
)";

// Sends lines, reads the echo of each, then reads a bulk payload and prints its digest.
const char* python_client = R"(
import hashlib, socket, sys
c = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
f = c.makefile('rb')
for word in ('alpha', 'beta', 'gamma'):
    c.sendall(word.encode() + b'\r\n')
    print('ECHO', f.readline().decode().rstrip(), flush=True)
c.sendall(b'BULK\n')
h = hashlib.sha256()
n = 0
while True:
    b = f.read(65536)
    if not b:
        break
    h.update(b)
    n += len(b)
print('GOT', n, h.hexdigest(), flush=True)
)";

}  // namespace

TEST(IndependentPeers, ClientAgainstPythonEchoServer) {
  peer_process py({"python3", "-c", python_echo_server});
  std::string port = py.wait_for("^PORT (\\d+)$");
  auto s = open_tcp_stream("127.0.0.1", port, {.read_timeout = 10s});
  auto data = random_bytes(3 << 20, 7);
  std::thread writer([&] {
    s.write_all(data.data(), data.size());
    socket_stream_shutdown(s, direction::output);
  });
  std::vector<char> got(data.size());
  s.read_exact(got.data(), got.size());
  writer.join();
  char extra;
  EXPECT_EQ(s.read_some(&extra, 1), 0u);
  EXPECT_EQ(py.wait_for("^SHA256 ([0-9a-f]+)$"), sha256_hex(data.data(), data.size()));
  EXPECT_EQ(sha256_hex(got.data(), got.size()), sha256_hex(data.data(), data.size()));
  EXPECT_EQ(py.wait_exit(), 0);
}

TEST(IndependentPeers, PythonClientAgainstServer) {
  auto payload = random_bytes(1 << 20, 11);
  server srv = start_up_server(
      [&](socket_stream& s) {
        while (auto line = s.read_line()) {
          if (*line == "BULK") {
            s.write_all(payload.data(), payload.size());
            break;
          }
          s << *line << '\n' << std::flush;
        }
      },
      {.address = "127.0.0.1"});
  peer_process py({"python3", "-c", python_client, std::to_string(srv.local_port())});
  EXPECT_EQ(py.wait_for("^ECHO (.*)$"), "alpha");
  EXPECT_EQ(py.wait_for("^ECHO (.*)$"), "beta");
  EXPECT_EQ(py.wait_for("^ECHO (.*)$"), "gamma");
  EXPECT_EQ(py.wait_for("^GOT (.*)$"), std::to_string(payload.size()) + " " + sha256_hex(payload.data(), payload.size()));
  EXPECT_EQ(py.wait_exit(), 0);
}

TEST(IndependentPeers, SocatClientHalfClosesAndGetsEcho) {
  server srv = start_up_server(
      [](socket_stream& s) {
        std::vector<std::string> lines;
        while (auto line = s.read_line()) lines.push_back(*line);  // until socat half-closes
        for (auto it = lines.rbegin(); it != lines.rend(); ++it) s << *it << '\n';
        s.flush();
      },
      {.address = "127.0.0.1"});
  peer_process socat({"socat", "-t", "5", "-", "TCP:127.0.0.1:" + std::to_string(srv.local_port())});
  socat.write_stdin("one\ntwo\nthree\n");
  socat.close_stdin();
  EXPECT_EQ(socat.read_line(), "three");
  EXPECT_EQ(socat.read_line(), "two");
  EXPECT_EQ(socat.read_line(), "one");
  EXPECT_EQ(socat.wait_exit(), 0);
}
