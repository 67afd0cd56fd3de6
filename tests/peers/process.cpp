#include "peers/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace comm_test {

using clock = std::chrono::steady_clock;

peer_process::peer_process(std::vector<std::string> argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a peer that exits early must not kill the test on write
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]);
    throw std::runtime_error("pipe2 failed");
  }
  // Reports an exec failure to the parent (closed by a successful exec).
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]), ::close(in[1]), ::close(out[0]), ::close(out[1]);
    throw std::runtime_error("pipe2 failed");
  }
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execvp(args[0], args.data());
    int e = errno;
    (void)!::write(err[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (pid_ < 0) {
    ::close(in[1]), ::close(out[0]), ::close(err[0]);
    throw std::runtime_error("fork failed");
  }
  int e = 0;
  ssize_t n = ::read(err[0], &e, sizeof e);
  ::close(err[0]);
  in_ = in[1];
  out_ = out[0];
  if (n == sizeof e) {
    kill();
    throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(e));
  }
}

peer_process::~peer_process() {
  kill();
  if (in_ >= 0) ::close(in_);
  if (out_ >= 0) ::close(out_);
}

bool peer_process::fill(clock::time_point deadline) {
  if (eof_) return false;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now()).count();
    if (left < 0) return false;
    pollfd p{out_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char buf[4096];
    ssize_t n = ::read(out_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buffer_.append(buf, static_cast<std::size_t>(n));
    seen_.append(buf, static_cast<std::size_t>(n));
    return true;
  }
}

std::optional<std::string> peer_process::read_line(milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (!fill(deadline)) {
      if (eof_ && !buffer_.empty()) return std::exchange(buffer_, {});
      return std::nullopt;
    }
  }
}

std::string peer_process::wait_for(const std::string& regex, milliseconds timeout) {
  const std::regex re(regex);
  const auto deadline = clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    auto line = read_line(left.count() > 0 ? left : milliseconds(0));
    if (!line) throw std::runtime_error("peer did not print /" + regex + "/ in time; output: " + seen_);
    std::smatch m;
    if (std::regex_search(*line, m, re)) return m.size() > 1 ? m[1].str() : m[0].str();
  }
}

bool peer_process::wait_for_text(const std::string& text, milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (seen_.find(text) == std::string::npos)
    if (!fill(deadline)) return seen_.find(text) != std::string::npos;
  return true;
}

void peer_process::write_stdin(const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(in_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("write to peer stdin failed");
    done += static_cast<std::size_t>(n);
  }
}

void peer_process::close_stdin() {
  if (in_ >= 0) ::close(in_);
  in_ = -1;
}

std::optional<int> peer_process::wait_exit(milliseconds timeout) {
  if (status_) return status_;
  const auto deadline = clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      // What it printed before exiting may still be in the pipe: read it to the end (bounded),
      // so that output() after wait_exit() holds everything.
      const auto drain_deadline = clock::now() + milliseconds(2000);
      while (fill(drain_deadline)) {
      }
      return status_;
    }
    if (clock::now() >= deadline) return std::nullopt;
    // Wait on the output pipe (it closes when the peer exits) rather than sleeping blindly.
    if (!eof_) {
      fill(std::min(deadline, clock::now() + milliseconds(20)));
    } else {
      pollfd none{-1, 0, 0};
      ::poll(&none, 0, 5);  // the pipe is closed already; the exit is imminent
    }
  }
}

void peer_process::kill() noexcept {
  if (pid_ <= 0 || status_) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = 128 + SIGKILL;
}

openssl_server::openssl_server(const std::vector<std::string>& args)
    : process([&] {
        std::vector<std::string> argv{"openssl", "s_server", "-accept", "127.0.0.1:0"};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
      }()) {
  port = process.wait_for(R"(^ACCEPT .*:(\d+)$)");
}

python_server::python_server(const std::string& script, const std::vector<std::string>& args)
    : process([&] {
        std::vector<std::string> argv{"python3", "-u", std::string(COMM_SOURCE_DIR) + "/tests/peers/" + script};
        argv.insert(argv.end(), args.begin(), args.end());
        return argv;
      }()) {
  port = process.wait_for(R"(^PORT (\d+)$)");
}

}  // namespace comm_test
