// A TLS connection driven straight through the engine interface over a TCP socket: tests of the
// TLS layer that do not depend on socket_stream.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "comm/tls.hpp"
#include "tls/engine.hpp"
#include "tls/socket_transport.hpp"

namespace comm_test {

using std::chrono::milliseconds;

// A blocking TCP connection to 127.0.0.1:port (the fd is the caller's).
int connect_loopback(const std::string& port);
// A listening socket on 127.0.0.1 with an ephemeral port; accept_one waits with a bound.
struct loopback_listener {
  loopback_listener();
  ~loopback_listener();
  int accept_one(milliseconds timeout = milliseconds(5000));
  int fd = -1;
  std::string port;
};

class engine_connection final : public comm::ssl_connection {
 public:
  // Takes the socket; makes the engine for the spec (adopted handles are consumed).
  engine_connection(int fd, comm::ssl_ctx_spec spec, comm::detail::engine_params params);
  ~engine_connection() override;
  comm::detail::tls_engine* tls_engine_() const noexcept override { return engine_.get(); }
  int fd() const noexcept { return transport_.fd(); }

  void handshake(milliseconds timeout = milliseconds(5000));
  void write_all(const std::string& data, milliseconds timeout = milliseconds(5000));
  // Up to `max` bytes; "" at a clean end (close_notify). Throws the engine's error.
  std::string read_some(std::size_t max = 65536, milliseconds timeout = milliseconds(5000));
  // Reads until `n` bytes arrived.
  std::string read_exact(std::size_t n, milliseconds timeout = milliseconds(5000));
  // Sends close_notify; with wait_peer, waits for the peer's too.
  void shutdown(bool wait_peer = false, milliseconds timeout = milliseconds(5000));
  // Ends TLS (the engine is dropped) and gives the socket back.
  int release_socket();

 private:
  template <class Op>
  comm::detail::tls_result drive(Op op, const char* what, milliseconds timeout);
  comm::detail::socket_transport transport_;
  std::unique_ptr<comm::detail::tls_engine> engine_;
};

}  // namespace comm_test
