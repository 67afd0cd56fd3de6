// The socket under an async_io_state, as the loop sees it: whether the input is known to be
// drained until the next epoll edge, and (for TLS) the engine's transport with a read-ahead.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "tls/engine.hpp"
#include "tls/record_cork.hpp"

namespace comm::detail {

// The socket is registered edge-triggered. After a recv that returned fewer bytes than asked
// for, the receive queue was empty, so any byte that arrives later brings a new edge: the next
// read can wait for it instead of spending a recv on EAGAIN (nginx does the same). The one
// exception is the end of the stream: a FIN that came with the last data brings no edge of its
// own after the read, so once epoll has reported EPOLLRDHUP every read goes to the socket.
//
// A state starts drained: registering a socket with epoll reports what is already there (data,
// an end) as its first edge, so the first read waits for that edge instead of spending a recv.
// Once a recv has returned 0 the peer's FIN was read, after which no byte can come: later reads
// return the end without a system call.
struct input_readiness {
  bool drained = true;     // wait for the next edge before reading the socket again
  bool eof_seen = false;   // EPOLLRDHUP / EPOLLHUP / EPOLLERR reported: never assume drained
  bool ended = false;      // a recv returned 0

  // An edge reports the socket's whole state at that moment: without EPOLLIN nothing had arrived
  // (bytes arriving later bring an edge of their own).
  void on_edge(std::uint32_t events) noexcept {
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) drained = false;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) eof_seen = true;
  }
  // Non-blocking recv that keeps `drained` up to date; EAGAIN without a system call when drained.
  io_result recv(int fd, void* data, std::size_t size) noexcept {
    if (ended) return {0, 0};
    if (drained) return {0, EAGAIN};
    for (;;) {
      ssize_t n = ::recv(fd, data, size, MSG_DONTWAIT);
      if (n > 0) {
        if (static_cast<std::size_t>(n) < size && !eof_seen) drained = true;
        return {static_cast<std::size_t>(n), 0};
      }
      if (n == 0) {
        ended = true;
        return {0, 0};
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        drained = true;
        return {0, EAGAIN};
      }
      return {0, errno};
    }
  }
};

// The TLS engine's transport on the loop. It records whether the socket really said EAGAIN:
// with edge-triggered epoll, waiting is only safe after that (an engine may report want_input
// after handling a record, a session ticket or a key update, without having drained the socket,
// and then no new edge would ever come). Small reads go through a read-ahead: OpenSSL asks for
// a 5-byte record header and then the body, and one recv serves both (and often the records
// after). A recv that fills the buffer means more is waiting (a bulk transfer): the next ones
// take up to max_read_ahead_size, four full records per recv instead of one, until a recv of
// less than read_ahead_size ends the burst. The buffer is allocated while it holds bytes and
// freed when empty, so an idle connection keeps none. Bytes still in it when TLS is detached are
// plain data that followed the close_notify: unread() hands them back to the state.
class loop_transport final : public transport {
 public:
  static constexpr std::size_t read_ahead_size = 16 * 1024;
  static constexpr std::size_t max_read_ahead_size = 64 * 1024;

  loop_transport(int fd, input_readiness& input) noexcept : fd_(fd), input_(input) {}

  io_result read(void* data, std::size_t size) override {
    if (left() == 0) {
      if (size >= ahead_size_) return note(input_.recv(fd_, data, size));
      if (input_.drained) return note({0, EAGAIN});  // no buffer for a recv that is not made
      if (!ahead_) ahead_ = std::make_unique_for_overwrite<std::byte[]>(ahead_size_);
      io_result r = note(input_.recv(fd_, ahead_.get(), ahead_size_));
      if (r.error != 0 || r.bytes == 0) {
        ahead_.reset();
        return r;
      }
      pos_ = 0;
      end_ = r.bytes;
      if (r.bytes == ahead_size_) ahead_size_ = max_read_ahead_size;
      else if (r.bytes < read_ahead_size) ahead_size_ = read_ahead_size;  // the burst is over
    }
    std::size_t n = std::min(size, left());
    std::memcpy(data, ahead_.get() + pos_, n);
    pos_ += n;
    if (left() == 0) ahead_.reset();
    return {n, 0};
  }
  io_result write(const void* data, std::size_t size) override {
    return cork_.write(data, size, [this](const void* d, std::size_t n) { return send_some(d, n); });
  }

  // Records collected between cork() and uncork() leave in one send (see record_cork); a write
  // operation is complete only once nothing is pending.
  void cork() noexcept { cork_.cork(); }
  bool cork_full() const noexcept { return cork_.full(); }
  io_result uncork() {
    cork_.uncork();
    return flush();
  }
  // Uncorks without sending: the records wait for the next write's (which corks again) or flush().
  void hold() noexcept { cork_.uncork(); }
  std::size_t pending_output() const noexcept { return cork_.pending(); }
  io_result flush() {
    io_result r = cork_.flush([this](const void* d, std::size_t n) { return send_some(d, n); });
    if (r.error == 0) stalled_ = false;
    return r;
  }
  // Forgets what is pending: it can never leave (the socket failed).
  void discard_output() noexcept { cork_.discard(); }
  // A send said EAGAIN and what it left is still pending: the socket has no room now.
  bool stalled() const noexcept { return stalled_ && cork_.pending() > 0; }

  // Bytes the engine has not taken yet: first in line for the engine, or after a detach, for
  // the plain reader.
  void put_back(const std::byte* p, std::size_t n) {
    if (n == 0) return;
    auto b = std::make_unique_for_overwrite<std::byte[]>(std::max(n + left(), ahead_size_));
    std::memcpy(b.get(), p, n);
    if (left() > 0) std::memcpy(b.get() + n, ahead_.get() + pos_, left());
    end_ = n + left();
    pos_ = 0;
    ahead_ = std::move(b);
  }
  std::span<const std::byte> unread() const noexcept {
    if (left() == 0) return {};  // the buffer may be gone (null) while pos_ still counts
    return {ahead_.get() + pos_, left()};
  }
  void clear_unread() noexcept {
    ahead_.reset();
    pos_ = end_ = 0;
  }
  std::size_t left() const noexcept { return end_ - pos_; }

  bool blocked = false;

 private:
  io_result send_some(const void* data, std::size_t size) {
    for (;;) {
      ssize_t n = ::send(fd_, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return {static_cast<std::size_t>(n), 0};
      if (errno == EINTR) continue;
      return note_send({0, errno});
    }
  }
  io_result note(io_result r) noexcept {
    if (r.would_block()) blocked = true;
    return r;
  }
  io_result note_send(io_result r) noexcept {
    if (r.would_block()) blocked = stalled_ = true;
    return r;
  }
  int fd_;
  input_readiness& input_;
  std::unique_ptr<std::byte[]> ahead_;
  std::size_t pos_ = 0, end_ = 0;
  std::size_t ahead_size_ = read_ahead_size;  // grows once a recv fills it
  record_cork cork_;
  bool stalled_ = false;
};

}  // namespace comm::detail
