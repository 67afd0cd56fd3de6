// commcat as a user runs it: the built binary as a subprocess, against real peers (Python's
// socket and ssl modules, openssl s_server) started by each test on 127.0.0.1 with free ports.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "peers/certificates.hpp"
#include "peers/implementations.hpp"
#include "tool_helpers.hpp"

namespace {

using commcat_test::commcat;
using commcat_test::process;
using commcat_test::s_server;
using namespace std::chrono_literals;
using comm_test::pki;

std::vector<std::string> cat(std::vector<std::string> args) {
  args.insert(args.begin(), commcat);
  return args;
}

std::size_t count_lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Python peers. Each prints its port on the first line of stdout once it listens.
const char* plain_echo_once = R"(
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.settimeout(10); data = b""
while True:
    d = c.recv(65536)
    if not d: break
    data += d
c.sendall(data); c.close()
)";

// Opens N connections, sends on each, then reads every echo before closing any: only a
// concurrent server can answer all of them.
const char* concurrent_echo_clients = R"(
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
for i, c in enumerate(conns): c.sendall(("message %d from client %d\n" % (i * 7, i)).encode())
ok = 0
for i, c in reversed(list(enumerate(conns))):
    want = ("message %d from client %d\n" % (i * 7, i)).encode(); got = b""
    while len(got) < len(want):
        d = c.recv(65536)
        if not d: break
        got += d
    ok += got == want
for c in conns:
    c.shutdown(socket.SHUT_WR)
    ok += c.recv(1) == b""
    c.close()
print("echoed %d of %d" % (ok, 2 * n), flush=True)
)";

const char* tls_echo_client = R"(
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10), server_hostname="localhost")
c.sendall(b"hello over tls\n"); got = b""
while len(got) < 15:
    d = c.recv(65536)
    if not d: break
    got += d
c.unwrap()  # close_notify both ways
print("echo: " + got.decode().strip(), flush=True)
)";

// Sends data over TLS, then dies: TCP closes without close_notify.
const char* tls_truncating_server = R"(
import socket, ssl, sys, os
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); t = ctx.wrap_socket(c, server_side=True)
t.sendall(b"partial data\n")
os._exit(0)
)";

std::vector<std::string> python(const char* script, std::vector<std::string> args = {}) {
  std::vector<std::string> argv = {"python3", "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::string port_of(process& p) {
  auto port = p.stdout_value("", 10s);
  return port.value_or("");
}

TEST(Commcat, HelpExitsZeroAndPrintsUsage) {
  process p(cat({"--help"}));
  EXPECT_EQ(p.wait(), 0);
  EXPECT_NE(p.out().find("usage: commcat connect HOST PORT"), std::string::npos);
  EXPECT_NE(p.out().find("--verify-client"), std::string::npos);
  EXPECT_EQ(p.err(), "");
}

TEST(Commcat, BadUsageExitsTwoWithOneLineNamingTheProblem) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "missing command"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"connect", "localhost"}, "missing arguments"},
      {{"connect", "localhost", "80", "--bogus"}, "unknown option --bogus"},
      {{"listen", "0", "--tls", "--verify-client", "required", "--cert", "c", "--key", "k"}, "needs --ca-file"},
      {{"connect", "localhost", "80", "--min-tls", "1.1"}, "--min-tls: expected 1.2 or 1.3"},
      {{"connect", "localhost", "99999"}, "invalid port '99999'"},
  };
  for (const auto& [args, message] : cases) {
    process p(cat(args));
    EXPECT_EQ(p.wait(), 2) << message;
    EXPECT_EQ(p.err().rfind("commcat: ", 0), 0u) << p.err();
    EXPECT_NE(p.err().find(message), std::string::npos) << p.err();
    EXPECT_EQ(count_lines(p.err()), 1u) << p.err();
    EXPECT_EQ(p.out(), "");
  }
}

TEST(Commcat, ConnectToRefusedPortExitsOneNamingHostAndPort) {
  // A bound socket that does not listen: connecting to it is refused, and nobody else gets the port.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));

  process p(cat({"connect", "127.0.0.1", port}));
  p.close_stdin();
  EXPECT_EQ(p.wait(), 1);
  ::close(fd);
  EXPECT_EQ(p.err().rfind("commcat: ", 0), 0u) << p.err();
  EXPECT_NE(p.err().find("127.0.0.1:" + port), std::string::npos) << p.err();
  EXPECT_NE(lower(p.err()).find("refused"), std::string::npos) << p.err();
  EXPECT_EQ(count_lines(p.err()), 1u) << p.err();
}

TEST(Commcat, ConnectSendsStdinAndPrintsTheReplyOfAPythonPeer) {
  process peer(python(plain_echo_once));
  const auto port = port_of(peer);
  ASSERT_FALSE(port.empty()) << peer.err();

  process p(cat({"connect", "127.0.0.1", port}));
  std::string input;
  for (int i = 0; i < 2000; ++i) input += "line " + std::to_string(i) + " of the input\n";
  p.write_stdin(input);
  p.close_stdin();  // half-close: the peer sees EOF, echoes everything and closes
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.out(), input);
  EXPECT_EQ(p.err(), "");
  EXPECT_EQ(peer.wait(), 0);
}

TEST(Commcat, ListenRelaysOneClientBothWays) {
  process p(cat({"listen", "0"}));
  auto port = p.stderr_value("listening on ");
  ASSERT_TRUE(port) << p.err();
  process client(python(R"(
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
c.sendall(b"from the client\n"); c.shutdown(socket.SHUT_WR); got = b""
while True:
    d = c.recv(65536)
    if not d: break
    got += d
sys.stdout.write(got.decode()); sys.stdout.flush()
)",
                        {*port}));
  ASSERT_TRUE(p.wait_stdout("from the client\n")) << p.err();
  p.write_stdin("from the listener\n");
  p.close_stdin();
  EXPECT_EQ(client.wait(), 0) << client.err();
  EXPECT_EQ(client.out(), "from the listener\n");
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.out(), "from the client\n");
}

TEST(Commcat, ListenEchoServesConcurrentPythonClientsAndStopsOnSigterm) {
  process p(cat({"listen", "0", "--echo"}));
  auto port = p.stderr_value("listening on ");
  ASSERT_TRUE(port) << p.err();
  process clients(python(concurrent_echo_clients, {*port, "20"}));
  EXPECT_EQ(clients.wait(20s), 0) << clients.err();
  EXPECT_EQ(clients.out(), "echoed 40 of 40\n");
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 0) << p.err();
}

TEST(Commcat, ListenEchoOnTwoLoopsSharingThePortServesEveryClient) {
  process p(cat({"listen", "0", "--echo", "--loops", "2"}));
  auto port = p.stderr_value("listening on ");
  ASSERT_TRUE(port) << p.err();
  process clients(python(concurrent_echo_clients, {*port, "40"}));
  EXPECT_EQ(clients.wait(20s), 0) << clients.err();
  EXPECT_EQ(clients.out(), "echoed 80 of 80\n");
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.err(), "listening on " + *port + "\n");
}

// The TLS cases run for each implementation commcat can be told to use.
class CommcatTls : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  std::string impl() const { return std::string(comm::to_string(GetParam())); }
};

TEST_P(CommcatTls, ListenEchoServesPythonSslClientAndAnswersCloseNotify) {
  process p(cat({"listen", "0", "--echo", "--cert", pki().good.cert_file, "--key", pki().good.key_file,
                 "--implementation", impl()}));
  auto port = p.stderr_value("listening on ");
  ASSERT_TRUE(port) << p.err();
  process client(python(tls_echo_client, {*port, pki().ca_file}));
  EXPECT_EQ(client.wait(20s), 0) << client.err();
  EXPECT_EQ(client.out(), "echo: hello over tls\n");
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.err(), "listening on " + *port + "\n");
}

TEST_P(CommcatTls, ConnectVerifiesAgainstTheTestCaAndExchangesWithOpensslServer) {
  s_server server(pki().good);
  ASSERT_FALSE(server.port.empty()) << server.p.err();

  process p(cat({"connect", "127.0.0.1", server.port, "--ca-file", pki().ca_file, "--servername", "localhost",
                 "--timeout", "10", "--implementation", impl()}));
  p.write_stdin("hello from commcat\n");
  ASSERT_TRUE(server.p.wait_stdout("hello from commcat\n")) << server.p.out() << p.err();
  server.p.write_stdin("<reply from s_server>\n");
  ASSERT_TRUE(p.wait_stdout("<reply from s_server>\n")) << p.err();
  p.close_stdin();  // close_notify; s_server answers with its own and closes
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.out(), "<reply from s_server>\n");
  EXPECT_EQ(p.err(), "");
}

TEST_P(CommcatTls, ConnectRejectsAServerCertificateForAnotherHost) {
  s_server server(pki().wrong_host);
  ASSERT_FALSE(server.port.empty()) << server.p.err();
  process p(cat({"connect", "127.0.0.1", server.port, "--ca-file", pki().ca_file, "--servername", "localhost",
                 "--implementation", impl()}));
  EXPECT_EQ(p.wait(), 1);
  EXPECT_EQ(p.out(), "");
  EXPECT_EQ(p.err().rfind("commcat: ", 0), 0u) << p.err();
  EXPECT_EQ(count_lines(p.err()), 1u) << p.err();
  EXPECT_NE(p.err().find("127.0.0.1:" + server.port), std::string::npos) << p.err();
  EXPECT_NE(lower(p.err()).find("mismatch"), std::string::npos) << p.err();
}

// A TLS client for `commcat listen`: sends a line, prints what comes back until the listener's
// close_notify, then answers it. argv: port, CA file, [certificate chain, key].
const char* tls_listen_client = R"(
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
if len(sys.argv) > 3: ctx.load_cert_chain(sys.argv[3], sys.argv[4])
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10), server_hostname="localhost")
c.sendall(b"from the tls client\n"); got = b""
while True:
    d = c.recv(65536)
    if not d: break
    got += d
c.unwrap()
sys.stdout.write(got.decode()); sys.stdout.flush()
)";

TEST_P(CommcatTls, ListenVerifiesAClientCertificateAndRelaysBothWays) {
  process p(cat({"listen", "0", "--cert", pki().good.cert_file, "--key", pki().good.key_file, "--verify-client",
                 "required", "--ca-file", pki().ca_file, "--implementation", impl()}));
  auto port = p.stderr_value("listening on ");
  ASSERT_TRUE(port) << p.err();
  process client(python(tls_listen_client, {*port, pki().ca_file, pki().client.cert_file, pki().client.key_file}));
  ASSERT_TRUE(p.wait_stdout("from the tls client\n")) << p.err() << client.err();
  p.write_stdin("from the listener\n");
  p.close_stdin();  // close_notify to the client, which answers with its own
  EXPECT_EQ(client.wait(), 0) << client.err();
  EXPECT_EQ(client.out(), "from the listener\n");
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.out(), "from the tls client\n");
  EXPECT_EQ(p.err(), "listening on " + *port + "\n");
}

TEST_P(CommcatTls, ListenRefusesAClientWithoutCertificateWhenOneIsRequired) {
  process p(cat({"listen", "0", "--cert", pki().good.cert_file, "--key", pki().good.key_file, "--verify-client",
                 "required", "--ca-file", pki().ca_file, "--implementation", impl()}));
  auto port = p.stderr_value("listening on ");
  ASSERT_TRUE(port) << p.err();
  process client(python(tls_listen_client, {*port, pki().ca_file}));
  p.close_stdin();
  EXPECT_EQ(p.wait(), 1) << p.err();
  EXPECT_NE(client.wait(), 0);  // its handshake or first read fails too
  EXPECT_EQ(p.out(), "");
  const std::string err = p.err().substr(p.err().find('\n') + 1);  // after "listening on"
  EXPECT_EQ(err.rfind("commcat: ", 0), 0u) << err;
  EXPECT_EQ(count_lines(err), 1u) << err;
  EXPECT_NE(lower(err).find("certificate"), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(Implementations, CommcatTls, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

TEST(Commcat, TlsConnectInsecureAcceptsASelfSignedServer) {
  s_server server(pki().self_signed);
  ASSERT_FALSE(server.port.empty()) << server.p.err();
  process p(cat({"connect", "127.0.0.1", server.port, "--insecure"}));
  p.write_stdin("insecure hello\n");
  EXPECT_TRUE(server.p.wait_stdout("insecure hello\n")) << p.err();
  server.p.write_stdin("<insecure reply>\n");
  EXPECT_TRUE(p.wait_stdout("<insecure reply>\n")) << p.err();
  p.close_stdin();
  EXPECT_EQ(p.wait(), 0) << p.err();
}

TEST(Commcat, TlsConnectRejectsASelfSignedServerWithoutInsecure) {
  s_server server(pki().self_signed);
  ASSERT_FALSE(server.port.empty()) << server.p.err();
  process p(cat({"connect", "127.0.0.1", server.port, "--tls", "--ca-file", pki().ca_file}));
  EXPECT_EQ(p.wait(), 1);
  EXPECT_EQ(p.out(), "");
  EXPECT_EQ(p.err().rfind("commcat: ", 0), 0u) << p.err();
  EXPECT_EQ(count_lines(p.err()), 1u) << p.err();
  EXPECT_NE(lower(p.err()).find("verif"), std::string::npos) << p.err();
  EXPECT_NE(lower(p.err()).find("self"), std::string::npos) << p.err();
}

TEST(Commcat, TlsConnectTimeoutBoundsAServerThatNeverAnswers) {
  // Accepts TCP, then stays silent: the handshake can only end by the timeout.
  process peer(python(R"(
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); sys.stdin.read()
)"));
  const auto port = port_of(peer);
  ASSERT_FALSE(port.empty()) << peer.err();
  const auto start = std::chrono::steady_clock::now();
  process p(cat({"connect", "127.0.0.1", port, "--tls", "--timeout", "0.5"}));
  EXPECT_EQ(p.wait(10s), 1) << p.err();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(p.err().rfind("commcat: ", 0), 0u) << p.err();
  EXPECT_EQ(count_lines(p.err()), 1u) << p.err();
  EXPECT_NE(lower(p.err()).find("timed out"), std::string::npos) << p.err();
}

TEST(Commcat, TlsTruncationWritesEverythingReceivedThenFails) {
  process peer(python(tls_truncating_server, {pki().good.cert_file, pki().good.key_file}));
  const auto port = port_of(peer);
  ASSERT_FALSE(port.empty()) << peer.err();
  // stdin stays open: commcat must notice the missing close_notify by itself.
  process p(cat({"connect", "127.0.0.1", port, "--ca-file", pki().ca_file}));
  auto rc = p.wait(10s);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 1);
  EXPECT_EQ(p.out(), "partial data\n");
  EXPECT_EQ(p.err().rfind("commcat: ", 0), 0u) << p.err();
  EXPECT_NE(lower(p.err()).find("trunc"), std::string::npos) << p.err();
  EXPECT_EQ(count_lines(p.err()), 1u) << p.err();
}

// The acceptance test of the TLS layer: every implementation pair verifies and exchanges data.
TEST(Commcat, DemoVerifiesAndExchangesForEveryImplementationPair) {
  process p(cat({"demo"}));
  auto rc = p.wait(60s);
  ASSERT_TRUE(rc.has_value());
  EXPECT_EQ(*rc, 0) << p.out() << p.err();
  EXPECT_NE(p.out().find("SSL* (OpenSSL)"), std::string::npos) << p.out();
  EXPECT_NE(p.out().find("gnutls_session_t (GnuTLS)"), std::string::npos) << p.out();
  EXPECT_NE(p.out().find("4 of 4 implementation pairs verified and exchanged data"), std::string::npos) << p.out();
}

}  // namespace
