// comm — addresses, name resolution and sockets (layer `net`: no TLS, no buffering).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "comm/errors.hpp"

namespace comm {

using std::chrono::milliseconds;

// Which address families a call may use (the model's `ipv6` keyword: nil / t / :any).
enum class address_family { any, ipv4, ipv6 };

// An IPv4 or IPv6 address (value type). IPv6 may carry a scope id ("fe80::1%2").
class ip_address {
 public:
  ip_address() = default;  // 0.0.0.0
  static ip_address v4(std::uint32_t host_order);
  static ip_address v6(const std::array<std::uint8_t, 16>& bytes, std::uint32_t scope_id = 0);
  static ip_address any_v4();
  static ip_address any_v6();
  static ip_address loopback_v4();
  static ip_address loopback_v6();
  // Parses a numeric address; throws std::invalid_argument naming the text when it is not one.
  static ip_address parse(std::string_view text);
  static std::optional<ip_address> try_parse(std::string_view text) noexcept;

  bool is_v4() const noexcept { return !v6_; }
  bool is_v6() const noexcept { return v6_; }
  bool is_loopback() const noexcept;
  bool is_unspecified() const noexcept;
  std::uint32_t to_v4() const noexcept;  // host order; only for is_v4()
  const std::array<std::uint8_t, 16>& bytes() const noexcept { return bytes_; }  // v4 uses the first 4
  std::uint32_t scope_id() const noexcept { return scope_id_; }
  std::string to_string() const;

  friend bool operator==(const ip_address&, const ip_address&) = default;

 private:
  std::array<std::uint8_t, 16> bytes_{};
  std::uint32_t scope_id_ = 0;
  bool v6_ = false;
};

// An address and a port. to_string gives "127.0.0.1:80" or "[::1]:80".
struct endpoint {
  ip_address address;
  std::uint16_t port = 0;
  std::string to_string() const;
  friend bool operator==(const endpoint&, const endpoint&) = default;
};

// Resolves host (name or numeric; empty = loopback) and service (number, digits or a service name
// such as "https") to endpoints, in the order connect should try them.
// Throws socket_connect_error naming the host (and service) when nothing is found.
std::vector<endpoint> resolve(std::string_view host, std::string_view service,
                              address_family family = address_family::any);
// A service name or number to a port; throws socket_connect_error naming the service.
std::uint16_t resolve_service(std::string_view service);
// All addresses of a host name (the model's get-host-entry :addresses); empty when unknown.
std::vector<ip_address> get_host_addresses(std::string_view host,
                                           address_family family = address_family::any);

// An owned socket descriptor (RAII, move-only). -1 means none.
class socket_handle {
 public:
  socket_handle() = default;
  explicit socket_handle(int fd) noexcept : fd_(fd) {}
  socket_handle(socket_handle&& o) noexcept : fd_(o.release()) {}
  socket_handle& operator=(socket_handle&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  socket_handle(const socket_handle&) = delete;
  socket_handle& operator=(const socket_handle&) = delete;
  ~socket_handle() { reset(); }

  int get() const noexcept { return fd_; }
  bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return is_open(); }
  int release() noexcept {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;  // closes the current descriptor

 private:
  int fd_ = -1;
};

struct connect_options {
  // Connect timeout: the name's lookups (on lookup threads, waited for until then) and every
  // address together; none = the OS's. Without a timeout and with one family wanted (`family`),
  // the name is looked up in the calling thread, with no IPv4 lookup beside it.
  std::optional<milliseconds> timeout{};
  // Happy Eyeballs (RFC 8305). When the lookup of a host name for both families has not answered
  // within 50 ms, an IPv4-only one starts beside it, and the connect starts on whichever answers
  // first (so a DNS server that drops AAAA queries costs 50 ms and an A query, not its retries);
  // IPv6 addresses that come later join. After attempt_delay without an answer from one address
  // the next one is tried too, and the first to connect wins, so that an address that stalls (IPv6
  // without a route, a host that drops SYNs) costs this delay, not the timeout. A failure starts
  // the next at once. The families take turns from the resolver's first address on. none = one
  // address at a time, each until its answer or the timeout.
  std::optional<milliseconds> attempt_delay = milliseconds(250);
  // Bind before connect. local_address (a literal or a name) skips the host's addresses of the other
  // family; a chosen local_port is bound with SO_REUSEADDR, so that one in TIME_WAIT serves again
  // and the attempts of a race can all hold it.
  std::string local_address{};            // empty = OS chooses
  std::string local_port{};               // number or service name; empty = OS chooses
  bool nodelay = true;                  // TCP_NODELAY
  bool keepalive = false;               // SO_KEEPALIVE
  address_family family = address_family::any;
};

// Connects to host:service, trying the resolved addresses as attempt_delay says. The descriptor is
// returned in blocking mode with the options applied. Throws socket_connect_error ("connect to
// HOST:PORT: cause", the cause of the last address to fail) or socket_create_error (socket/bind
// failures).
socket_handle connect_to_tcp_server(std::string_view host, std::string_view service,
                                    const connect_options& options = {});

struct listen_options {
  std::string address{};  // empty = all addresses (IPv6 dual-stack where available, else IPv4)
  int backlog = 128;
  bool reuseaddr = true;
  bool reuseport = false;
  bool nodelay = true;    // applied to accepted sockets
  bool keepalive = false;  // applied to accepted sockets
  address_family family = address_family::any;
};

// A listening TCP socket. Service "0" (or "") gives an ephemeral port, read back by local_port().
class tcp_listener {
 public:
  tcp_listener() = default;
  // Throws socket_create_error naming the address and port.
  static tcp_listener open(std::string_view service, const listen_options& options = {});

  bool is_open() const noexcept { return handle_.is_open(); }
  int native_handle() const noexcept { return handle_.get(); }
  std::uint16_t local_port() const;
  endpoint local_endpoint() const;
  // Waits up to timeout (none = forever) for a connection; nullopt on timeout.
  // Accepted sockets are blocking, with the listener's nodelay/keepalive applied.
  std::optional<socket_handle> accept(std::optional<milliseconds> timeout = std::nullopt);
  void close() noexcept { handle_.reset(); }
  const listen_options& options() const noexcept { return options_; }

 private:
  socket_handle handle_;
  listen_options options_;
};

// Local and peer address of a connected socket; nullopt when not connected / not a socket.
std::optional<endpoint> get_socket_address(int fd);
std::optional<endpoint> get_socket_peer_address(int fd);

// Socket options on a raw descriptor (throw socket_create_error on failure).
void set_nodelay(int fd, bool on);
void set_keepalive(int fd, bool on);
void set_nonblocking(int fd, bool on);

}  // namespace comm
