// A peer program (openssl s_server / s_client, python3, gnutls-serv, ...) run by a test: stdin
// and a merged stdout+stderr on pipes, lines read with deadlines, killed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace comm_test {

using std::chrono::milliseconds;

class peer_process {
 public:
  // Starts argv[0] (looked up in PATH). Throws std::runtime_error if it cannot be started.
  explicit peer_process(std::vector<std::string> argv);
  peer_process(const peer_process&) = delete;
  peer_process& operator=(const peer_process&) = delete;
  ~peer_process();  // kill + reap

  // The next output line (without newline), or nullopt on EOF or when the deadline passes.
  std::optional<std::string> read_line(milliseconds timeout = milliseconds(5000));
  // Reads lines until one matches; returns the match (group 1 if the regex has a group), or
  // throws std::runtime_error naming the regex and the output seen when EOF / timeout comes first.
  std::string wait_for(const std::string& regex, milliseconds timeout = milliseconds(5000));
  // Everything printed so far (lines read and the rest up to now).
  const std::string& output() const noexcept { return seen_; }
  // Reads until the pattern appears anywhere in the output (not only whole lines); false on timeout.
  bool wait_for_text(const std::string& text, milliseconds timeout = milliseconds(5000));

  void write_stdin(const std::string& data);
  void close_stdin();
  // Waits for the exit; nullopt if it did not exit in time. Exit status, or 128+signal.
  std::optional<int> wait_exit(milliseconds timeout = milliseconds(5000));
  void kill() noexcept;
  pid_t pid() const noexcept { return pid_; }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline);  // false: EOF or timeout
  pid_t pid_ = -1;
  int in_ = -1;
  int out_ = -1;
  std::string buffer_;  // unread output
  std::string seen_;
  bool eof_ = false;
  std::optional<int> status_;
};

// openssl s_server on 127.0.0.1 with an ephemeral port; returns the port once it accepts.
// Extra arguments are appended (-cert, -key, -tls1_3, -alpn, ...).
struct openssl_server {
  explicit openssl_server(const std::vector<std::string>& args);
  peer_process process;
  std::string port;
};

// A Python 3 script from tests/peers/ run with arguments; it prints "PORT <n>" once listening.
struct python_server {
  python_server(const std::string& script, const std::vector<std::string>& args);
  peer_process process;
  std::string port;
};

}  // namespace comm_test
