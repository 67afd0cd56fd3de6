// socket_stream: the std::iostream face and the direct calls, over detail::stream_core.
#include <poll.h>

#include <cstring>

#include "stream/stream_core.hpp"

namespace comm {

using detail::core_of;
using detail::stream_core;

socket_stream::socket_stream() : std::iostream(nullptr) {}

socket_stream::socket_stream(socket_handle socket, stream_options options) : std::iostream(nullptr) {
  core_ptr_ = std::make_unique<stream_core>(std::move(socket), options, this);
  set_rdbuf(core_ptr_.get());
  clear();
}

socket_stream::socket_stream(socket_handle socket, stream_options options, attach_ssl_options tls)
    : socket_stream(std::move(socket), options) {
  attach_ssl(*this, std::move(tls));  // on failure the destructor closes the socket
}

socket_stream::socket_stream(socket_stream&& other) noexcept
    : std::iostream(std::move(other)), ssl_connection(), core_ptr_(std::move(other.core_ptr_)) {
  set_rdbuf(core_ptr_.get());
  // A moved-from stream has no buffer: iostream operations on it fail (badbit), never touch it.
  other.set_rdbuf(nullptr);
  other.exceptions(std::ios::goodbit);  // so that setting badbit cannot throw here
  other.setstate(std::ios::badbit);
  if (core_ptr_) core_ptr_->set_owner(this);
}


socket_stream& socket_stream::operator=(socket_stream&& other) noexcept {
  if (this == &other) return *this;
  try {
    close();
  } catch (...) {
  }
  std::iostream::swap(other);  // format state and flags come along
  core_ptr_ = std::move(other.core_ptr_);
  set_rdbuf(core_ptr_.get());
  // A moved-from stream has no buffer: iostream operations on it fail (badbit), never touch it.
  other.set_rdbuf(nullptr);
  other.exceptions(std::ios::goodbit);  // so that setting badbit cannot throw here
  other.setstate(std::ios::badbit);
  if (core_ptr_) core_ptr_->set_owner(this);
  return *this;
}

socket_stream::~socket_stream() {
  if (core_ptr_) {
    try {
      core_ptr_->close();
    } catch (...) {
    }
  }
}

bool socket_stream::is_open() const noexcept { return core_ptr_ && core_ptr_->is_open(); }
int socket_stream::native_handle() const noexcept { return core_ptr_ ? core_ptr_->fd() : -1; }

std::size_t socket_stream::read_some(std::span<std::byte> buf) {
  return core_of(*this, "read").read_some(reinterpret_cast<char*>(buf.data()), buf.size());
}

void socket_stream::read_exact(std::span<std::byte> buf) {
  auto& core = core_of(*this, "read");
  std::size_t got = 0;
  while (got < buf.size()) {
    std::size_t n = core.read_some(reinterpret_cast<char*>(buf.data()) + got, buf.size() - got);
    if (n == 0)
      throw socket_io_error(std::make_error_code(std::errc::connection_aborted),
                            "read from " + core.peer() + ": end of stream after " + std::to_string(got) + " of " +
                                std::to_string(buf.size()) + " bytes",
                            this);
    got += n;
  }
}

std::optional<std::string> socket_stream::read_line() { return core_of(*this, "read_line").read_line(); }

void socket_stream::write_all(std::span<const std::byte> data) {
  core_of(*this, "write").write(reinterpret_cast<const char*>(data.data()), data.size());
}

void socket_stream::flush() { core_of(*this, "flush").flush_output(); }

void socket_stream::close() {
  if (core_ptr_) core_ptr_->close();
}

std::size_t socket_stream::buffered_input() const noexcept { return core_ptr_ ? core_ptr_->buffered_input() : 0; }

std::optional<milliseconds> socket_stream::read_timeout() const noexcept {
  return core_ptr_ ? core_ptr_->options.read_timeout : std::nullopt;
}
std::optional<milliseconds> socket_stream::write_timeout() const noexcept {
  return core_ptr_ ? core_ptr_->options.write_timeout : std::nullopt;
}
void socket_stream::set_read_timeout(std::optional<milliseconds> t) noexcept {
  if (core_ptr_) core_ptr_->options.read_timeout = t;
}
void socket_stream::set_write_timeout(std::optional<milliseconds> t) noexcept {
  if (core_ptr_) core_ptr_->options.write_timeout = t;
}

std::optional<endpoint> socket_stream::local_endpoint() const { return get_socket_address(native_handle()); }
std::optional<endpoint> socket_stream::peer_endpoint() const { return get_socket_peer_address(native_handle()); }

detail::tls_engine* socket_stream::tls_engine_() const noexcept {
  return core_ptr_ ? core_ptr_->engine.get() : nullptr;
}

void socket_stream_shutdown(socket_stream& stream, direction dir, bool abort) {
  core_of(stream, "shutdown").shutdown(dir, abort);
}

socket_handle replace_socket_stream_socket(socket_stream& stream, socket_handle socket) {
  stream_core* core = stream.core_();
  if (core == nullptr) {
    // A stream that never had a socket gets its core now.
    stream = socket_stream(std::move(socket));
    return socket_handle{};
  }
  return core->replace_socket(std::move(socket));
}

std::vector<socket_stream*> wait_for_input_streams(const std::vector<socket_stream*>& streams,
                                                   std::optional<milliseconds> timeout) {
  std::vector<pollfd> fds;
  fds.reserve(streams.size());
  bool any_buffered = false;
  for (socket_stream* s : streams)  // TLS records held back go out before any wait for a reply
    if (s != nullptr && s->core_() != nullptr && s->core_()->holding()) s->core_()->send_held();
  for (socket_stream* s : streams) {
    if (s != nullptr && s->buffered_input() > 0) any_buffered = true;
    fds.push_back({s != nullptr ? s->native_handle() : -1, POLLIN, 0});
  }
  // Buffered data counts as input: then only look (timeout 0) which sockets are ready too.
  int wait_ms = any_buffered ? 0 : detail::poll_timeout_ms(detail::deadline_after(timeout));
  const auto deadline = any_buffered ? std::optional<detail::clock::time_point>(detail::clock::now())
                                     : detail::deadline_after(timeout);
  for (;;) {
    int rc = ::poll(fds.data(), fds.size(), wait_ms);
    if (rc >= 0) break;
    if (errno != EINTR)
      throw socket_io_error(detail::errno_code(errno), "wait_for_input_streams: poll");
    wait_ms = detail::poll_timeout_ms(deadline);
  }
  std::vector<socket_stream*> ready;
  for (std::size_t i = 0; i < streams.size(); ++i) {
    socket_stream* s = streams[i];
    if (s == nullptr) continue;
    if (s->buffered_input() > 0 || (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))))
      ready.push_back(s);
  }
  return ready;
}

}  // namespace comm
