// commcat's command line: a pure function from argv to a configuration or a usage error, kept
// apart from everything that does I/O so that it can be tested and fuzzed on its own.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "comm/tls.hpp"

namespace commcat {

enum class command { help, connect, listen, demo };

struct tls_config {
  bool enabled = false;  // --tls, or implied by any other TLS option
  std::string cert_file;
  std::string key_file;
  std::string key_password;
  std::string ca_file;
  std::string ca_dir;
  bool insecure = false;
  std::string servername;
  std::vector<std::string> alpn;
  std::optional<comm::ssl_protocol_version> min_version;
  std::optional<comm::ssl_protocol_version> max_version;
  std::string ciphers;
  std::optional<comm::ssl_implementation> implementation;
  comm::peer_verification verify_client = comm::peer_verification::none;  // listen only
};

struct config {
  command cmd = command::help;
  std::string host;  // connect
  std::string port;  // connect and listen (number or service name)
  bool echo = false;  // listen
  int loops = 1;      // listen --echo
  std::optional<std::chrono::milliseconds> timeout;
  tls_config tls;
};

struct usage_error {
  std::string message;  // one line, without the "commcat: " prefix
};

// Never throws; every problem is a usage_error that names the offending argument.
std::variant<config, usage_error> parse_args(int argc, const char* const* argv) noexcept;

// The text printed by --help.
const char* usage_text() noexcept;

}  // namespace commcat
