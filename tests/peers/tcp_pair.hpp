// A connected pair of TCP sockets over loopback, made with plain POSIX calls: {ours, theirs}.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include "comm/net.hpp"

namespace comm_test {

struct tcp_pair_options {
  int their_receive_buffer = 0;  // SO_RCVBUF of their side, from the first segment on (0: default)
  int our_send_buffer = 0;       // SO_SNDBUF of ours (0: default)
};

inline std::pair<comm::socket_handle, comm::socket_handle> tcp_pair(tcp_pair_options o = {}) {
  auto fail = [](const char* what) { throw std::runtime_error(std::string("tcp_pair: ") + what + ": " + std::strerror(errno)); };
  comm::socket_handle l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!l) fail("socket");
  // Set on the listener, the receive buffer is inherited by the accepted socket before its
  // window is first advertised.
  if (o.their_receive_buffer > 0 &&
      ::setsockopt(l.get(), SOL_SOCKET, SO_RCVBUF, &o.their_receive_buffer, sizeof o.their_receive_buffer) != 0)
    fail("SO_RCVBUF");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(l.get(), 1) != 0 ||
      ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&sa), &len) != 0)
    fail("listen");
  comm::socket_handle a(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!a) fail("socket");
  if (o.our_send_buffer > 0 && ::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &o.our_send_buffer, sizeof o.our_send_buffer) != 0)
    fail("SO_SNDBUF");
  if (::connect(a.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) fail("connect");
  comm::socket_handle b(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!b) fail("accept");
  return {std::move(a), std::move(b)};
}

}  // namespace comm_test
