// Internal helpers of the net layer: endpoint <-> sockaddr, error text, poll with a deadline.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "comm/net.hpp"

namespace comm::detail {

struct sockaddr_buf {
  sockaddr_storage storage{};
  socklen_t length = 0;
  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const noexcept { return storage.ss_family; }
};

sockaddr_buf to_sockaddr(const endpoint& ep) noexcept;
// v4-mapped IPv6 addresses (from a dual-stack socket) come back as IPv4.
std::optional<endpoint> from_sockaddr(const sockaddr* sa, socklen_t length) noexcept;

inline std::error_code errno_code(int e) noexcept { return {e, std::generic_category()}; }
// "Connection refused"
inline std::string errno_text(int e) { return std::generic_category().message(e); }
// "host:service", with IPv6 literals in brackets.
std::string host_port_text(std::string_view host, std::string_view service);

using clock = std::chrono::steady_clock;
// Milliseconds left until deadline for poll(): -1 = forever, 0 = expired.
int poll_timeout_ms(const std::optional<clock::time_point>& deadline) noexcept;
inline std::optional<clock::time_point> deadline_after(std::optional<milliseconds> t) {
  if (!t) return std::nullopt;
  return clock::now() + *t;
}

// Polls one descriptor for events until the deadline. Returns revents, 0 on timeout,
// -1 with errno on failure (EINTR is retried with the remaining time).
int poll_one(int fd, short events, const std::optional<clock::time_point>& deadline) noexcept;

// Reads and drops what has arrived unread, up to `limit` bytes (at least), without waiting. Before
// closing a TLS connection: a TLS 1.3 server's session tickets are typically still unread, and
// Linux answers close() on a socket with unread data with a reset, which throws away what the send
// buffer still holds (the end of the last write, the close_notify). Right before the close, pass
// close_drain_limit: everything queued must go, and a receive buffer can hold megabytes.
struct dropped_input {
  std::size_t bytes = 0;  // how many were dropped
  bool ended = false;     // the peer has ended its side or the connection failed: no more will come
};
inline constexpr std::size_t close_drain_limit = std::size_t{16} << 20;
dropped_input discard_unread_input(int fd, std::size_t limit = 256 * 1024) noexcept;

// What a connect looks up before its attempts: the host's addresses, and with a local address or
// port of the user's choice (connect options' local_address, local_port) the local side, shared by
// the blocking and the asynchronous connect.
struct connect_query {
  std::string host, service;
  address_family family = address_family::any;
  std::string local_address, local_port;
};
struct local_side {
  std::vector<ip_address> addresses;  // of local_address (a literal or a name); empty: any address
  std::uint16_t port = 0;
};
struct connect_lookup {
  std::vector<endpoint> targets;    // in the resolver's order
  std::optional<local_side> local;  // nullopt when neither local_address nor local_port is set
};
// The lookups, in the calling thread. Throws socket_connect_error (resolve), or socket_create_error
// for a local port that does not resolve.
connect_lookup look_up(const connect_query& q);
// Whether look_up may wait on DNS: the host or the local address is a name, not a literal.
bool is_host_name(std::string_view host);
bool needs_lookup_thread(const connect_query& q);

// The lookups of one connect. getaddrinfo for both families asks DNS for both and waits for both
// answers, so a DNS server that drops AAAA queries holds it for its retries (5 s and more). A host
// name with both families wanted therefore gets an IPv4-only lookup too (RFC 8305, section 3),
// started only when the lookup of both families has not answered within the resolution delay (or
// has failed): the connect starts on its answer, and the other's addresses join later. Started at
// once, it would cost every connect by name a second lookup (a second query to DNS) and a second
// wake-up of the caller, for nothing whenever the answer for both families comes in time. Looking
// the IPv6 addresses up apart instead would ask DNS about names that /etc/hosts has for IPv4 only,
// which the lookup of both families does not. Names go to the lookup threads; literals are looked
// up at once, in start.
class connect_lookups : public std::enable_shared_from_this<connect_lookups> {
 public:
  // How long the lookup of both families has before the IPv4 one starts; the connect starts on
  // the IPv4 answer as soon as it comes.
  static constexpr std::chrono::milliseconds resolution_delay{50};
  // Whether an IPv4 lookup may run beside: both families wanted, the host a name, and the local
  // address not one (it would be looked up twice).
  static bool splits(const connect_query& q);
  // answered() runs on a lookup thread after each answer (not for those looked up in start or
  // take). in_caller: look names up in the calling thread, one getaddrinfo for both families (the
  // blocking connect without a timeout, as before these lookups had threads).
  static std::shared_ptr<connect_lookups> start(const connect_query& q, std::function<void()> answered,
                                                bool in_caller = false);
  struct news {
    std::vector<endpoint> targets;     // answered since the last take, in the resolver's order
    std::optional<local_side> local;   // with the first targets
    bool more_coming = false;          // a lookup has not answered yet
    std::optional<clock::time_point> wait_until;  // no targets yet: when to take again (the
                                                  // IPv4 lookup is due then)
    std::exception_ptr failure;        // every lookup has failed: the error of the one of both
                                       // families, as without the IPv4 lookup
  };
  // What has come in. Starts the IPv4 lookup once it is due: the caller takes again at wait_until,
  // and after each answer.
  news take(clock::time_point now);
  // The connect has ended: lookups still queued are dropped, and those running (until getaddrinfo
  // returns) no longer count against the lookup threads' limit.
  void abandon();

 private:
  struct answer {
    explicit answer(address_family f) : family(f) {}
    address_family family;
    bool started = false, answered = false, given = false;
    connect_lookup found;
    std::exception_ptr error;
  };
  // Starts lookup i on a lookup thread, or looks it up here if no thread can be started.
  void launch(std::size_t i);
  void store(std::size_t i, connect_lookup found, std::exception_ptr error, bool notify);
  // Under m_: the lookup of both families has found addresses, which include the IPv4 ones, so the
  // IPv4 lookup is dropped if still queued, and not waited for.
  bool ipv4_not_needed() const { return answers_[0].answered && !answers_[0].error; }
  // Under m_: an answer that counts has yet to come (the IPv4 lookup counts before it starts).
  bool more_coming() const {
    return !answers_[0].answered || (answers_.size() == 2 && !answers_[1].answered && !ipv4_not_needed());
  }
  std::mutex m_;
  connect_query query_;
  std::vector<answer> answers_;  // the family asked (maybe both), and with splits() IPv4
  clock::time_point ipv4_due_{};  // when the IPv4 lookup starts if no answer has come
  bool given_any_ = false;
  bool abandoned_ = false;
  bool on_threads_ = false;  // written once, in start
  std::function<void()> answered_;
};

// The order in which to try a host's addresses (RFC 8305, section 4), fed by the lookups as they
// answer: the order given, but families alternating, so that a family whose addresses all stall
// costs one attempt delay, not one per address. The first target is of the first address's family;
// addresses that come later join the turns.
class target_order {
 public:
  void add(std::vector<endpoint> found);
  std::optional<endpoint> take();
  bool empty() const { return v6_.empty() && v4_.empty(); }

 private:
  std::deque<endpoint> v6_, v4_;
  std::vector<endpoint> seen_;   // every address added
  std::optional<bool> next_v6_;  // the family whose turn it is
};

// The endpoint to bind to before connecting to a target of `family` (AF_INET, AF_INET6): nullopt
// when no local side was asked for, or when the local address has none of that family, and that
// target is then skipped.
std::optional<endpoint> local_endpoint_for(const std::optional<local_side>& local, int family);
// The cause recorded for a skipped target.
std::string no_local_address_of_family(const std::string& local_address, const endpoint& target);
// Binds fd to local (SO_REUSEADDR first for a chosen port), or throws socket_create_error
// "bind to LOCAL for connect to PEER".
void bind_for_connect(int fd, const endpoint& local, const std::string& peer);

// Bytes queued on a TCP socket that have not been transmitted yet (0 if unknown).
std::size_t unsent_bytes(int fd) noexcept;
// From now on the socket polls writable (POLLOUT, EPOLLOUT) only once nothing is left unsent
// (TCP_NOTSENT_LOWAT 1); for a socket whose writing is over.
void report_when_all_sent(int fd) noexcept;

// Before closing a TLS client connection with bytes still unsent: data that arrives after close()
// (a TLS 1.3 server's session tickets come one round trip after the handshake, so a client that
// writes and closes at once can close first) draws a reset, and the reset throws away what was not
// sent yet. This keeps the socket open, reading and dropping what arrives, until everything queued
// has been transmitted, the peer has ended its side or failed, or the deadline passes. Once all is
// transmitted a reset can no longer overtake it. Returns at once when nothing is unsent.
void wait_until_sent(int fd, clock::time_point deadline) noexcept;

}  // namespace comm::detail
