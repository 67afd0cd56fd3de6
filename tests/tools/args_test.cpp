// commcat's argument parser on its own: a pure function, so every case is one call.
#include <gtest/gtest.h>

#include <initializer_list>

#include "args.hpp"

namespace {

using commcat::command;
using commcat::config;
using commcat::usage_error;

std::variant<config, usage_error> parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv = {"commcat"};
  argv.insert(argv.end(), args.begin(), args.end());
  return commcat::parse_args(static_cast<int>(argv.size()), argv.data());
}

config ok(std::initializer_list<const char*> args) {
  auto r = parse(args);
  if (auto* e = std::get_if<usage_error>(&r)) ADD_FAILURE() << "unexpected usage error: " << e->message;
  return std::holds_alternative<config>(r) ? std::get<config>(r) : config{};
}

std::string error(std::initializer_list<const char*> args) {
  auto r = parse(args);
  if (auto* e = std::get_if<usage_error>(&r)) return e->message;
  ADD_FAILURE() << "expected a usage error";
  return {};
}

TEST(CommcatArgs, PlainConnectHasNoTls) {
  auto c = ok({"connect", "example.org", "443"});
  EXPECT_EQ(c.cmd, command::connect);
  EXPECT_EQ(c.host, "example.org");
  EXPECT_EQ(c.port, "443");
  EXPECT_FALSE(c.tls.enabled);
  EXPECT_FALSE(c.timeout);
}

TEST(CommcatArgs, AnyTlsOptionTurnsTlsOn) {
  auto c = ok({"connect", "h", "https", "--ca-file", "ca.pem", "--alpn", "h2,http/1.1", "--min-tls=1.3",
               "--implementation", "gnutls", "--timeout", "2.5", "--servername", "x.test"});
  EXPECT_TRUE(c.tls.enabled);
  EXPECT_EQ(c.tls.ca_file, "ca.pem");
  EXPECT_EQ(c.tls.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(c.tls.min_version, comm::ssl_protocol_version::tls_v1_3);
  EXPECT_EQ(c.tls.implementation, comm::ssl_implementation::gnutls);
  EXPECT_EQ(c.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(c.tls.servername, "x.test");
}

TEST(CommcatArgs, ListenWithEchoLoopsAndClientVerification) {
  auto c = ok({"listen", "0", "--echo", "--loops", "2", "--cert", "c.pem", "--key", "k.pem", "--verify-client",
               "required", "--ca-file", "ca.pem"});
  EXPECT_EQ(c.cmd, command::listen);
  EXPECT_TRUE(c.echo);
  EXPECT_EQ(c.loops, 2);
  EXPECT_TRUE(c.tls.enabled);
  EXPECT_EQ(c.tls.verify_client, comm::peer_verification::required);
}

TEST(CommcatArgs, HelpWinsAnywhere) {
  EXPECT_EQ(ok({"--help"}).cmd, command::help);
  EXPECT_EQ(ok({"connect", "-h"}).cmd, command::help);
  EXPECT_EQ(ok({"demo"}).cmd, command::demo);
}

TEST(CommcatArgs, UsageErrorsNameTheProblem) {
  EXPECT_EQ(error({}), "missing command (connect, listen or demo)");
  EXPECT_EQ(error({"connect", "h", "1", "--timeout"}), "--timeout needs a value");
  EXPECT_EQ(error({"connect", "h", "1", "--timeout", "-3"}), "--timeout: expected seconds (> 0), got '-3'");
  EXPECT_EQ(error({"connect", "h", "1", "--tls=yes"}), "--tls takes no value");
  EXPECT_EQ(error({"connect", "h", "1", "--echo"}), "--echo is for listen");
  EXPECT_EQ(error({"connect", "h", "1", "--cert", "c.pem"}), "--cert and --key go together");
  EXPECT_EQ(error({"listen", "0", "--tls"}), "listen with TLS needs --cert and --key");
  EXPECT_EQ(error({"listen", "0", "--loops", "2"}), "--loops needs --echo");
  EXPECT_EQ(error({"listen", "0", "--insecure"}),
            "--insecure is for connect (a listener verifies clients only with --verify-client)");
  EXPECT_EQ(error({"connect", "h", "1", "--min-tls", "1.3", "--max-tls", "1.2"}), "--min-tls is above --max-tls");
  EXPECT_EQ(error({"connect", "h", "1", "--implementation", "schannel"}),
            "--implementation: expected openssl or gnutls, got 'schannel'");
  EXPECT_EQ(error({"connect", "h", "65536"}), "invalid port '65536'");
  EXPECT_EQ(error({"connect", "h", "8 0"}), "invalid port '8 0'");
  EXPECT_EQ(error({"demo", "--tls"}), "demo takes no options");
  EXPECT_EQ(error({"listen"}), "missing arguments: usage: commcat listen PORT [options] [--echo]");
}

TEST(CommcatArgs, UsageErrorsStayOnePrintableLineWhateverWasTyped) {
  EXPECT_EQ(error({"connect", "h", "1", "--bad\noption"}), "unknown option --bad\\x0aoption");
  EXPECT_EQ(error({"connect", "h", "1", "--implementation", "\x1b[2J"}),
            "--implementation: expected openssl or gnutls, got '\\x1b[2J'");
}

TEST(CommcatArgs, NullArgumentsAreNotACrash) {
  const char* argv[] = {"commcat", nullptr, "x"};
  auto r = commcat::parse_args(3, argv);
  EXPECT_TRUE(std::holds_alternative<usage_error>(r));
}

}  // namespace
