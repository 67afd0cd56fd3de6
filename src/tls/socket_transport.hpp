// The transport of a TLS engine over a socket descriptor: one recv/send per call, never blocking
// (MSG_DONTWAIT), never raising SIGPIPE (MSG_NOSIGNAL). No buffering: the engine reads exactly
// what it asks for, so bytes after a close_notify stay in the socket.
#pragma once

#include <sys/socket.h>

#include <cerrno>

#include "tls/engine.hpp"

namespace comm::detail {

class socket_transport final : public transport {
 public:
  explicit socket_transport(int fd = -1) noexcept : fd_(fd) {}
  void set_fd(int fd) noexcept { fd_ = fd; }
  int fd() const noexcept { return fd_; }

  io_result read(void* data, std::size_t size) override {
    for (;;) {
      ssize_t n = ::recv(fd_, data, size, MSG_DONTWAIT);
      if (n >= 0) return {static_cast<std::size_t>(n), 0};
      if (errno != EINTR) return {0, errno};
    }
  }
  io_result write(const void* data, std::size_t size) override {
    for (;;) {
      ssize_t n = ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return {static_cast<std::size_t>(n), 0};
      if (errno != EINTR) return {0, errno};
    }
  }

 private:
  int fd_;
};

}  // namespace comm::detail
