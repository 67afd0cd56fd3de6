#include "peers/engine_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <stdexcept>

namespace comm_test {

using comm::detail::tls_result;
using comm::detail::tls_status;
using clock = std::chrono::steady_clock;

int connect_loopback(const std::string& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(port)));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("connect to 127.0.0.1:" + port + " failed");
  }
  return fd;
}

loopback_listener::loopback_listener() {
  fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("loopback listener failed");
  port = std::to_string(ntohs(a.sin_port));
}

loopback_listener::~loopback_listener() {
  if (fd >= 0) ::close(fd);
}

int loopback_listener::accept_one(milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) throw std::runtime_error("no client connected in time");
  int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) throw std::runtime_error("accept failed");
  return c;
}

engine_connection::engine_connection(int fd, comm::ssl_ctx_spec spec, comm::detail::engine_params params)
    : transport_(fd) {
  params.owner = this;
  try {
    engine_ = comm::detail::make_engine(std::move(spec), params, transport_);
  } catch (...) {
    ::close(fd);
    throw;
  }
  engine_->owner = this;
}

engine_connection::~engine_connection() {
  engine_.reset();
  if (transport_.fd() >= 0) ::close(transport_.fd());
}

template <class Op>
tls_result engine_connection::drive(Op op, const char* what, milliseconds timeout) {
  if (!engine_) throw comm::ssl_failure(comm::ssl_errc::not_ssl, std::string(what) + ": no TLS");
  const auto deadline = clock::now() + timeout;
  for (;;) {
    tls_result r = op();
    if (r.status == tls_status::error) std::rethrow_exception(engine_->error(what, "127.0.0.1"));
    if (r.status != tls_status::want_input && r.status != tls_status::want_output) return r;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now()).count();
    pollfd p{transport_.fd(), static_cast<short>(r.status == tls_status::want_input ? POLLIN : POLLOUT), 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0) {
      if (std::string(what) == "TLS handshake")
        throw comm::ssl_handshake_timeout(comm::ssl_errc::handshake_timeout, "TLS handshake with 127.0.0.1: timed out",
                                          {comm::ssl_code_kind::handshake_timeout, 0}, this);
      throw comm::socket_timeout_error(std::make_error_code(std::errc::timed_out), std::string(what) + ": timed out", this);
    }
  }
}

void engine_connection::handshake(milliseconds timeout) {
  drive([&] { return engine_->handshake(); }, "TLS handshake", timeout);
}

void engine_connection::write_all(const std::string& data, milliseconds timeout) {
  std::size_t done = 0;
  while (done < data.size()) {
    tls_result r = drive([&] { return engine_->write(data.data() + done, data.size() - done); }, "TLS write", timeout);
    if (r.status == tls_status::closed) throw comm::ssl_closed(comm::ssl_errc::closed, "TLS write: closed");
    done += r.bytes;
  }
}

std::string engine_connection::read_some(std::size_t max, milliseconds timeout) {
  std::string buf(max, '\0');
  tls_result r = drive([&] { return engine_->read(buf.data(), buf.size()); }, "TLS read", timeout);
  if (r.status == tls_status::closed) return {};
  buf.resize(r.bytes);
  return buf;
}

std::string engine_connection::read_exact(std::size_t n, milliseconds timeout) {
  std::string out;
  while (out.size() < n) {
    std::string part = read_some(n - out.size(), timeout);
    if (part.empty()) throw std::runtime_error("TLS read: clean end after " + std::to_string(out.size()) + " bytes");
    out += part;
  }
  return out;
}

void engine_connection::shutdown(bool wait_peer, milliseconds timeout) {
  drive([&] { return engine_->shutdown(); }, "TLS shutdown", timeout);
  if (!wait_peer) return;
  const auto deadline = clock::now() + timeout;
  while (!engine_->close_notify_received()) {
    if (clock::now() > deadline) throw std::runtime_error("no close_notify from the peer in time");
    char b[256];
    tls_result r = drive([&] { return engine_->read(b, sizeof b); }, "TLS read", timeout);
    if (r.status == tls_status::closed) break;
  }
}

int engine_connection::release_socket() {
  engine_.reset();
  int fd = transport_.fd();
  transport_.set_fd(-1);
  return fd;
}

}  // namespace comm_test
