// Netcat's manners on one socket_stream, in one thread: poll(2) on stdin and the socket.
// One thread because a TLS connection must not be read and written from two threads at once.
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <system_error>
#include <vector>

#include "commcat.hpp"

namespace commcat {
namespace {

void write_stdout(const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(STDOUT_FILENO, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "write to stdout");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

bool is_timeout(const comm::socket_error& e) {
  return e.code() == std::errc::timed_out;
}

}  // namespace

int relay(comm::socket_stream& stream) {
  // With TLS a readable socket may hold only part of a record, or records without application
  // data (session tickets): a short read timeout keeps stdin serviced meanwhile. Plain sockets
  // never block after poll says readable.
  const bool tls = stream.is_ssl();
  if (tls) stream.set_read_timeout(std::chrono::milliseconds(20));

  // Chunks of stdin are bounded so that data coming back is drained between writes.
  std::vector<char> in(16 * 1024);
  std::vector<char> out(64 * 1024);
  bool stdin_open = true;
  // A plain peer that half-closes (EOF) may still read: stdin goes on being relayed until it ends.
  // With TLS the peer's close_notify ends the session, so it ends commcat at once.
  bool socket_open = true;

  while (socket_open || stdin_open) {
    bool socket_ready = socket_open && stream.buffered_input() > 0;
    bool stdin_ready = false;
    pollfd fds[2] = {{socket_open ? stream.native_handle() : -1, POLLIN, 0},
                     {stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
    int n = ::poll(fds, 2, socket_ready ? 0 : -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), "poll");
    }
    if (socket_open && fds[0].revents != 0) socket_ready = true;
    if (stdin_open && fds[1].revents != 0) stdin_ready = true;

    if (stdin_ready) {
      ssize_t got = ::read(STDIN_FILENO, in.data(), in.size());
      if (got < 0 && errno == EINTR) continue;
      if (got > 0) {
        stream.write_all(in.data(), static_cast<std::size_t>(got));
        stream.flush();
      } else {
        // End of stdin (or an unreadable stdin): half-close; with TLS this sends close_notify.
        // Reading goes on until the peer closes.
        stdin_open = false;
        comm::socket_stream_shutdown(stream, comm::direction::output);
      }
    }

    if (socket_ready) {
      std::size_t got = 0;
      try {
        got = stream.read_some(out.data(), out.size());
      } catch (const comm::socket_error& e) {
        if (tls && is_timeout(e)) continue;
        throw;
      }
      if (got == 0) {  // orderly end (TLS: after the peer's close_notify)
        if (tls) return 0;
        socket_open = false;
        continue;
      }
      write_stdout(out.data(), got);
    }
  }
  return 0;
}

}  // namespace commcat
