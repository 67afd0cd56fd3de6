// async_io_state: creation, accessors, close / abort / shutdown and the public operation calls.
// The I/O itself is in state_io.cpp, TLS in tls.cpp.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "async/state.hpp"
#include "net/sockaddr.hpp"

namespace comm {
namespace detail {

void acceptor_connection_closed(accept_core& a) noexcept;  // accept.cpp

std::exception_ptr io_error(std::error_code ec, const std::string& what, const ssl_connection* conn) {
  if (ec == std::errc::timed_out) return std::make_exception_ptr(socket_timeout_error(ec, what, conn));
  return std::make_exception_ptr(socket_io_error(ec, what, conn));
}

state_impl::state_impl(collection_impl& c, socket_handle s, async_io_state_options o)
    : coll_(&c),
      sock_(std::move(s)),
      name_(std::move(o.name)),
      user_info_(std::move(o.user_info)),
      read_timeout_(o.read_timeout),
      write_timeout_(o.write_timeout),
      max_read_(o.max_read == 0 ? 1 : o.max_read),
      max_buffer_(o.max_buffer),
      max_queued_(o.max_queued_output),
      queue_output_(o.queue_output) {}

state_impl::~state_impl() { drop_tls(); }

std::shared_ptr<state_impl> state_impl::create(collection_impl& c, socket_handle s, async_io_state_options o) {
  if (!s.is_open()) throw std::invalid_argument("create_async_io_state: the socket is not open");
  int fd = s.get();
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
    int e = errno;
    throw socket_create_error(std::error_code(e, std::generic_category()),
                              "create_async_io_state: make descriptor " + std::to_string(fd) +
                                  " non-blocking");
  }
  return create_nonblocking(c, std::move(s), std::move(o), get_socket_peer_address(fd));
}

std::shared_ptr<state_impl> state_impl::create_nonblocking(collection_impl& c, socket_handle s,
                                                           async_io_state_options o, std::optional<endpoint> peer,
                                                           loop_member* replacing) {
  int fd = s.get();
  auto state = std::make_shared<state_impl>(c, std::move(s), std::move(o));
  state->peer_ = std::move(peer);
  constexpr std::uint32_t events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
  if (replacing != nullptr)
    c.replace(*replacing, state, fd, events);
  else
    c.add(state, fd, events);
  return state;
}

collection_impl& state_impl::coll(const char* operation) {
  if (coll_ == nullptr)
    throw std::logic_error(std::string(operation) + ": async_io_state '" + name_ + "' is closed");
  coll_->check_thread(operation);
  return *coll_;
}

std::string state_impl::peer_text() const {
  if (peer_) return peer_->to_string();
  if (!name_.empty()) return name_;
  return "descriptor " + std::to_string(sock_.get());
}

void state_impl::on_events(std::uint32_t events) {
  input_.on_edge(events);
  if (lingering_) return linger_step();
  drive();
}

void state_impl::schedule_drive() {
  if (drive_scheduled_ || coll_ == nullptr) return;
  drive_scheduled_ = true;
  coll_->defer_drive(self());
}

std::size_t state_impl::close(bool keep_alive, bool may_linger) noexcept {
  if (coll_ == nullptr) return buffered();
  auto keep = weak_from_this().lock();  // the collection's reference goes below
  collection_impl* c = coll_;
  if (read_) c->cancel_timer(read_->timer);
  if (calling_) {
    c->cancel_timer(calling_->timer);
    calling_->finished = true;
  }
  if (write_) c->cancel_timer(write_->timer);
  if (ssl_) c->cancel_timer(ssl_->timer);
  if (shutdown_) c->cancel_timer(shutdown_->timer);
  abandon_read("closed");
  abandon_writes("closed");
  read_.reset();
  write_.reset();
  ssl_.reset();
  shutdown_.reset();
  coll_ = nullptr;
  if (acceptor_) {
    acceptor_connection_closed(*acceptor_);
    acceptor_.reset();
  }
  // Records of writes already reported done (write-behind) leave before the socket closes.
  // (start_linger tries them once itself; without a linger that one try is all they get.)
  if (keep_alive) send_owed_now();
  else if (may_linger && start_linger(*c)) return buffered();
  else if (!may_linger && tls_ && tls_->engine) (void)tls_->transport.flush();
  // What arrived unread goes first (see close_socket), once. More may arrive after the close while
  // bytes are still unsent: a TLS 1.3 server's session tickets, or more from a peer that has sent
  // what the user did not read. The socket then stays open, dropping what comes, until they have
  // left (see begin_unsent_wait).
  const bool unread = !keep_alive && sock_ && discard_unread_input(sock_.get(), close_drain_limit).bytes > 0;
  if (may_linger && !keep_alive && (tickets_may_come() || unread) && begin_linger(*c, false)) return buffered();
  drop_tls();
  c->remove(*this, sock_.get());
  if (!keep_alive) sock_.reset();  // its unread input was dropped just above
  return buffered();
}

// What arrived unread goes first (session tickets, or data the user did not read), TLS or plain:
// Linux answers close() over unread data with a reset, which throws away the unsent bytes. See
// discard_unread_input.
void state_impl::close_socket() noexcept {
  if (sock_) discard_unread_input(sock_.get(), close_drain_limit);
  sock_.reset();
}

bool state_impl::start_linger(collection_impl& c) noexcept {
  if (!tls_ || !tls_->engine || tls_->transport.pending_output() == 0) return false;
  if (!tls_->transport.flush().would_block()) return false;  // all left, or cannot leave
  return begin_linger(c, true);
}

// The socket stays registered, closed for the user: waiting for owed records first, or (owed
// false) straight for the unsent bytes. False, with the linger undone: close now.
bool state_impl::begin_linger(collection_impl& c, bool owed) noexcept {
  lingering_ = true;
  linger_coll_ = &c;
  linger_tickets_ = tickets_may_come();
  linger_input_ = false;
  linger_unsent_ = false;
  linger_timer_ = c.no_timer();
  linger_deadline_ = loop_clock::now() + output_bound();
  if (owed ? arm_linger_timer() : begin_unsent_wait()) return true;
  lingering_ = linger_unsent_ = false;
  linger_coll_ = nullptr;
  return false;
}

bool state_impl::tickets_may_come() const noexcept {
  return tls_ && tls_->engine && detail::tickets_may_come(*tls_->engine);
}

// The TLS work is over; while bytes are still unsent (and the peer has not ended), the socket stays
// registered until they have been transmitted, dropping what arrives. False: close now.
bool state_impl::begin_unsent_wait() noexcept {
  drop_tls();
  const int fd = sock_.get();
  if (input_.ended || discard_unread_input(fd).ended || unsent_bytes(fd) == 0) return false;
  report_when_all_sent(fd);
  linger_unsent_ = true;
  linger_coll_->modify(*this, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP, false);  // an edge under the new rule
  linger_coll_->cancel_timer(linger_timer_);
  return arm_linger_timer();
}

// At the deadline; while waiting for unsent bytes also every 50 ms, should a wake-up be missed.
bool state_impl::arm_linger_timer() noexcept {
  auto when = linger_deadline_;
  if (linger_unsent_) when = std::min(when, loop_clock::now() + milliseconds(50));
  try {
    linger_timer_ = linger_coll_->add_timer(when, [this] {
      linger_timer_ = linger_coll_->no_timer();  // fired: gone from the table
      linger_timer_fired();
    });
  } catch (...) {
    return false;
  }
  return true;
}

void state_impl::linger_timer_fired() noexcept {
  auto keep = weak_from_this().lock();  // end_linger may drop the last other reference
  if (loop_clock::now() >= linger_deadline_) return end_linger();
  linger_step();
  if (lingering_ && !arm_linger_timer()) end_linger();
}

void state_impl::linger_step() noexcept {
  if (linger_unsent_) {
    if (input_.ended || discard_unread_input(sock_.get()).ended || unsent_bytes(sock_.get()) == 0) end_linger();
    return;
  }
  if (discard_unread_input(sock_.get()).bytes > 0) linger_input_ = true;
  io_result f = tls_->transport.flush();
  if (f.would_block()) return;
  if (f.error == 0 && (linger_tickets_ || linger_input_) && begin_unsent_wait()) return;
  end_linger();
}

void state_impl::end_linger() noexcept {
  if (!lingering_) return;
  auto keep = weak_from_this().lock();  // the collection's reference goes below
  lingering_ = false;
  linger_unsent_ = false;
  linger_coll_->cancel_timer(linger_timer_);
  drop_tls();
  linger_coll_->remove(*this, sock_.get());
  linger_coll_ = nullptr;
  close_socket();
}

// close(keep_alive): the caller takes the socket next, so what is owed leaves now, waiting for
// room up to the write timeout (10 s without one).
void state_impl::send_owed_now() noexcept {
  if (!tls_ || !tls_->engine) return;
  auto deadline = loop_clock::now() + output_bound();
  while (tls_->transport.pending_output() > 0) {
    if (!tls_->transport.flush().would_block()) return;
    auto left = std::chrono::ceil<milliseconds>(deadline - loop_clock::now()).count();
    if (left <= 0) return;
    pollfd p{sock_.get(), POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, INT_MAX))) < 0 && errno != EINTR) return;
  }
}

void state_impl::check_no_ssl_op(const char* operation) const {
  if (ssl_)
    throw std::logic_error(std::string(operation) + ": async_io_state '" + name_ +
                           "' has a TLS attach, handshake or detach in progress");
}

void state_impl::check_idle(const char* operation) const {
  check_no_ssl_op(operation);
  if (read_ || (calling_ && !calling_->finished) || write_)
    throw std::logic_error(std::string(operation) + ": async_io_state '" + name_ +
                           "' has a read or write in progress");
}

void state_impl::start_read(std::unique_ptr<read_op> op) {
  check_no_ssl_op(op->checking ? "async_io_state_read_with_checking" : "async_io_state_read_buffer");
  if (read_ || (calling_ && !calling_->finished))
    throw std::logic_error(std::string(op->checking ? "async_io_state_read_with_checking" : "async_io_state_read_buffer") +
                           ": a read is already active on async_io_state '" + name_ + "'");
  op->timer = coll_->no_timer();
  read_ = std::move(op);
  old_length_ = 0;
  arm_read_timer();
  schedule_drive();
}

void state_impl::start_write(write_op op, std::optional<milliseconds> timeout) {
  check_no_ssl_op("async_io_state_write_buffer");
  if (timeout) write_timeout_ = timeout;
  if (write_ && !queue_output_)
    throw std::logic_error("async_io_state_write_buffer: a write is already active on async_io_state '" + name_ +
                           "' (set queue_output to queue writes)");
  if (write_ && write_->queued_bytes + op.data.size() > max_queued_) {
    // Back-pressure: refuse this write, keep the queued ones.
    auto err = io_error(std::make_error_code(std::errc::no_buffer_space),
                        "write to " + peer_text() + ": " + std::to_string(write_->queued_bytes) +
                            " bytes already queued, limit " + std::to_string(max_queued_),
                        this);
    coll_->defer([s = self(), op = std::move(op), err]() mutable {
      s->write_status_ = io_status::error;
      s->write_error_ = err;
      auto& cb = op.err ? op.err : op.cb;
      if (cb) cb(*s, 0);
    });
    return;
  }
  if (!write_) {
    write_ = take_write_queue();
    write_->timer = coll_->no_timer();
    arm_write_timer();
  }
  write_->queued_bytes += op.data.size();
  write_->ops.push_back(std::move(op));
  write_->ops.back().rebind();  // deque elements stay put from here on
  schedule_drive();
}

namespace {
thread_local std::vector<std::unique_ptr<write_queue>> spare_write_queues;
constexpr std::size_t max_spare_write_queues = 32;
}  // namespace

std::unique_ptr<write_queue> take_write_queue() {
  if (spare_write_queues.empty()) return std::make_unique<write_queue>();
  auto q = std::move(spare_write_queues.back());
  spare_write_queues.pop_back();
  return q;
}

void recycle_write_queue(std::unique_ptr<write_queue> queue) noexcept {
  if (!queue || !queue->ops.empty() || spare_write_queues.size() >= max_spare_write_queues) return;
  queue->queued_bytes = 0;
  queue->deadline = {};
  try {
    spare_write_queues.push_back(std::move(queue));
  } catch (...) {  // no room to keep it: it goes
  }
}

void state_impl::abandon_read(const char* why) noexcept {
  if (!read_ || !read_->abandoned || coll_ == nullptr) return;
  try {
    auto err = io_error(std::make_error_code(std::errc::operation_canceled),
                        "read from " + peer_text() + ": the async_io_state was " + why + " during the read", this);
    coll_->defer([f = std::move(read_->abandoned), err] { f(err); });
  } catch (...) {  // no memory for the error: the awaiter stays suspended, as before
  }
}

void state_impl::abandon_writes(const char* why) noexcept {
  if (!write_ || coll_ == nullptr) return;
  for (auto& op : write_->ops) {
    if (!op.abandoned) continue;
    try {
      auto err = io_error(std::make_error_code(std::errc::operation_canceled),
                          "write to " + peer_text() + ": the async_io_state was " + why + " during the write", this);
      coll_->defer([f = std::move(op.abandoned), err] { f(err); });
    } catch (...) {
    }
  }
}

void state_impl::abort(direction dir) noexcept {
  if (coll_ == nullptr) return;
  if (dir != direction::output) {
    if (read_) coll_->cancel_timer(read_->timer);
    abandon_read("aborted");
    read_.reset();
    if (calling_) {
      coll_->cancel_timer(calling_->timer);
      calling_->finished = true;
    }
  }
  if (dir != direction::input) {
    if (write_) coll_->cancel_timer(write_->timer);
    abandon_writes("aborted");
    write_.reset();
  }
  if (dir == direction::io) {
    if (ssl_) coll_->cancel_timer(ssl_->timer);
    ssl_.reset();
  }
}

// Sends the close_notify before an output shutdown. True once it has left (or cannot be sent:
// the FIN follows anyway), false while the socket has no room for it (an edge retries).
bool state_impl::send_close_notify() noexcept {
  tls_engine* e = tls_ ? tls_->engine.get() : nullptr;
  if (e == nullptr) return true;
  auto& t = tls_->transport;
  for (int i = 0; i < fairness_rounds && !e->close_notify_sent(); ++i) {
    t.blocked = false;
    tls_result r{tls_status::error, 0};
    try {
      r = e->shutdown();
    } catch (...) {
      return true;
    }
    if (r.status == tls_status::want_input || r.status == tls_status::want_output) {
      if (t.blocked) return false;
      continue;
    }
    if (r.status == tls_status::error) return true;
  }
  if (!e->close_notify_sent()) {  // still going (e.g. a byte per short write): after the others
    schedule_drive();
    return false;
  }
  return !t.flush().would_block();  // what is still pending (cork) leaves before the FIN
}

void state_impl::start_shutdown(direction dir, shutdown_callback cb) {
  shutdown_ = std::make_unique<pending_shutdown>();
  shutdown_->dir = dir;
  shutdown_->cb = std::move(cb);
  shutdown_->timer = coll_->no_timer();
}

std::optional<std::error_code> state_impl::shutdown(direction dir, bool abort_ops, shutdown_callback cb) {
  check_no_ssl_op("async_io_state_shutdown");
  bool reading = read_ || (calling_ && !calling_->finished);
  bool pending = (dir != direction::output && reading) || (dir != direction::input && write_);
  if (pending) {
    if (abort_ops)
      abort(dir);
    else {
      start_shutdown(dir, std::move(cb));
      return std::nullopt;
    }
  }
  start_shutdown(dir, std::move(cb));
  return maybe_run_shutdown(true);
}

// Runs a requested shutdown once nothing is pending in its direction: with TLS and output the
// close_notify first (waiting for room in the socket, bounded by the write timeout or 10 s), then
// shutdown(2). `now`: called by shutdown() itself, which returns the result and defers the callback.
std::optional<std::error_code> state_impl::maybe_run_shutdown(bool now) {
  if (!shutdown_ || coll_ == nullptr) return std::nullopt;
  bool reading = read_ || (calling_ && !calling_->finished);
  direction dir = shutdown_->dir;
  if ((dir != direction::output && reading) || (dir != direction::input && write_)) return std::nullopt;
  if (dir != direction::input && !send_close_notify()) {
    if (!shutdown_->notifying) {
      shutdown_->notifying = true;
      shutdown_->timer = coll_->add_timer(loop_clock::now() + output_bound(), [this] { close_notify_timed_out(); });
    }
    return std::nullopt;
  }
  auto op = std::move(shutdown_);
  coll_->cancel_timer(op->timer);
  int how = dir == direction::input ? SHUT_RD : dir == direction::output ? SHUT_WR : SHUT_RDWR;
  std::error_code ec;
  if (::shutdown(sock_.get(), how) != 0) ec = {errno, std::generic_category()};
  if (now && !op->notifying) {
    if (op->cb) coll_->defer([s = self(), cb = std::move(op->cb), ec] { cb(*s, ec); });
    return ec;
  }
  if (op->cb) coll_->guarded([&] { op->cb(*this, ec); });
  return std::nullopt;
}

// The peer took no close_notify within the bound: the FIN goes out without it.
void state_impl::close_notify_timed_out() {
  if (!shutdown_ || coll_ == nullptr) return;
  auto keep = self();
  auto op = std::move(shutdown_);
  int how = op->dir == direction::output ? SHUT_WR : SHUT_RDWR;
  ::shutdown(sock_.get(), how);
  if (op->cb) coll_->guarded([&] { op->cb(*this, std::make_error_code(std::errc::timed_out)); });
}

void state_impl::append_buffered(const std::byte* p, std::size_t n) {
  if (n == 0) return;
  if (buf_end_ + n > buf_cap_) {
    std::size_t used = buffered();
    std::size_t cap = std::max<std::size_t>({used + n, buf_cap_ * 2, 4096});
    if (used + n <= buf_cap_) {  // room once compacted
      std::memmove(buf_.get(), buf_.get() + buf_begin_, used);
    } else {
      auto nb = std::make_unique_for_overwrite<std::byte[]>(cap);
      if (used) std::memcpy(nb.get(), buf_.get() + buf_begin_, used);
      buf_ = std::move(nb);
      buf_cap_ = cap;
    }
    buf_begin_ = 0;
    buf_end_ = used;
  }
  std::memcpy(buf_.get() + buf_end_, p, n);
  buf_end_ += n;
}

void state_impl::release_buffer_if_empty() noexcept {
  if (buf_begin_ == buf_end_) {
    buf_.reset();
    buf_cap_ = buf_begin_ = buf_end_ = 0;
  }
}

}  // namespace detail

using detail::impl_of;

// ---- accessors
wait_state_collection* async_io_state::collection() const noexcept { return impl_of(*this).coll_; }
bool async_io_state::is_open() const noexcept { return impl_of(*this).open(); }
int async_io_state::native_handle() const noexcept { return impl_of(*this).sock_.get(); }
const std::string& async_io_state::name() const noexcept { return impl_of(*this).name_; }
void async_io_state::set_name(std::string name) { impl_of(*this).name_ = std::move(name); }
std::any& async_io_state::user_info() noexcept { return impl_of(*this).user_info_; }
std::optional<milliseconds> async_io_state::read_timeout() const noexcept { return impl_of(*this).read_timeout_; }
std::optional<milliseconds> async_io_state::write_timeout() const noexcept { return impl_of(*this).write_timeout_; }
void async_io_state::set_read_timeout(std::optional<milliseconds> t) noexcept { impl_of(*this).read_timeout_ = t; }
void async_io_state::set_write_timeout(std::optional<milliseconds> t) noexcept { impl_of(*this).write_timeout_ = t; }
std::size_t async_io_state::max_read() const noexcept { return impl_of(*this).max_read_; }
void async_io_state::set_max_read(std::size_t n) noexcept { impl_of(*this).max_read_ = n == 0 ? 1 : n; }
io_status async_io_state::read_status() const noexcept { return impl_of(*this).read_status_; }
io_status async_io_state::write_status() const noexcept { return impl_of(*this).write_status_; }
std::exception_ptr async_io_state::read_error() const noexcept { return impl_of(*this).read_error_; }
std::exception_ptr async_io_state::write_error() const noexcept { return impl_of(*this).write_error_; }
std::size_t async_io_state::old_length() const noexcept { return impl_of(*this).old_length_; }
std::size_t async_io_state::buffered_data_length() const noexcept { return impl_of(*this).buffered(); }
std::size_t async_io_state::queued_output() const noexcept {
  auto& s = impl_of(*this);
  if (!s.write_) return 0;
  std::size_t n = s.write_->queued_bytes;
  return n;
}
std::optional<endpoint> async_io_state::address() const { return get_socket_address(native_handle()); }
std::optional<endpoint> async_io_state::peer_address() const { return impl_of(*this).peer_; }

std::string_view to_string(io_status s) noexcept {
  switch (s) {
    case io_status::ok: return "ok";
    case io_status::eof: return "eof";
    case io_status::timeout: return "timeout";
    case io_status::error: return "error";
  }
  return "?";
}

// ---- creation
std::shared_ptr<async_io_state> create_async_io_state(wait_state_collection& collection, socket_handle socket,
                                                      async_io_state_options options) {
  auto& c = detail::impl_of(collection);
  c.check_thread("create_async_io_state");
  return detail::state_impl::create(c, std::move(socket), std::move(options));
}

std::shared_ptr<async_io_state> create_async_io_state(wait_state_collection& collection, socket_stream&& stream,
                                                      async_io_state_options options) {
  auto& c = detail::impl_of(collection);
  c.check_thread("create_async_io_state");
  if (stream.is_ssl())
    throw std::invalid_argument("create_async_io_state: the socket_stream has TLS attached; detach it first");
  stream.flush();
  std::vector<std::byte> pending(stream.buffered_input());
  if (!pending.empty()) pending.resize(stream.read_some(pending));  // buffered: does not block
  socket_handle socket = replace_socket_stream_socket(stream, socket_handle{});
  stream.close();
  auto state = detail::state_impl::create(c, std::move(socket), std::move(options));
  state->append_buffered(pending.data(), pending.size());
  return state;
}

// ---- operations
void async_io_state_read_buffer(async_io_state& state, std::span<std::byte> buffer, read_buffer_callback callback,
                                read_buffer_options options) {
  auto& s = impl_of(state);
  s.coll("async_io_state_read_buffer");
  if (options.timeout) s.read_timeout_ = options.timeout;
  auto op = std::make_unique<detail::read_op>();
  op->target = buffer;
  op->buffer_cb = std::move(callback);
  op->buffer_err = std::move(options.error_callback);
  s.start_read(std::move(op));
}

void async_io_state_read_with_checking(async_io_state& state, read_checking_callback callback,
                                       read_with_checking_options options) {
  auto& s = impl_of(state);
  s.coll("async_io_state_read_with_checking");
  if (options.timeout) s.read_timeout_ = options.timeout;
  if (options.max_read) s.max_read_ = *options.max_read == 0 ? 1 : *options.max_read;
  auto op = std::make_unique<detail::read_op>();
  op->checking = true;
  op->checking_cb = std::move(callback);
  op->checking_err = std::move(options.error_callback);
  s.start_read(std::move(op));
}

namespace {
detail::read_op& checking_op(async_io_state& state, const char* operation) {
  auto& s = impl_of(state);
  if (s.calling_ == nullptr || s.calling_->finished)
    throw std::logic_error(std::string(operation) +
                           ": only inside a running read_with_checking callback (async_io_state '" + s.name_ + "')");
  return *s.calling_;
}
}  // namespace

std::size_t async_io_state_discard(async_io_state& state, std::size_t n) {
  auto& op = checking_op(state, "async_io_state_discard");
  op.discarded = std::min(op.shown, op.discarded + n);
  return op.shown - op.discarded;
}

std::size_t async_io_state_finish(async_io_state& state, std::size_t discard) {
  auto& op = checking_op(state, "async_io_state_finish");
  op.discarded = std::min(op.shown, op.discarded + discard);
  op.finished = true;
  return op.shown - op.discarded;
}

void async_io_state_write_buffer(async_io_state& state, std::span<const std::byte> data, write_callback callback,
                                 write_buffer_options options) {
  auto& s = impl_of(state);
  s.coll("async_io_state_write_buffer");
  detail::write_op op;
  op.data = data;
  op.cb = std::move(callback);
  op.err = std::move(options.error_callback);
  s.start_write(std::move(op), options.timeout);
}

void async_io_state_write_buffer(async_io_state& state, std::string data, write_callback callback,
                                 write_buffer_options options) {
  auto& s = impl_of(state);
  s.coll("async_io_state_write_buffer");
  detail::write_op op;
  op.owned = std::move(data);
  auto& str = std::get<std::string>(op.owned);
  op.data = std::as_bytes(std::span<const char>(str.data(), str.size()));
  op.cb = std::move(callback);
  op.err = std::move(options.error_callback);
  s.start_write(std::move(op), options.timeout);
}

void async_io_state_write_buffer(async_io_state& state, std::vector<std::byte> data, write_callback callback,
                                 write_buffer_options options) {
  auto& s = impl_of(state);
  s.coll("async_io_state_write_buffer");
  detail::write_op op;
  op.owned = std::move(data);
  auto& v = std::get<std::vector<std::byte>>(op.owned);
  op.data = std::span<const std::byte>(v.data(), v.size());
  op.cb = std::move(callback);
  op.err = std::move(options.error_callback);
  s.start_write(std::move(op), options.timeout);
}

void async_io_state_abort(async_io_state& state, std::function<void(async_io_state&)> abort_callback, direction dir) {
  auto& s = impl_of(state);
  auto& c = s.coll("async_io_state_abort");
  s.abort(dir);
  if (abort_callback) c.defer([st = s.self(), cb = std::move(abort_callback)] { cb(*st); });
}

void async_io_state_abort_and_close(async_io_state& state, std::function<void(async_io_state&)> close_callback,
                                    bool keep_alive) {
  auto& s = impl_of(state);
  auto& c = s.coll("async_io_state_abort_and_close");
  s.abort(direction::io);
  s.close(keep_alive);
  if (close_callback) c.defer([st = s.self(), cb = std::move(close_callback)] { cb(*st); });
}

std::size_t close_async_io_state(async_io_state& state, bool keep_alive) {
  auto& s = impl_of(state);
  if (s.coll_) s.coll_->check_thread("close_async_io_state");
  return s.close(keep_alive);
}

std::vector<std::byte> async_io_state_get_buffered_data(async_io_state& state) {
  auto& s = impl_of(state);
  if (s.calling_)
    throw std::logic_error("async_io_state_get_buffered_data: not inside a read_with_checking callback");
  std::vector<std::byte> out(s.buf_.get() + s.buf_begin_, s.buf_.get() + s.buf_end_);
  s.buf_begin_ = s.buf_end_;
  s.release_buffer_if_empty();
  return out;
}

socket_handle async_io_state_release_socket(async_io_state& state) {
  auto& s = impl_of(state);
  if (s.coll_) throw std::logic_error("async_io_state_release_socket: async_io_state '" + s.name_ + "' is still open");
  int fd = s.sock_.get();
  if (fd >= 0) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  }
  return std::move(s.sock_);
}

std::optional<std::error_code> async_io_state_shutdown(async_io_state& state, direction dir, bool abort,
                                                       shutdown_callback callback) {
  auto& s = impl_of(state);
  s.coll("async_io_state_shutdown");
  return s.shutdown(dir, abort, std::move(callback));
}

}  // namespace comm
