// Sockets: connect with a shared timeout, listening sockets, socket options.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mutex>

#include "net/sockaddr.hpp"

namespace comm {

void socket_handle::reset(int fd) noexcept {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

namespace {

void set_int_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) {
    int e = errno;
    throw socket_create_error(detail::errno_code(e), std::string("setsockopt ") + what);
  }
}

}  // namespace

namespace detail {

connect_lookup look_up(const connect_query& q) {
  connect_lookup out;
  out.targets = resolve(q.host, q.service, q.family);
  if (q.local_address.empty() && q.local_port.empty()) return out;
  local_side local;
  try {
    local.port = resolve_service(q.local_port);
  } catch (const socket_error& e) {
    throw socket_create_error(e.code(), std::string("bind: ") + e.what());
  }
  if (auto a = ip_address::try_parse(q.local_address))
    local.addresses.push_back(*a);
  else if (!q.local_address.empty())
    local.addresses = get_host_addresses(q.local_address);  // none found: every target is skipped
  out.local = std::move(local);
  return out;
}

std::optional<endpoint> local_endpoint_for(const std::optional<local_side>& local, int family) {
  if (!local) return std::nullopt;
  if (local->addresses.empty())  // a port only
    return endpoint{family == AF_INET6 ? ip_address::any_v6() : ip_address::any_v4(), local->port};
  for (const auto& a : local->addresses)
    if ((family == AF_INET6) == a.is_v6()) return endpoint{a, local->port};
  return std::nullopt;  // no local address of this family: this target is skipped
}

void bind_for_connect(int fd, const endpoint& local, const std::string& peer) {
  const std::string what = "bind to " + local.to_string() + " for connect to " + peer;
  // A local port of one's choice may still be held by an earlier connection in TIME_WAIT.
  int one = 1;
  if (local.port != 0 && ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    int e = errno;
    throw socket_create_error(errno_code(e), what + ": SO_REUSEADDR");
  }
  const auto a = to_sockaddr(local);
  if (::bind(fd, a.get(), a.length) != 0) {
    int e = errno;
    throw socket_create_error(errno_code(e), what);
  }
}

std::string no_local_address_of_family(const std::string& local_address, const endpoint& target) {
  return "local address " + local_address + " has no address of the family of " + target.to_string();
}

}  // namespace detail

namespace {

struct connect_attempt {
  socket_handle socket;
  endpoint target;
};

}  // namespace

// Happy Eyeballs (RFC 8305). When the lookup of both families has not answered within the
// resolution delay, an IPv4-only one starts beside it (section 3), and the connect starts on the
// first answer; addresses that come later join in. The targets, families alternating,
// start one after another (sections 4 and 5): the next one when an attempt has failed or the last
// one has had attempt_delay without an answer. Those started stay in the race, and the first to
// connect wins. Without attempt_delay, each target has until its answer (or the deadline) before
// the next starts.
socket_handle connect_to_tcp_server(std::string_view host, std::string_view service, const connect_options& options) {
  const std::string peer = detail::host_port_text(host, service);
  const auto deadline = detail::deadline_after(options.timeout);
  auto timed_out = [&](const char* during) {
    return socket_connect_error(std::make_error_code(std::errc::timed_out),
                                "connect to " + peer + ": timed out after " + std::to_string(options.timeout->count()) +
                                    " ms" + during);
  };
  // The lookups. On lookup threads, the timeout covers them too; a lookup thread's answer wakes
  // the poll below through an eventfd. Without a timeout, and with one family to look up, the name
  // is looked up here, as glibc's resolver takes it.
  const detail::connect_query q{std::string(host), std::string(service), options.family, options.local_address,
                                options.local_port};
  const bool in_caller = !deadline && !detail::connect_lookups::splits(q);
  // The eventfd is closed here, at the return, though a lookup thread may still hold `wake`.
  struct lookup_wake {
    std::mutex m;
    int fd = -1;
    void signal() {
      std::lock_guard lock(m);
      const std::uint64_t one = 1;
      if (fd < 0) return;
      [[maybe_unused]] auto n = ::write(fd, &one, sizeof one);
    }
    void close() noexcept {
      std::lock_guard lock(m);
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    ~lookup_wake() { close(); }
  };
  std::shared_ptr<lookup_wake> wake;
  std::function<void()> answered;
  if (!in_caller && detail::needs_lookup_thread(q)) {
    wake = std::make_shared<lookup_wake>();
    wake->fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake->fd < 0) {
      int e = errno;
      throw socket_create_error(detail::errno_code(e), "connect to " + peer + ": eventfd");
    }
    answered = [wake] { wake->signal(); };
  }
  const auto lookups = detail::connect_lookups::start(q, std::move(answered), in_caller);
  struct at_exit {
    detail::connect_lookups& l;
    lookup_wake* w;
    ~at_exit() {
      l.abandon();
      if (w != nullptr) w->close();
    }
  } end_lookups{*lookups, wake.get()};

  detail::target_order order;
  std::optional<detail::local_side> local_side;
  bool more_coming = true;  // a lookup has not answered yet
  bool got_targets = false;
  std::optional<detail::clock::time_point> resolution_delay_end;
  auto take_answers = [&] {
    auto news = lookups->take(detail::clock::now());
    if (news.failure) std::rethrow_exception(news.failure);  // every lookup failed
    if (!news.targets.empty()) {
      if (!got_targets) local_side = std::move(news.local);
      got_targets = true;
      order.add(std::move(news.targets));
    }
    more_coming = news.more_coming;
    resolution_delay_end = news.wait_until;
  };

  std::error_code last_code;
  std::string last_cause = "no address to connect to";
  bool create_failure = false;
  auto failed = [&](int e) {
    last_code = detail::errno_code(e);
    last_cause.clear();
    create_failure = false;
  };
  // Blocking again. The socket was made with O_NONBLOCK as its only flag that F_SETFL changes, so
  // no F_GETFL is needed to keep the others.
  auto won = [&](socket_handle& s) {
    if (::fcntl(s.get(), F_SETFL, 0) != 0) {
      int e = errno;
      throw socket_create_error(detail::errno_code(e), "connect to " + peer + ": fcntl O_NONBLOCK");
    }
    return std::move(s);
  };

  std::vector<connect_attempt> racing;
  detail::clock::time_point next_start{};  // when the next target joins the race
  for (;;) {
    take_answers();
    // Start targets: the next one at once if none is racing, else once the attempt delay is over.
    // One that fails at once makes way for the next at once.
    while (!order.empty() && (racing.empty() || (options.attempt_delay && detail::clock::now() >= next_start))) {
      const endpoint target = *order.take();
      const auto addr = detail::to_sockaddr(target);
      auto local = detail::local_endpoint_for(local_side, addr.family());
      if (!options.local_address.empty() && !local) {
        last_code = std::make_error_code(std::errc::address_family_not_supported);
        last_cause = detail::no_local_address_of_family(options.local_address, target);
        continue;
      }
      socket_handle s(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
      if (!s) {
        int e = errno;
        last_code = detail::errno_code(e);
        last_cause = "socket";
        create_failure = true;
        continue;
      }
      if (options.nodelay) set_nodelay(s.get(), true);
      if (options.keepalive) set_keepalive(s.get(), true);
      if (local) detail::bind_for_connect(s.get(), *local, peer);
      int rc;
      do {
        rc = ::connect(s.get(), addr.get(), addr.length);
      } while (rc != 0 && errno == EINTR);
      if (rc == 0) return won(s);
      if (errno != EINPROGRESS) {
        failed(errno);
        continue;
      }
      racing.push_back({std::move(s), target});
      if (options.attempt_delay) next_start = detail::clock::now() + *options.attempt_delay;
      break;
    }
    if (racing.empty() && !more_coming) break;  // every target has failed

    // Wait for an attempt's answer, a lookup's, the next start, or the deadline.
    std::optional<detail::clock::time_point> wake_at = deadline;
    auto earlier = [&](detail::clock::time_point t) {
      if (!wake_at || t < *wake_at) wake_at = t;
    };
    if (!order.empty() && options.attempt_delay) earlier(next_start);
    if (resolution_delay_end) earlier(*resolution_delay_end);
    std::vector<pollfd> polled(racing.size());
    for (std::size_t i = 0; i < racing.size(); ++i) polled[i] = {racing[i].socket.get(), POLLOUT, 0};
    if (more_coming && wake) polled.push_back({wake->fd, POLLIN, 0});
    int rc = ::poll(polled.data(), polled.size(), detail::poll_timeout_ms(wake_at));
    if (rc < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      throw socket_connect_error(detail::errno_code(e), "connect to " + peer + ": poll");
    }
    if (rc == 0) {
      if (deadline && detail::clock::now() >= *deadline) throw timed_out(got_targets ? "" : " resolving the name");
      continue;  // the attempt delay is over, or the IPv4 lookup is due
    }
    if (polled.size() > racing.size() && polled.back().revents != 0) {  // a lookup has answered
      std::uint64_t n;
      [[maybe_unused]] auto r = ::read(wake->fd, &n, sizeof n);
    }
    for (std::size_t i = racing.size(); i-- > 0;) {
      if (polled[i].revents == 0) continue;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(polled[i].fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err == 0) return won(racing[i].socket);  // the others close as `racing` goes
      failed(err);
      racing.erase(racing.begin() + static_cast<std::ptrdiff_t>(i));
      next_start = detail::clock::now();  // a failure makes way for the next target at once
    }
  }
  if (create_failure) throw socket_create_error(last_code, "connect to " + peer + (last_cause.empty() ? "" : ": " + last_cause));
  throw socket_connect_error(last_code, "connect to " + peer + (last_cause.empty() ? "" : ": " + last_cause));
}

// ---------------------------------------------------------------------------------------------
namespace {

socket_handle open_listening(const endpoint& ep, const listen_options& o, bool v6only) {
  const auto addr = detail::to_sockaddr(ep);
  socket_handle s(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
  auto fail = [&](const std::string& op) {
    int e = errno;
    throw socket_create_error(detail::errno_code(e), op + " " + ep.to_string());
  };
  if (!s) fail("socket for");
  if (addr.family() == AF_INET6) set_int_option(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only ? 1 : 0, "IPV6_V6ONLY");
  if (o.reuseaddr) set_int_option(s.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  if (o.reuseport) set_int_option(s.get(), SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
  if (::bind(s.get(), addr.get(), addr.length) != 0) fail("bind to");
  if (::listen(s.get(), o.backlog) != 0) fail("listen on");
  return s;
}

}  // namespace

tcp_listener tcp_listener::open(std::string_view service, const listen_options& options) {
  std::uint16_t port;
  try {
    port = resolve_service(service);
  } catch (const socket_error& e) {
    throw socket_create_error(e.code(), std::string("listen: ") + e.what());
  }
  tcp_listener l;
  l.options_ = options;
  if (options.address.empty()) {
    if (options.family != address_family::ipv4) {
      try {
        l.handle_ = open_listening({ip_address::any_v6(), port}, options, options.family == address_family::ipv6);
        return l;
      } catch (const socket_create_error& e) {
        // No IPv6 on this host: fall back to IPv4 (only when the address family is the problem).
        if (options.family == address_family::ipv6 ||
            (e.code() != std::errc::address_family_not_supported && e.code() != std::errc::address_not_available))
          throw;
      }
    }
    l.handle_ = open_listening({ip_address::any_v4(), port}, options, false);
    return l;
  }
  std::optional<ip_address> a = ip_address::try_parse(options.address);
  if (!a) {
    auto all = get_host_addresses(options.address, options.family);
    if (all.empty())
      throw socket_create_error(std::make_error_code(std::errc::invalid_argument),
                                "listen on " + detail::host_port_text(options.address, service) +
                                    ": cannot resolve the address");
    a = all.front();
  }
  l.handle_ = open_listening({*a, port}, options, a->is_v6());
  return l;
}

std::uint16_t tcp_listener::local_port() const { return local_endpoint().port; }

endpoint tcp_listener::local_endpoint() const {
  if (auto ep = get_socket_address(handle_.get())) return *ep;
  throw socket_create_error(std::make_error_code(std::errc::bad_file_descriptor), "listener: not open");
}

std::optional<socket_handle> tcp_listener::accept(std::optional<milliseconds> timeout) {
  const auto deadline = detail::deadline_after(timeout);
  for (;;) {
    int ev = detail::poll_one(handle_.get(), POLLIN, deadline);
    if (ev == 0) return std::nullopt;
    if (ev < 0 || (ev & POLLNVAL)) {
      int e = ev < 0 ? errno : EBADF;
      throw socket_create_error(detail::errno_code(e), "accept");
    }
    socket_handle s(::accept4(handle_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!s) {
      int e = errno;
      // Another thread took it, or the client gave up before we got to it: wait again.
      if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      throw socket_create_error(detail::errno_code(e), "accept on port " + std::to_string(local_port()));
    }
    if (options_.nodelay) set_nodelay(s.get(), true);
    if (options_.keepalive) set_keepalive(s.get(), true);
    return s;
  }
}

std::optional<endpoint> get_socket_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return detail::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

std::optional<endpoint> get_socket_peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return detail::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

void set_nodelay(int fd, bool on) { set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0, "TCP_NODELAY"); }
void set_keepalive(int fd, bool on) { set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0, "SO_KEEPALIVE"); }

void set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK)) != 0) {
    int e = errno;
    throw socket_create_error(detail::errno_code(e), "fcntl O_NONBLOCK");
  }
}

}  // namespace comm
