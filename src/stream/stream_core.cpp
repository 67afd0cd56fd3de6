// stream_core: buffered, timed I/O over a non-blocking socket or a TLS engine.
#include "stream/stream_core.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace comm::detail {

// ---------------------------------------------------------------------------------------------
io_result stream_transport::read(void* data, std::size_t size) {
  if (prefix_left() == 0 && size < ahead_size) {
    // Read ahead: one recv for this small read and whatever follows it on the socket. A recv
    // that fills the buffer means more is waiting: later ones take up to four full records,
    // until a recv of less than one record's worth ends the burst.
    clear_prefix();
    if (prefix.size() < ahead_size) prefix.resize(ahead_size);
    io_result r = recv_some(prefix.data(), ahead_size);
    if (r.error != 0 || r.bytes == 0) return r;
    prefix_end = r.bytes;
    if (r.bytes == ahead_size) ahead_size = max_read_ahead_size;
    else if (r.bytes < read_ahead_size) ahead_size = read_ahead_size;
  }
  if (prefix_left() > 0) {
    std::size_t n = std::min(size, prefix_left());
    std::memcpy(data, prefix.data() + prefix_pos, n);
    prefix_pos += n;
    served += n;
    if (prefix_left() == 0) {
      clear_prefix();
      if (ahead_size == read_ahead_size && prefix.size() > read_ahead_size) std::vector<char>().swap(prefix);  // burst over
    }
    return {n, 0};
  }
  return recv_some(data, size);
}

io_result stream_transport::recv_some(void* data, std::size_t size) {
  // A handshake step's flight still in the cork cannot have been answered yet: EAGAIN without a
  // recv. The handshake loop sends the flight, then polls and reads what has come by then.
  if (cork.corked() && cork.pending() > 0) return {0, EAGAIN};
  for (;;) {
    // Never block while the cork holds records: the bytes awaited may answer them.
    ssize_t n = ::recv(core_.fd(), data, size, blocking && cork.pending() == 0 ? 0 : MSG_DONTWAIT);
    if (n >= 0) return {static_cast<std::size_t>(n), 0};
    if (errno != EINTR) return {0, errno};
  }
}

io_result stream_transport::write(const void* data, std::size_t size) {
  return cork.write(data, size, [this](const void* d, std::size_t n) { return send_some(d, n); });
}

io_result stream_transport::flush() {
  return cork.flush([this](const void* d, std::size_t n) { return send_some(d, n); });
}

io_result stream_transport::send_some(const void* data, std::size_t size) {
  for (;;) {
    ssize_t n = ::send(core_.fd(), data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return {static_cast<std::size_t>(n), 0};
    if (errno != EINTR) return {0, errno};
  }
}

// ---------------------------------------------------------------------------------------------
stream_core::stream_core(socket_handle socket, const stream_options& opts, socket_stream* owner)
    : options(opts), socket_(std::move(socket)), owner_(owner) {
  if (options.buffer_size == 0) options.buffer_size = 1;
  in_.resize(options.buffer_size);
  out_.resize(options.buffer_size);
  setg(in_.data(), in_.data(), in_.data());
  setp(out_.data(), out_.data() + out_.size());
  reset_peer_text();
}

stream_core::~stream_core() {
  try {
    close();
  } catch (...) {
    // Destruction cannot report a failed flush; close() was the place to see it.
  }
}

void stream_core::set_owner(socket_stream* owner) noexcept {
  owner_ = owner;
  if (engine) {
    engine->owner = owner;
    register_connection(engine->native(), owner);
  }
}

void stream_core::reset_peer_text() {
  if (auto ep = get_socket_peer_address(socket_.get()))
    peer_text_ = ep->to_string();
  else if (socket_)
    peer_text_ = "socket " + std::to_string(socket_.get());
  else
    peer_text_ = "closed socket";
}

void stream_core::throw_io(int e, const std::string& operation) const {
  throw socket_io_error(errno_code(e), describe_operation(operation, peer_text_), owner_);
}

void stream_core::throw_timeout(const char* operation, std::optional<milliseconds> timeout) const {
  throw socket_timeout_error(std::make_error_code(std::errc::timed_out),
                             describe_operation(operation, peer_text_) + ": timed out after " +
                                 std::to_string(timeout ? timeout->count() : 0) + " ms",
                             owner_);
}

void stream_core::wait(short events, const std::optional<clock::time_point>& deadline,
                       std::optional<milliseconds> timeout, const char* operation) {
  int ev = poll_one(socket_.get(), events, deadline);
  if (ev == 0) throw_timeout(operation, timeout);
  if (ev < 0) throw_io(errno, operation);
  // POLLERR / POLLHUP: the next recv/send reports the cause.
}

namespace {
std::uintptr_t this_thread_tag() noexcept {
  static thread_local char tag;
  return reinterpret_cast<std::uintptr_t>(&tag);
}
}  // namespace

stream_core::tls_user_scope::tls_user_scope(stream_core& core, const char* operation) : core_(core) {
  const std::uintptr_t me = this_thread_tag();
  // Only this thread ever stores its own tag, so reading it back means it holds the scope already.
  if (core_.tls_user_.load(std::memory_order_relaxed) != me) {
    std::uintptr_t none = 0;
    if (!core_.tls_user_.compare_exchange_strong(none, me, std::memory_order_acquire, std::memory_order_relaxed))
      throw socket_io_error(std::make_error_code(std::errc::device_or_resource_busy),
                            describe_operation(operation, core_.peer_text_) +
                                ": another thread is using this TLS stream (under TLS one thread at a time; "
                                "for full-duplex TLS use an async_io_state)",
                            core_.owner_);
  }
  ++core_.tls_depth_;
}

stream_core::tls_user_scope::~tls_user_scope() {
  if (--core_.tls_depth_ == 0) core_.tls_user_.store(0, std::memory_order_release);
}

tls_result stream_core::drive_tls(const std::function<tls_result()>& op, const std::optional<milliseconds>& timeout,
                                  const char* operation, bool throw_on_timeout) {
  tls_user_scope use(*this, operation);
  // Without a timeout this loop waits for the socket without bound on want_input anyway, so the
  // transport may as well block in recv: the engine then never sees EAGAIN on a read.
  struct blocking_scope {
    stream_transport& t;
    explicit blocking_scope(stream_transport& tr, bool on) : t(tr) { t.blocking = on; }
    ~blocking_scope() { t.blocking = false; }
  } scope(transport, !timeout);
  std::uint64_t mark = ~std::uint64_t{0};
  for (;;) {
    tls_result r = op();
    switch (r.status) {
      case tls_status::done:
      case tls_status::closed:
        return r;
      case tls_status::error:
        std::rethrow_exception(engine->error(operation, peer_text_));
      case tls_status::want_input:
      case tls_status::want_output: {
        if (r.status == tls_status::want_input && retry_from_read_ahead(mark)) break;
        if (r.status == tls_status::want_input && holding()) {
          // What the engine waits for may answer what the cork holds (a renegotiation's hello,
          // the request itself): it leaves first.
          if (flush_transport(deadline_after(timeout), operation)) continue;
          if (!throw_on_timeout) return {tls_status::want_input, 0};
          throw_timeout(operation, timeout);
        }
        short events = r.status == tls_status::want_input ? POLLIN : POLLOUT;
        if (!throw_on_timeout) {
          int ev = poll_one(socket_.get(), events, deadline_after(timeout));
          if (ev == 0) return {tls_status::want_input, 0};
          if (ev < 0) throw_io(errno, operation);
        } else {
          wait(events, deadline_after(timeout), timeout, operation);
        }
        break;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
std::size_t stream_core::read_raw(char* data, std::size_t size) {
  if (!socket_) throw_io(EBADF, "read from");
  if (input_shut) throw socket_io_error(std::make_error_code(std::errc::not_connected),
                                        "read from " + peer_text_ + ": input was shut down", owner_);
  if (size == 0) return 0;
  if (engine) {
    tls_user_scope use(*this, "TLS read from");
    send_held();  // the reply awaited may depend on them
    tls_result r = drive_tls([&] { return engine->read(data, size); }, options.read_timeout, "TLS read");
    return r.status == tls_status::closed ? 0 : r.bytes;
  }
  for (;;) {
    // Without a timeout a plain blocking recv is one system call; with one, poll bounds the wait.
    ssize_t n = ::recv(socket_.get(), data, size, options.read_timeout ? MSG_DONTWAIT : 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) throw_io(e, "read from");
    wait(POLLIN, deadline_after(options.read_timeout), options.read_timeout, "read from");
  }
}

std::size_t stream_core::write_raw(const char* data, std::size_t size) {
  if (!socket_) throw_io(EBADF, "write to");
  if (output_shut) throw socket_io_error(std::make_error_code(std::errc::broken_pipe),
                                         "write to " + peer_text_ + ": output was shut down", owner_);
  if (engine) {
    tls_result r = drive_tls([&] { return engine->write(data, size); }, options.write_timeout, "TLS write");
    if (r.status == tls_status::closed)
      throw ssl_closed(ssl_errc::closed, "TLS write to " + peer_text_ + ": the peer closed the connection",
                       {ssl_code_kind::closed, 0}, owner_);
    return r.bytes;
  }
  for (;;) {
    ssize_t n = ::send(socket_.get(), data, size, (options.write_timeout ? MSG_DONTWAIT : 0) | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) throw_io(e, "write to");
    wait(POLLOUT, deadline_after(options.write_timeout), options.write_timeout, "write to");
  }
}

void stream_core::write_all_raw(const char* data, std::size_t size) {
  while (size > 0) {
    std::size_t n = write_raw(data, size);
    data += n;
    size -= n;
  }
}

bool stream_core::flush_transport(const std::optional<clock::time_point>& deadline, const char* operation) {
  tls_user_scope use(*this, operation);
  for (;;) {
    io_result r = transport.flush();
    if (r.error == 0) return true;
    if (!r.would_block()) std::rethrow_exception(transport_failure(r.error, describe_operation(operation, peer_text_), owner_));
    int ev = poll_one(socket_.get(), POLLOUT, deadline);
    if (ev < 0) throw_io(errno, operation);
    if (ev == 0) return false;
  }
}

// ---------------------------------------------------------------------------------------------
std::size_t stream_core::buffered_input() const noexcept {
  // Read-ahead ciphertext counts too: the socket no longer reports it as readable, so a wait for
  // input must not block on it (at worst it holds only part of a record and a read then waits).
  return buffered() + (engine ? engine->pending() + transport.prefix_left() : 0);
}

std::size_t stream_core::read_some(char* data, std::size_t size) {
  if (size == 0) return 0;
  if (buffered() > 0) {
    std::size_t n = std::min(size, buffered());
    std::memcpy(data, gptr(), n);
    gbump(static_cast<int>(n));
    return n;
  }
  // Large reads go straight into the caller's buffer: no second copy.
  if (size >= in_.size()) return read_raw(data, size);
  if (traits_type::eq_int_type(underflow(), traits_type::eof())) return 0;
  std::size_t n = std::min(size, buffered());
  std::memcpy(data, gptr(), n);
  gbump(static_cast<int>(n));
  return n;
}

void stream_core::unread(const char* data, std::size_t size) {
  if (size == 0) return;
  std::vector<char> merged;
  merged.reserve(size + buffered());
  merged.insert(merged.end(), data, data + size);
  merged.insert(merged.end(), gptr(), egptr());
  if (merged.size() > in_.size()) in_.resize(merged.size());
  std::memcpy(in_.data(), merged.data(), merged.size());
  setg(in_.data(), in_.data(), in_.data() + merged.size());
}

std::optional<std::string> stream_core::read_line() {
  std::string line;
  const std::size_t max = options.max_line_length;
  auto too_long = [&] {
    return socket_io_error(std::make_error_code(std::errc::message_size),
                           "read_line from " + peer_text_ + ": line longer than " + std::to_string(max) + " bytes",
                           owner_);
  };
  try {
    for (;;) {
      if (buffered() == 0 && traits_type::eq_int_type(underflow(), traits_type::eof())) {
        if (line.empty()) return std::nullopt;
        // A final line without newline is returned as is, but never past the bound: the byte of
        // room kept below for a CR is only for a CR that a newline may still follow.
        if (line.size() > max) throw too_long();
        return line;
      }
      const char* begin = gptr();
      const char* nl = static_cast<const char*>(std::memchr(begin, '\n', buffered()));
      std::size_t take = nl ? static_cast<std::size_t>(nl - begin) : buffered();
      line.append(begin, take);
      gbump(static_cast<int>(take + (nl ? 1 : 0)));
      if (nl && !line.empty() && line.back() == '\r') line.pop_back();
      // Bounded: at most max + one CR + one buffer's worth is ever held. Before the newline is
      // seen, one byte over max is allowed only when it is a CR (its newline may be in the next
      // read); any other byte over max already makes the line too long.
      const bool pending_cr = !nl && !line.empty() && line.back() == '\r';
      if (line.size() > max + (pending_cr ? 1 : 0)) throw too_long();
      if (nl) return line;
    }
  } catch (const socket_timeout_error&) {
    unread(line.data(), line.size());  // nothing lost: the next read sees the partial line again
    throw;
  }
}

void stream_core::write(const char* data, std::size_t size) {
  if (output_shut) throw socket_io_error(std::make_error_code(std::errc::broken_pipe),
                                         "write to " + peer_text_ + ": output was shut down", owner_);
  if (size == 0) return;  // data may be null
  std::size_t room = static_cast<std::size_t>(epptr() - pptr());
  // A write that will seal takes the engine before it takes any byte: refused, it took none.
  std::optional<tls_user_scope> use;
  if (engine && size >= room) use.emplace(*this, "TLS write to");
  if (size >= out_.size()) {
    // Large writes bypass the buffer once it is emptied: no copy.
    if (engine) {
      seal_output();
      std::size_t done = 0;
      seal(data, size, done);
    } else {
      flush_output();
      write_all_raw(data, size);
    }
    return;
  }
  if (size <= room) {
    std::memcpy(pptr(), data, size);
    pbump(static_cast<int>(size));
    if (size == room) engine ? seal_output() : flush_output();
    return;
  }
  std::memcpy(pptr(), data, room);
  pbump(static_cast<int>(room));
  engine ? seal_output() : flush_output();
  std::memcpy(pptr(), data + room, size - room);
  pbump(static_cast<int>(size - room));
}

void stream_core::seal(const char* data, std::size_t size, std::size_t& done) {
  // Corked, the transport takes the records; 64 KiB of them leave together. Uncorked at the end,
  // the rest stays held.
  tls_user_scope use(*this, "TLS write to");
  corked_scope corked(*this);
  while (done < size) {
    done += write_raw(data + done, size - done);
    if (transport.cork.full()) send_held();
  }
}

void stream_core::seal_output() {
  std::size_t len = static_cast<std::size_t>(pptr() - pbase());
  std::size_t done = 0;
  try {
    if (len > 0) seal(pbase(), len, done);
  } catch (...) {
    std::memmove(out_.data(), out_.data() + done, len - done);  // keep what was not sealed
    setp(out_.data(), out_.data() + out_.size());
    pbump(static_cast<int>(len - done));
    throw;
  }
  setp(out_.data(), out_.data() + out_.size());
}

void stream_core::send_held() {
  if (!holding() || !socket_) return;
  if (!flush_transport(deadline_after(options.write_timeout), "TLS write to"))
    throw_timeout("TLS write to", options.write_timeout);
}

void stream_core::flush_output() {
  std::optional<tls_user_scope> use;
  if (engine) use.emplace(*this, "TLS write to");
  if (engine && holding()) {  // after the held records, through the cork
    seal_output();
    send_held();
    return;
  }
  // Nothing held (the usual flush of a request or a reply): straight to the socket, no copy.
  std::size_t len = static_cast<std::size_t>(pptr() - pbase());
  std::size_t done = 0;
  auto compact = [&] {
    std::memmove(out_.data(), out_.data() + done, len - done);
    setp(out_.data(), out_.data() + out_.size());
    pbump(static_cast<int>(len - done));
  };
  try {
    while (done < len) done += write_raw(pbase() + done, len - done);
  } catch (...) {
    compact();  // keep what was not sent, so a retry after a timeout sends it
    throw;
  }
  compact();
}

void stream_core::discard_buffers() noexcept {
  transport.cork.discard();
  setg(in_.data(), in_.data(), in_.data());
  setp(out_.data(), out_.data() + out_.size());
}

// ---------------------------------------------------------------------------------------------
stream_core::int_type stream_core::underflow() {
  if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
  if (in_.size() > options.buffer_size && options.buffer_size > 0) in_.resize(options.buffer_size);
  std::size_t n = read_raw(in_.data(), in_.size());
  setg(in_.data(), in_.data(), in_.data() + n);
  if (n == 0) return traits_type::eof();
  return traits_type::to_int_type(*gptr());
}

stream_core::int_type stream_core::overflow(int_type c) {
  flush_output();
  if (!traits_type::eq_int_type(c, traits_type::eof())) {
    *pptr() = traits_type::to_char_type(c);
    pbump(1);
  }
  return traits_type::not_eof(c);
}

int stream_core::sync() {
  flush_output();
  return 0;
}

std::streamsize stream_core::xsgetn(char_type* s, std::streamsize n) {
  std::streamsize got = 0;
  while (got < n) {
    std::size_t r = read_some(s + got, static_cast<std::size_t>(n - got));
    if (r == 0) break;
    got += static_cast<std::streamsize>(r);
  }
  return got;
}

std::streamsize stream_core::xsputn(const char_type* s, std::streamsize n) {
  write(s, static_cast<std::size_t>(n));
  return n;
}

std::streamsize stream_core::showmanyc() {
  std::size_t n = buffered_input();
  return n > 0 ? static_cast<std::streamsize>(n) : 0;
}

// ---------------------------------------------------------------------------------------------
void stream_core::shutdown(direction dir, bool abort) {
  if (!socket_) throw_io(EBADF, "shutdown on");
  std::optional<tls_user_scope> use;
  if (engine) use.emplace(*this, "shutdown on");
  if (abort) {
    discard_buffers();
  } else if (dir != direction::input && !output_shut) {
    flush_output();
    if (engine && !engine->close_notify_sent())
      drive_tls([&] { return engine->shutdown(); }, options.write_timeout, "TLS close_notify");
  }
  int how = dir == direction::input ? SHUT_RD : dir == direction::output ? SHUT_WR : SHUT_RDWR;
  if (::shutdown(socket_.get(), how) != 0 && errno != ENOTCONN) throw_io(errno, "shutdown on");
  if (dir != direction::output) input_shut = true;
  if (dir != direction::input) output_shut = true;
}

void stream_core::close() {
  if (!socket_) return;
  std::optional<tls_user_scope> use;
  if (engine) use.emplace(*this, "close of");
  std::exception_ptr flush_error;
  if (!output_shut && (pptr() > pbase() || holding())) {
    try {
      flush_output();
    } catch (...) {
      flush_error = std::current_exception();
    }
  }
  bool tickets_pending = false;
  if (engine) {
    // One close_notify, without waiting for the peer's (the model's retry-count nil).
    if (!output_shut && !flush_error && !engine->close_notify_sent()) {
      try {
        (void)engine->shutdown();
      } catch (...) {
      }
    }
    tickets_pending = !output_shut && !flush_error && tickets_may_come(*engine);
    drop_engine();
  }
  // What arrived unread goes first, TLS or plain: Linux answers close() over unread data with a
  // reset, which throws away what the send buffer still holds. More may still come while bytes
  // are unsent, and meeting a closed socket it would draw that reset: a TLS 1.3 server's session
  // tickets (if what arrived unread was not them), or more from a peer that has sent what the user
  // did not read. Then the socket stays open, dropping what comes, until the bytes have left.
  const dropped_input unread = discard_unread_input(socket_.get(), close_drain_limit);
  const bool more_may_come = tickets_pending ? unread.bytes == 0 : unread.bytes > 0;
  if (!flush_error && !unread.ended && more_may_come)
    wait_until_sent(socket_.get(), clock::now() + options.write_timeout.value_or(std::chrono::seconds(10)));
  discard_buffers();
  socket_.reset();
  peer_text_ = "closed socket";
  if (flush_error) std::rethrow_exception(flush_error);
}

socket_handle stream_core::replace_socket(socket_handle s) {
  socket_handle old = std::move(socket_);
  socket_ = std::move(s);
  input_shut = output_shut = false;
  reset_peer_text();
  return old;
}

// ---------------------------------------------------------------------------------------------
// The transport's unread bytes go back to the plain stream, after what is already buffered: after
// a failed attach they are the plain bytes from before it (the buffer is empty then), after a
// detach they are plain data that followed the peer's close_notify, which comes after any
// decrypted data still buffered.
void stream_core::restore_prefix() noexcept {
  if (transport.prefix_left() > 0) {
    try {
      std::size_t have = buffered();
      std::size_t add = transport.prefix_left();
      if (have + add > in_.size() || static_cast<std::size_t>(gptr() - in_.data()) + have + add > in_.size()) {
        std::vector<char> merged;
        merged.reserve(have + add);
        merged.insert(merged.end(), gptr(), egptr());
        if (merged.size() + add > in_.size()) in_.resize(merged.size() + add);
        std::memcpy(in_.data(), merged.data(), merged.size());
        setg(in_.data(), in_.data(), in_.data() + merged.size());
      }
      std::memcpy(egptr(), transport.prefix.data() + transport.prefix_pos, add);
      setg(eback(), gptr(), egptr() + add);
    } catch (...) {
    }
  }
  transport.clear_prefix();
  std::vector<char>().swap(transport.prefix);
}

void stream_core::move_input_to_prefix() {
  transport.prefix.assign(gptr(), egptr());
  transport.prefix_pos = 0;
  transport.prefix_end = transport.prefix.size();
  setg(in_.data(), in_.data(), in_.data());
}

std::unique_ptr<tls_engine> stream_core::take_engine() noexcept { return std::move(engine); }

void stream_core::drop_engine() noexcept {
  transport.cork.discard();  // records of this session that could not leave
  if (engine) {
    unregister_connection(engine->native());
    engine.reset();
  }
  restore_prefix();
}

stream_core& core_of(const socket_stream& s, const char* operation) {
  stream_core* c = s.core_();
  if (c == nullptr || !c->is_open())
    throw socket_io_error(std::make_error_code(std::errc::bad_file_descriptor),
                          std::string(operation) + ": the stream is not open", &s);
  return *c;
}

}  // namespace comm::detail
