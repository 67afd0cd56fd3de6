// create_async_io_state_and_connected_tcp_socket: non-blocking connects on the loop, the addresses
// racing as attempt_delay says (Happy Eyeballs) within one connect timeout, then (with a TLS
// context) the handshake, then the callback.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

#include "async/state.hpp"
#include "net/sockaddr.hpp"

namespace comm {
namespace detail {

std::string sni_for(const std::string& name);  // tls.cpp

namespace {

class connector;

// One address's connect in flight, registered for EPOLLOUT. Several may race (Happy Eyeballs).
class connect_attempt final : public loop_member {
 public:
  connect_attempt(std::shared_ptr<connector> owner, socket_handle sock, endpoint target)
      : owner(std::move(owner)), sock(std::move(sock)), target(std::move(target)) {}
  void on_events(std::uint32_t) override;
  void close_quietly() noexcept override;

  std::shared_ptr<connector> owner;  // released when the race is over (see connector::end_race)
  socket_handle sock;
  endpoint target;
};

class connector final : public std::enable_shared_from_this<connector> {
 public:
  connector(collection_impl& c, std::string host, std::string service, connected_callback cb, async_connect_options o)
      : c_(c), host_(std::move(host)), service_(std::move(service)), cb_(std::move(cb)), opts_(std::move(o)) {
    timer_ = c_.no_timer();
    delay_timer_ = c_.no_timer();
    resolution_timer_ = c_.no_timer();
  }

  // Literals are looked up here; a host or local address that is a name on lookup threads (with
  // an IPv4-only lookup beside: connect_lookups), each answer posted back to the loop. The
  // connect timeout covers the lookups.
  void start() {
    closes_at_start_ = c_.closes();
    if (opts_.connect_timeout)
      timer_ = c_.add_timer(loop_clock::now() + *opts_.connect_timeout, [self = shared_from_this()] {
        self->timer_ = self->c_.no_timer();
        self->timed_out();
      });
    connect_query q{host_, service_, opts_.family, opts_.local_address, opts_.local_port};
    std::weak_ptr<wait_state_collection> collection = c_.shared_from_this();
    // Holds the connector until the last answer (or abandon, when the connect ends first).
    auto answered = [self = shared_from_this(), collection] {
      auto c = collection.lock();
      if (!c) return;  // the collection has gone
      try {
        impl_of(*c).post([self] { self->answers_in(); });
      } catch (...) {  // no memory for the closure: nor for much else
      }
    };
    try {
      lookups_ = connect_lookups::start(q, std::move(answered));
    } catch (...) {
      fail(std::current_exception());
      return;
    }
    answers_in();  // what is in already, or the timer for the IPv4 lookup
  }

  // Takes the lookups' answers: the first targets start the race, later ones join it.
  void answers_in() {
    if (done_) return;  // timed out, or connected on an earlier answer
    if (c_.closes() != closes_at_start_) {  // closed meanwhile: lookups still queued are dropped
      lookups_->abandon();
      return;
    }
    auto news = lookups_->take(loop_clock::now());
    if (news.failure) {
      fail(std::move(news.failure));
      return;
    }
    more_coming_ = news.more_coming;
    if (news.wait_until) {  // the IPv4 lookup is due then, if no answer comes first
      c_.cancel_timer(resolution_timer_);
      resolution_timer_ = c_.add_timer(*news.wait_until, [self = shared_from_this()] {
        self->resolution_timer_ = self->c_.no_timer();
        self->answers_in();
      });
      return;
    }
    if (news.targets.empty()) {
      if (!more_coming_ && racing_.empty() && order_.empty()) start_next();  // nothing left: fails
      return;
    }
    c_.cancel_timer(resolution_timer_);
    if (!got_targets_) local_ = std::move(news.local);
    got_targets_ = true;
    order_.add(std::move(news.targets));
    // None racing: start at once. Else the next joins once the attempt delay since the last start
    // (or at once after a failure) is over.
    if (racing_.empty() || (opts_.attempt_delay && loop_clock::now() >= next_start_))
      start_next();
    else if (opts_.attempt_delay && delay_timer_ == c_.no_timer())
      start_next_at(next_start_);
  }

  void attempt_event(connect_attempt& a) {
    auto keep = shared_from_this();
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(a.sock.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY) return;
    if (err == 0) {
      // A spurious EPOLLOUT before the connect finished would show ENOTCONN here.
      sockaddr_storage ss;
      socklen_t sl = sizeof ss;
      std::optional<endpoint> peer = a.target;
      if (::getpeername(a.sock.get(), reinterpret_cast<sockaddr*>(&ss), &sl) != 0) {
        if (errno == ENOTCONN) return;
      } else {
        peer = from_sockaddr(reinterpret_cast<sockaddr*>(&ss), sl);
      }
      current_ = a.target;
      socket_handle sock = std::move(a.sock);
      connected(std::move(sock), std::move(peer), &a);  // the state takes over a's registration
      return;
    }
    current_ = a.target;
    drop(a);
    last_errno_ = err;
    last_cause_.clear();
    next_start_ = loop_clock::now();
    start_next();  // a failure makes way for the next address at once
  }

  void close_quietly() noexcept {
    c_.cancel_timer(timer_);
    end_race();
    done_ = true;
  }

 private:
  // Starts addresses until one is in flight, one has connected, or none is left; then, with more
  // left, the next one joins the race after attempt_delay (RFC 8305, section 5).
  void start_next() {
    c_.cancel_timer(delay_timer_);
    while (!done_ && !order_.empty()) {
      const endpoint ep = *order_.take();
      current_ = ep;
      sockaddr_buf sa = to_sockaddr(ep);
      std::optional<endpoint> local = local_endpoint_for(local_, sa.family());
      if (!opts_.local_address.empty() && !local) {  // as the blocking connect: try the next address
        last_errno_ = EAFNOSUPPORT;
        last_cause_ = no_local_address_of_family(opts_.local_address, ep);
        continue;
      }
      int fd = ::socket(sa.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        int e = errno;
        fail(std::make_exception_ptr(socket_create_error({e, std::generic_category()},
                                                         "connect to " + host_port_text(host_, service_) +
                                                             ": socket")));
        return;
      }
      socket_handle sock(fd);
      int one = 1;
      if (opts_.nodelay) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (opts_.keepalive) ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      if (local) {
        try {
          bind_for_connect(fd, *local, host_port_text(host_, service_));
        } catch (...) {
          fail(std::current_exception());
          return;
        }
      }
      if (::connect(fd, sa.get(), sa.length) == 0) {
        connected(std::move(sock), ep, nullptr);
        return;
      }
      int e = errno;
      if (e == EINPROGRESS) {
        auto a = std::make_shared<connect_attempt>(shared_from_this(), std::move(sock), ep);
        try {
          c_.add(a, fd, EPOLLOUT);
        } catch (...) {
          a->owner.reset();
          fail(std::current_exception());
          return;
        }
        racing_.push_back(std::move(a));
        if (opts_.attempt_delay) {
          next_start_ = loop_clock::now() + *opts_.attempt_delay;
          if (!order_.empty()) start_next_at(next_start_);
        }
        return;
      }
      last_errno_ = e;
      last_cause_.clear();
    }
    // Nothing racing and nothing left to try: the connect fails, unless a lookup may bring more.
    if (done_ || !racing_.empty() || more_coming_) return;
    int e = last_errno_ ? last_errno_ : EHOSTUNREACH;
    fail(std::make_exception_ptr(socket_connect_error(
        {e, std::generic_category()},
        "connect to " + host_port_text(host_, service_) + (last_cause_.empty() ? "" : ": " + last_cause_))));
  }

  void start_next_at(loop_clock::time_point t) {
    c_.cancel_timer(delay_timer_);
    delay_timer_ = c_.add_timer(t, [self = shared_from_this()] {
      self->delay_timer_ = self->c_.no_timer();
      self->start_next();
    });
  }

  // Deregisters and closes one attempt.
  void drop(connect_attempt& a) noexcept {
    auto it = std::find_if(racing_.begin(), racing_.end(), [&](const auto& p) { return p.get() == &a; });
    if (it == racing_.end()) return;
    auto held = std::move(*it);
    racing_.erase(it);
    c_.remove(*held, held->sock.get());
    held->sock.reset();
    held->owner.reset();
  }

  // Every attempt still racing is deregistered and closed (the winner's socket has moved on).
  void end_race() noexcept {
    c_.cancel_timer(delay_timer_);
    c_.cancel_timer(resolution_timer_);
    if (lookups_) lookups_->abandon();
    for (auto& a : racing_) {
      c_.remove(*a, a->sock.get());
      a->sock.reset();
      a->owner.reset();
    }
    racing_.clear();
  }

  void timed_out() {
    if (done_ || c_.closes() != closes_at_start_) return;
    end_race();
    auto ms = opts_.connect_timeout->count();
    fail(std::make_exception_ptr(
        socket_connect_error(std::make_error_code(std::errc::timed_out),
                             "connect to " + host_port_text(host_, service_) + ": timed out after " +
                                 std::to_string(ms) + " ms" + (got_targets_ ? "" : " resolving the name"))));
  }

  // winner: the attempt whose registration the state takes over (nullptr: not registered).
  void connected(socket_handle sock, std::optional<endpoint> peer, connect_attempt* winner) {
    c_.cancel_timer(timer_);
    done_ = true;
    std::shared_ptr<connect_attempt> held;  // the winner lives until its slot has been handed over
    if (winner != nullptr) {
      auto it = std::find_if(racing_.begin(), racing_.end(), [&](const auto& p) { return p.get() == winner; });
      if (it != racing_.end()) {
        held = std::move(*it);
        racing_.erase(it);
        held->owner.reset();
      }
    }
    end_race();
    async_io_state_options so;
    so.read_timeout = opts_.read_timeout;
    so.write_timeout = opts_.write_timeout;
    so.user_info = std::move(opts_.user_info);
    so.name = opts_.name;
    so.queue_output = opts_.queue_output;
    std::shared_ptr<state_impl> state;
    try {
      state = state_impl::create_nonblocking(c_, std::move(sock), std::move(so), std::move(peer), winner);
    } catch (...) {
      if (winner != nullptr) c_.remove(*winner, -1);  // the socket is closed
      deliver(nullptr, std::current_exception());
      return;
    }
    if (std::holds_alternative<std::monostate>(opts_.ssl_ctx)) {
      deliver(state, nullptr);
      return;
    }
    attach_ssl_options ao;
    ao.ssl_ctx = std::visit([](auto&& v) -> ssl_ctx_spec { return std::move(v); }, std::move(opts_.ssl_ctx));
    ao.ssl_side = ssl_side::client;
    ao.ctx_configure_callback = std::move(opts_.ctx_configure_callback);
    ao.ssl_configure_callback = std::move(opts_.ssl_configure_callback);
    ao.handshake_timeout = opts_.handshake_timeout;
    ao.tlsext_host_name = opts_.tlsext_host_name.empty() ? sni_for(host_) : opts_.tlsext_host_name;
    ao.host_name = host_;
    ao.session_key = host_port_text(host_, service_);  // as open_tcp_stream's
    auto cb = std::move(cb_);
    async_io_state_attach_ssl(*state, std::move(ao), [cb](async_io_state& s, std::exception_ptr err) {
      if (err) {
        close_async_io_state(s);
        if (cb) cb(nullptr, err);
      } else if (cb) {
        cb(&s, nullptr);
      }
    });
  }

  void fail(std::exception_ptr err) {
    c_.cancel_timer(timer_);
    end_race();
    done_ = true;
    deliver(nullptr, std::move(err));
  }

  // From the loop, never inside the creating call.
  void deliver(std::shared_ptr<state_impl> state, std::exception_ptr err) {
    c_.defer([cb = std::move(cb_), state, err] {
      if (state && !state->open()) return;  // closed meanwhile (close_wait_state_collection)
      if (cb) cb(state.get(), err);
    });
  }

  collection_impl& c_;
  std::string host_, service_;
  connected_callback cb_;
  async_connect_options opts_;
  std::shared_ptr<connect_lookups> lookups_;
  target_order order_;  // the targets not tried yet
  std::optional<local_side> local_;
  bool got_targets_ = false;  // a lookup has answered with addresses
  bool more_coming_ = true;   // a lookup has not answered yet
  loop_clock::time_point next_start_{};  // when the next target may join the race
  endpoint current_;
  std::vector<std::shared_ptr<connect_attempt>> racing_;
  timer_token timer_;
  timer_token delay_timer_;
  timer_token resolution_timer_;
  int last_errno_ = 0;
  std::string last_cause_;  // beyond the errno's own text
  bool done_ = false;  // the connect has ended (connected, failed or closed)
  std::uint64_t closes_at_start_ = 0;
};

void connect_attempt::on_events(std::uint32_t) {
  auto keep = owner;  // the attempt may be dropped inside
  if (keep) keep->attempt_event(*this);
}

void connect_attempt::close_quietly() noexcept {
  if (auto keep = owner) keep->close_quietly();
}

}  // namespace
}  // namespace detail

void create_async_io_state_and_connected_tcp_socket(wait_state_collection& collection, std::string_view host,
                                                    std::string_view service, connected_callback callback,
                                                    async_connect_options options) {
  auto& c = detail::impl_of(collection);
  c.check_thread("create_async_io_state_and_connected_tcp_socket");
  auto conn = std::make_shared<detail::connector>(c, std::string(host), std::string(service), std::move(callback),
                                                  std::move(options));
  conn->start();
}

}  // namespace comm
