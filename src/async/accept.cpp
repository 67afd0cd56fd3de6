// accept_tcp_connections_creating_async_io_states: a listening socket in the loop
// (level-triggered, so a bounded batch of accepts per wake-up stays fair), a state per connection,
// TLS handshakes before the user's callback.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <stdexcept>

#include "async/state.hpp"
#include "net/sockaddr.hpp"

namespace comm {
namespace detail {

namespace {
constexpr int accepts_per_wakeup = 64;
constexpr auto pause_after_fd_exhaustion = std::chrono::milliseconds(100);
}  // namespace

struct accept_core final : public accepting_handle, public loop_member {
  collection_impl* coll = nullptr;
  tcp_listener listener;
  std::uint16_t port = 0;
  std::string name;
  std::any info;
  accept_options opts;
  accept_state_callback state_cb;
  accept_socket_callback socket_cb;
  std::size_t open_count = 0;
  timer_token pause_timer;
  bool paused = false;

  std::shared_ptr<accept_core> self() { return std::static_pointer_cast<accept_core>(shared_from_this()); }

  void on_events(std::uint32_t) override {
    auto keep = self();
    for (int i = 0; i < accepts_per_wakeup && coll != nullptr; ++i) {
      sockaddr_storage peer;
      socklen_t peer_length = sizeof peer;
      int fd = ::accept4(listener.native_handle(), reinterpret_cast<sockaddr*>(&peer), &peer_length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        int e = errno;
        if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
        if (e == EAGAIN || e == EWOULDBLOCK) return;
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) pause(e);
        return;
      }
      accepted(socket_handle(fd), from_sockaddr(reinterpret_cast<sockaddr*>(&peer), peer_length));
    }
  }

  // Out of descriptors: stop listening for a moment instead of spinning on a readable listener.
  void pause(int e) {
    if (paused) return;
    paused = true;
    coll->modify(*this, listener.native_handle(), 0, true);
    pause_timer = coll->add_timer(loop_clock::now() + pause_after_fd_exhaustion, [this] {
      pause_timer = coll->no_timer();
      paused = false;
      coll->modify(*this, listener.native_handle(), EPOLLIN, true);
    });
    coll->report(std::make_exception_ptr(socket_create_error(
        {e, std::generic_category()}, "accept on port " + std::to_string(port) +
                                          " (accepting paused for 100 ms)")));
  }

  void accepted(socket_handle h, std::optional<endpoint> peer) {
    if (opts.max_connections != 0 && open_count >= opts.max_connections) return;  // closed by h
    int fd = h.get();
    int one = 1;
    if (opts.nodelay) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opts.keepalive) ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (socket_cb) {
      int flags = ::fcntl(fd, F_GETFL);
      if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      coll->guarded([&] { socket_cb(*this, std::move(h)); });
      return;
    }
    async_io_state_options so;
    so.read_timeout = opts.read_timeout;
    so.write_timeout = opts.write_timeout;
    so.user_info = opts.user_info;
    so.name = name;
    so.queue_output = opts.queue_output;
    auto state = state_impl::create_nonblocking(*coll, std::move(h), std::move(so), std::move(peer));
    state->acceptor_ = self();
    ++open_count;
    if (!opts.ssl_ctx) {
      coll->guarded([&] { state_cb(*this, *state); });
      return;
    }
    attach_ssl_options ao;
    ao.ssl_ctx = opts.ssl_ctx;
    ao.ssl_side = ssl_side::server;
    ao.ctx_configure_callback = opts.ctx_configure_callback;
    ao.ssl_configure_callback = opts.ssl_configure_callback;
    ao.handshake_timeout = opts.handshake_timeout;
    async_io_state_attach_ssl(*state, std::move(ao), [a = self()](async_io_state& s, std::exception_ptr err) {
      if (err) {
        auto peer = s.peer_address();
        close_async_io_state(s);
        if (a->opts.ssl_error_callback) a->opts.ssl_error_callback(err, peer);
        return;
      }
      if (a->coll != nullptr && a->state_cb) a->state_cb(*a, s);
    });
  }

  void close_quietly() noexcept override {
    if (coll == nullptr) return;
    auto keep = self();
    coll->cancel_timer(pause_timer);
    coll->remove(*this, listener.native_handle());
    listener.close();
    coll = nullptr;
  }
};

void acceptor_connection_closed(accept_core& a) noexcept {
  if (a.open_count > 0) --a.open_count;
}

namespace {

std::shared_ptr<accepting_handle> start_accepting(wait_state_collection& collection, std::string_view service,
                                                  accept_state_callback state_cb, accept_socket_callback socket_cb,
                                                  accept_options options) {
  auto& c = impl_of(collection);
  c.check_thread("accept_tcp_connections_creating_async_io_states");
  if (!state_cb && !socket_cb)
    throw std::invalid_argument("accept_tcp_connections_creating_async_io_states: no callback");
  if (options.ssl_ctx && options.ssl_ctx.side() != ssl_side::server)
    throw std::invalid_argument("accept_tcp_connections_creating_async_io_states: ssl_ctx '" +
                                options.ssl_ctx.name() + "' is a client context; a server context is needed");
  auto a = std::make_shared<accept_core>();
  a->coll = &c;
  a->pause_timer = c.no_timer();
  listen_options lo;
  lo.address = options.address;
  lo.backlog = options.backlog;
  lo.reuseport = options.reuseport;
  lo.nodelay = options.nodelay;
  lo.keepalive = options.keepalive;
  lo.family = options.family;
  a->listener = tcp_listener::open(service, lo);
  a->port = a->listener.local_port();
  int fd = a->listener.native_handle();
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    int e = errno;
    throw socket_create_error({e, std::generic_category()}, "listen on port " + std::to_string(a->port) +
                                                                ": make non-blocking");
  }
  a->name = options.name;
  a->info = options.user_info;
  a->state_cb = std::move(state_cb);
  a->socket_cb = std::move(socket_cb);
  a->opts = std::move(options);
  if (a->opts.init_function) a->opts.init_function(fd, a->port);
  c.add(a, fd, EPOLLIN, /*level=*/true);
  return a;
}

}  // namespace
}  // namespace detail

using detail::accept_core;

std::uint16_t accepting_handle::local_port() const noexcept { return static_cast<const accept_core&>(*this).port; }
const std::string& accepting_handle::name() const noexcept { return static_cast<const accept_core&>(*this).name; }
wait_state_collection* accepting_handle::collection() const noexcept {
  return static_cast<const accept_core&>(*this).coll;
}
bool accepting_handle::is_open() const noexcept { return static_cast<const accept_core&>(*this).coll != nullptr; }
int accepting_handle::native_handle() const noexcept {
  return static_cast<const accept_core&>(*this).listener.native_handle();
}
std::any& accepting_handle::user_info() noexcept { return static_cast<accept_core&>(*this).info; }
std::size_t accepting_handle::connections() const noexcept {
  return static_cast<const accept_core&>(*this).open_count;
}

std::shared_ptr<accepting_handle> accept_tcp_connections_creating_async_io_states(
    wait_state_collection& collection, std::string_view service, accept_state_callback callback,
    accept_options options) {
  return detail::start_accepting(collection, service, std::move(callback), {}, std::move(options));
}

std::shared_ptr<accepting_handle> accept_tcp_connections_creating_async_io_states(
    wait_state_collection& collection, std::string_view service, accept_socket_callback callback,
    accept_options options) {
  return detail::start_accepting(collection, service, {}, std::move(callback), std::move(options));
}

void close_accepting_handle(accepting_handle& handle, std::function<void(wait_state_collection&)> callback) {
  auto& a = static_cast<accept_core&>(handle);
  if (a.coll == nullptr) return;
  a.coll->check_thread("close_accepting_handle");
  detail::collection_impl* c = a.coll;
  a.close_quietly();
  if (callback) c->defer([c, cb = std::move(callback)] { cb(*c); });
}

}  // namespace comm
