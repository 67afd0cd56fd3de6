// A child process with pipes on stdin, stdout and stderr, for tests that run commcat and its
// peers as real programs. Every wait is bounded by a deadline and driven by poll(2) on the pipes
// and a pidfd, never by sleeping.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace commcat_test {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

class process {
 public:
  explicit process(const std::vector<std::string>& argv) {
    ::signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill the test on write
    int in[2], out[2], err[2], ready[2];
    if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC) || ::pipe2(ready, O_CLOEXEC))
      throw std::system_error(errno, std::generic_category(), "pipe");
    pid_ = ::fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::signal(SIGPIPE, SIG_DFL);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      int e = errno;
      [[maybe_unused]] auto n = ::write(ready[1], &e, sizeof e);
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    ::close(ready[1]);
    in_ = in[1];
    out_ = out[0];
    err_ = err[0];
    int e = 0;
    bool exec_failed = ::read(ready[0], &e, sizeof e) == sizeof e;  // EOF (0) once exec succeeded
    ::close(ready[0]);
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (exec_failed) throw std::system_error(e, std::generic_category(), "exec " + argv[0]);
    if (pidfd_ < 0) throw std::system_error(errno, std::generic_category(), "pidfd_open");
    for (int fd : {in_, out_, err_}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  ~process() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    for (int fd : {in_, out_, err_, pidfd_})
      if (fd >= 0) ::close(fd);
  }

  const std::string& out() const { return out_text_; }
  const std::string& err() const { return err_text_; }

  void write_stdin(const std::string& data) { pending_in_ += data; pump_until([&] { return pending_in_.empty(); }, 10s); }
  void close_stdin() {
    if (!pending_in_.empty()) pump_until([&] { return pending_in_.empty(); }, 10s);
    if (in_ >= 0) ::close(in_);
    in_ = -1;
  }
  void signal(int sig) { ::kill(pid_, sig); }

  // Pumps the pipes until stdout (or stderr) contains text. False at the deadline or at exit.
  bool wait_stdout(const std::string& text, std::chrono::milliseconds limit = 10s) {
    return pump_until([&] { return out_text_.find(text) != std::string::npos; }, limit);
  }
  bool wait_stderr(const std::string& text, std::chrono::milliseconds limit = 10s) {
    return pump_until([&] { return err_text_.find(text) != std::string::npos; }, limit);
  }
  // The rest of the line after `prefix` on stderr (e.g. "listening on " -> the port).
  std::optional<std::string> stderr_value(const std::string& prefix, std::chrono::milliseconds limit = 10s) {
    return line_value(err_text_, prefix, limit);
  }
  std::optional<std::string> stdout_value(const std::string& prefix, std::chrono::milliseconds limit = 10s) {
    return line_value(out_text_, prefix, limit);
  }

  // Waits for exit, collecting all output; the exit code, 128+signal, or nullopt at the deadline.
  std::optional<int> wait(std::chrono::milliseconds limit = 10s) {
    pump_until([&] { return status_.has_value() && out_ < 0 && err_ < 0; }, limit);
    if (!status_) return std::nullopt;
    return WIFEXITED(*status_) ? WEXITSTATUS(*status_) : 128 + WTERMSIG(*status_);
  }

 private:
  std::optional<std::string> line_value(const std::string& text, const std::string& prefix,
                                        std::chrono::milliseconds limit) {
    auto find = [&]() -> std::optional<std::string> {
      auto at = text.find(prefix);
      if (at == std::string::npos) return std::nullopt;
      auto end = text.find('\n', at);
      if (end == std::string::npos) return std::nullopt;
      return text.substr(at + prefix.size(), end - at - prefix.size());
    };
    pump_until([&] { return find().has_value(); }, limit);
    return find();
  }

  template <class Done>
  bool pump_until(Done done, std::chrono::milliseconds limit) {
    const auto deadline = clock::now() + limit;
    while (!done()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
      if (left.count() <= 0) return false;
      if (status_ && out_ < 0 && err_ < 0) return done();  // nothing more can happen
      pollfd fds[4];
      int n = 0;
      if (out_ >= 0) fds[n++] = {out_, POLLIN, 0};
      if (err_ >= 0) fds[n++] = {err_, POLLIN, 0};
      if (!status_) fds[n++] = {pidfd_, POLLIN, 0};
      if (in_ >= 0 && !pending_in_.empty()) fds[n++] = {in_, POLLOUT, 0};
      int r = ::poll(fds, n, static_cast<int>(left.count()));
      if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
      drain(out_, out_text_);
      drain(err_, err_text_);
      if (in_ >= 0 && !pending_in_.empty()) {
        ssize_t w = ::write(in_, pending_in_.data(), pending_in_.size());
        if (w > 0) pending_in_.erase(0, static_cast<std::size_t>(w));
        else if (w < 0 && errno != EAGAIN && errno != EINTR) pending_in_.clear();  // child gone
      }
      if (!status_) {
        int st = 0;
        if (::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
      }
    }
    return true;
  }

  static void drain(int& fd, std::string& into) {
    if (fd < 0) return;
    char buf[65536];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        into.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        ::close(fd);
        fd = -1;
      }
      return;
    }
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1, pidfd_ = -1;
  std::string pending_in_;
  std::string out_text_, err_text_;
  std::optional<int> status_;
};

}  // namespace commcat_test
