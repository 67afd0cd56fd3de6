// commcat's SSLKEYLOGFILE support, with the built binary as a subprocess: a TLS connect to an
// openssl s_server started by the test appends NSS key log lines to the named file; without the
// variable no file is written.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "peers/certificates.hpp"
#include "peers/implementations.hpp"
#include "tool_helpers.hpp"

namespace {

using commcat_test::commcat;
using commcat_test::process;
using commcat_test::s_server;
using comm_test::pki;
using namespace std::chrono_literals;

// A path in the temporary folder that does not exist yet; removed afterwards.
struct temp_path {
  std::string path;
  temp_path() {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();  // "Case/openssl"
    for (char& c : name)
      if (c == '/') c = '_';
    path = (std::filesystem::temp_directory_path() / ("comm_keylog_" + std::to_string(::getpid()) + "_" + name))
               .string();
    std::filesystem::remove(path);
  }
  ~temp_path() { std::filesystem::remove(path); }
};

bool is_hex(const std::string& s, std::size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

class CommcatKeylog : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  // commcat connect (through env(1), to set or unset SSLKEYLOGFILE) sends a line to s_server, gets
  // its reply, and closes; returns commcat's stderr.
  std::string exchange(const std::vector<std::string>& env_args) {
    s_server server(pki().good);
    EXPECT_FALSE(server.port.empty()) << server.p.err();
    if (server.port.empty()) return {};
    std::vector<std::string> argv{"env"};
    argv.insert(argv.end(), env_args.begin(), env_args.end());
    const std::vector<std::string> args{commcat, "connect", "127.0.0.1", server.port, "--ca-file", pki().ca_file,
                                        "--servername", "localhost", "--timeout", "10", "--implementation",
                                        std::string(comm::to_string(GetParam()))};
    argv.insert(argv.end(), args.begin(), args.end());
    process p(argv);
    p.write_stdin("hello\n");
    EXPECT_TRUE(server.p.wait_stdout("hello\n")) << server.p.out() << p.err();
    server.p.write_stdin("reply\n");
    EXPECT_TRUE(p.wait_stdout("reply\n")) << p.err();
    p.close_stdin();
    EXPECT_EQ(p.wait(), 0) << p.err();
    EXPECT_EQ(p.out(), "reply\n");
    return p.err();
  }
};

TEST_P(CommcatKeylog, SslKeyLogFileReceivesNssKeyLogLines) {
  temp_path file;
  std::string err = exchange({"SSLKEYLOGFILE=" + file.path});
  EXPECT_EQ(err, "commcat: logging TLS keys to " + file.path +
                     " (SSLKEYLOGFILE): anyone with it can decrypt the traffic\n");
  ASSERT_TRUE(std::filesystem::exists(file.path));
  EXPECT_EQ(std::filesystem::status(file.path).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::ifstream in(file.path);
  std::string line;
  std::set<std::string> labels;
  std::size_t n = 0;
  // "<LABEL> <client random: 64 hex> <secret: hex>", as Wireshark reads them.
  while (std::getline(in, line)) {
    ++n;
    std::istringstream fields(line);
    std::string label, random, secret, extra;
    fields >> label >> random >> secret;
    EXPECT_FALSE(fields >> extra) << line;
    EXPECT_TRUE(is_hex(random, 64)) << line;
    EXPECT_TRUE(is_hex(secret, 64) || is_hex(secret, 96)) << line;  // SHA-256 / SHA-384 suites
    labels.insert(label);
  }
  ASSERT_GT(n, 0u);
  // s_server and commcat both default to TLS 1.3: the handshake and application traffic secrets
  // (and the exporter secret) of a TLS 1.3 connection, nothing else.
  const std::set<std::string> traffic{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                                      "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"};
  std::set<std::string> rest = labels;
  for (const auto& l : traffic) EXPECT_EQ(rest.erase(l), 1u) << "missing " << l;
  rest.erase("EXPORTER_SECRET");
  EXPECT_TRUE(rest.empty()) << "unexpected label " << *rest.begin();
}

TEST_P(CommcatKeylog, SecondRunAppendsToTheFile) {
  temp_path file;
  exchange({"SSLKEYLOGFILE=" + file.path});
  const auto first = std::filesystem::file_size(file.path);
  ASSERT_GT(first, 0u);
  exchange({"SSLKEYLOGFILE=" + file.path});
  EXPECT_EQ(std::filesystem::file_size(file.path), 2 * first);
}

TEST_P(CommcatKeylog, WithoutTheVariableNoFileIsWritten) {
  temp_path file;
  EXPECT_EQ(exchange({"-u", "SSLKEYLOGFILE"}), "");  // no notice: key logging is off
  EXPECT_EQ(exchange({"SSLKEYLOGFILE="}), "");        // empty counts as unset
  EXPECT_FALSE(std::filesystem::exists(file.path));
}

INSTANTIATE_TEST_SUITE_P(Implementations, CommcatKeylog, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

}  // namespace
