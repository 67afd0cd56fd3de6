// TLS on an async_io_state: the engine of tls/engine.hpp driven from epoll readiness. The engine
// reports want_input / want_output; the state is registered edge-triggered for both, and every
// edge retries the TLS operation (see state.hpp).
#include <stdexcept>

#include "async/state.hpp"

namespace comm {
namespace detail {

void state_impl::attach_engine(std::unique_ptr<tls_engine> engine) {
  engine->owner = this;
  tls_->engine = std::move(engine);
  register_connection(tls_->engine->native(), this);
  tls_->registered = true;
}

// Bytes already read from the socket when TLS is attached (a STARTTLS peer that sent its
// ClientHello right after the command) are the start of the TLS stream: the engine reads them
// first. Called at attach and, for an attach inside a read_with_checking callback, once the
// callback has returned and the bytes it left are buffered.
void state_impl::hand_buffered_to_tls() {
  if (!tls_ || buffered() == 0) return;
  tls_->transport.put_back(buf_.get() + buf_begin_, buffered());
  buf_begin_ = buf_end_;
  release_buffer_if_empty();
}

void state_impl::drop_tls() noexcept {
  if (!tls_) return;
  if (tls_->registered && tls_->engine) unregister_connection(tls_->engine->native());
  tls_.reset();
}

void state_impl::start_ssl(ssl_op_kind kind, ssl_callback cb, std::optional<milliseconds> timeout) {
  ssl_ = std::make_unique<ssl_op>();
  ssl_->kind = kind;
  ssl_->cb = std::move(cb);
  ssl_->timeout = timeout;
  ssl_->timer = coll_->no_timer();
  if (timeout) ssl_->timer = coll_->add_timer(loop_clock::now() + *timeout, [this] { ssl_timed_out(); });
  schedule_drive();
}

void state_impl::finish_ssl(std::exception_ptr error) {
  auto op = std::move(ssl_);
  coll_->cancel_timer(op->timer);
  if (op->kind == ssl_op_kind::detach && !error && tls_) {
    // What followed the peer's close_notify is plain data: it goes after what was read before.
    auto rest = tls_->transport.unread();
    append_buffered(rest.data(), rest.size());
    tls_->transport.clear_unread();
  }
  if (op->kind == ssl_op_kind::detach || error) drop_tls();
  if (error && read_status_ == io_status::ok) {
    read_status_ = io_status::error;
  }
  if (error) read_error_ = error;
  if (op->cb) coll_->guarded([&] { op->cb(*this, error); });
}

void state_impl::ssl_timed_out() {
  if (!ssl_ || coll_ == nullptr) return;
  auto keep = self();
  ssl_->timer = coll_->no_timer();
  auto ms = ssl_->timeout ? ssl_->timeout->count() : 0;
  read_status_ = io_status::timeout;
  if (ssl_->kind == ssl_op_kind::handshake) {
    finish_ssl(std::make_exception_ptr(ssl_handshake_timeout(
        ssl_errc::handshake_timeout,
        "TLS handshake with " + peer_text() + ": timed out after " + std::to_string(ms) + " ms",
        ssl_code{ssl_code_kind::handshake_timeout, 0}, this)));
  } else {
    finish_ssl(io_error(std::make_error_code(std::errc::timed_out),
                        "TLS detach from " + peer_text() + ": no close_notify from the peer within " +
                            std::to_string(ms) + " ms",
                        this));
  }
}

bool state_impl::step_ssl() {
  tls_engine* e = tls_ ? tls_->engine.get() : nullptr;
  if (e == nullptr) {
    finish_ssl(nullptr);
    return true;
  }
  if (ssl_->kind == ssl_op_kind::handshake) {
    // Corked: what one call makes leaves in one send. The flight that ends the handshake (a
    // client's Finished, a server's session tickets) stays in the cork: what the callback writes
    // at once joins it, one send and one segment for both, so the peer wakes once for them. If
    // the callback writes nothing, it leaves before the loop waits again (drive), like the
    // records of a done write: owed, a failed send fails the next write, close() lingers for it.
    auto& t = tls_->transport;
    t.blocked = false;
    t.cork();
    auto r = e->handshake();
    io_result sent{};
    if (r.status == tls_status::done)
      t.hold();
    else
      sent = t.uncork();
    // A failed or closed handshake reports the engine's outcome (its alert went out best
    // effort), not the transport's.
    const bool going = r.status == tls_status::done || r.status == tls_status::want_input ||
                       r.status == tls_status::want_output;
    if (sent.error != 0 && !sent.would_block() && going) {
      finish_ssl(transport_failure(sent.error, describe_operation("TLS handshake", peer_text()), this));
      return true;
    }
    switch (r.status) {
      case tls_status::done:
        finish_ssl(nullptr);
        return true;
      case tls_status::want_input:
      case tls_status::want_output:
        // Not blocked on the socket: go round again (drive() repeats on progress).
        return !tls_->transport.blocked;
      case tls_status::closed:
        read_status_ = io_status::eof;
        finish_ssl(std::make_exception_ptr(ssl_closed(ssl_errc::closed,
                                                      "TLS handshake with " + peer_text() +
                                                          ": the peer closed the connection",
                                                      ssl_code{ssl_code_kind::closed, 0}, this)));
        return true;
      case tls_status::error: finish_ssl(e->error("TLS handshake", peer_text())); return true;
    }
    return false;
  }
  // Detach: send close_notify, then read until the peer's arrives. Application data that comes
  // before it is kept as buffered data.
  bool progress = false;
  if (!ssl_->shutdown_sent) {
    tls_->transport.blocked = false;
    auto r = e->shutdown();
    switch (r.status) {
      case tls_status::done:
      case tls_status::closed: ssl_->shutdown_sent = true; progress = true; break;
      case tls_status::want_input:
      case tls_status::want_output: return !tls_->transport.blocked;
      case tls_status::error: finish_ssl(e->error("TLS detach", peer_text())); return true;
    }
  }
  while (!e->close_notify_received()) {
    auto& s = coll_->scratch();
    tls_->transport.blocked = false;
    auto r = e->read(s.data(), s.size());
    switch (r.status) {
      case tls_status::done:
        append_buffered(s.data(), r.bytes);
        progress = true;
        continue;
      case tls_status::want_input:
      case tls_status::want_output: return progress || !tls_->transport.blocked;
      case tls_status::closed: break;
      case tls_status::error: finish_ssl(e->error("TLS detach", peer_text())); return true;
    }
    break;
  }
  finish_ssl(nullptr);
  return true;
}

std::string sni_for(const std::string& name) {
  if (name.empty() || ip_address::try_parse(name)) return {};
  return name;
}

}  // namespace detail

using detail::impl_of;

void async_io_state_attach_ssl(async_io_state& state, attach_ssl_options options, ssl_callback callback) {
  auto& s = impl_of(state);
  auto& c = s.coll("async_io_state_attach_ssl");
  s.check_idle("async_io_state_attach_ssl");
  if (s.tls_) throw std::logic_error("async_io_state_attach_ssl: async_io_state '" + s.name_ + "' already has TLS");
  detail::engine_params params;
  params.side = options.ssl_side;
  params.sni = detail::sni_for(options.tlsext_host_name);
  params.host_name = options.host_name.empty() ? options.tlsext_host_name : options.host_name;
  params.session_key = options.session_key;
  params.ctx_configure = std::move(options.ctx_configure_callback);
  params.ssl_configure = std::move(options.ssl_configure_callback);
  params.owner = &s;
  auto part = std::make_unique<detail::tls_part>(s.sock_.get(), s.input_);
  std::unique_ptr<detail::tls_engine> engine;
  try {
    engine = detail::make_engine(std::move(options.ssl_ctx), params, part->transport);
  } catch (...) {
    // Reported like a failed handshake: through the callback, from the loop.
    c.defer([st = s.self(), cb = std::move(callback), err = std::current_exception()] {
      st->read_status_ = io_status::error;
      st->read_error_ = err;
      if (cb) cb(*st, err);
    });
    return;
  }
  s.tls_ = std::move(part);
  s.hand_buffered_to_tls();
  s.attach_engine(std::move(engine));
  if (options.defer_handshake) {
    c.defer([st = s.self(), cb = std::move(callback)] {
      if (cb) cb(*st, nullptr);
    });
    return;
  }
  s.start_ssl(detail::ssl_op_kind::handshake, std::move(callback), options.handshake_timeout);
}

void async_io_state_handshake(async_io_state& state, ssl_callback callback, std::optional<milliseconds> timeout) {
  auto& s = impl_of(state);
  s.coll("async_io_state_handshake");
  s.check_idle("async_io_state_handshake");
  if (!s.tls_) throw std::logic_error("async_io_state_handshake: async_io_state '" + s.name_ + "' has no TLS attached");
  s.start_ssl(detail::ssl_op_kind::handshake, std::move(callback), timeout);
}

void async_io_state_detach_ssl(async_io_state& state, ssl_callback callback) {
  auto& s = impl_of(state);
  s.coll("async_io_state_detach_ssl");
  s.check_idle("async_io_state_detach_ssl");
  s.start_ssl(detail::ssl_op_kind::detach, std::move(callback),
              s.read_timeout_ ? s.read_timeout_ : std::optional<milliseconds>(std::chrono::seconds(10)));
}

ssl_failure_kind ssl_failure_indicator(std::exception_ptr error) noexcept {
  if (!error) return ssl_failure_kind::none;
  try {
    std::rethrow_exception(error);
  } catch (const ssl_handshake_timeout&) {
    return ssl_failure_kind::timeout;
  } catch (const ssl_closed&) {
    return ssl_failure_kind::closed;
  } catch (const ssl_condition&) {
    return ssl_failure_kind::ssl_condition;
  } catch (...) {
    return ssl_failure_kind::not_tls;
  }
}

}  // namespace comm
