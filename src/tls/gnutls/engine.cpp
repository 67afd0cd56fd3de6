// The GnuTLS engine's set-up and I/O: one gnutls_session_t over a non-blocking comm transport.
//
// GnuTLS pulls exactly the bytes of the record it is reading (header, then body), so nothing
// after a close_notify is taken from the socket: detach_ssl can hand the plain stream back.
// Renegotiation is refused (see refuse_renegotiation).
#include "tls/gnutls/engine.hpp"

namespace comm::detail::gtls {

tls_result gnutls_engine::handshake() {
  if (handshake_done_) return {tls_status::done, 0};
  if (!session_) return fail_message("the TLS role (client or server) was not chosen before the handshake");
  for (int i = 0; i < 32; ++i) {
    int rc = gnutls_handshake(session());
    if (rc == GNUTLS_E_SUCCESS) {
      handshake_done_ = true;
      maybe_store_session();
      return {tls_status::done, 0};
    }
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) return again();
    if (rc == GNUTLS_E_SESSION_EOF ||
        (rc == GNUTLS_E_WARNING_ALERT_RECEIVED && gnutls_alert_get(session()) == GNUTLS_A_CLOSE_NOTIFY)) {
      closed_ = true;  // an orderly close where a handshake was expected
      return fail(rc, false);
    }
    if (gnutls_error_is_fatal(rc) == 0) continue;  // a warning alert (e.g. unrecognized_name)
    return fail(rc, true);
  }
  return fail(GNUTLS_E_INTERNAL_ERROR, true);
}

tls_result gnutls_engine::read(void* data, std::size_t size) {
  if (!handshake_done_) {
    tls_result r = handshake();
    if (r.status != tls_status::done) return r;
  }
  if (close_notify_received_) return {tls_status::closed, 0};
  if (error_code_ != 0) return {tls_status::error, 0};
  if (tls_result r = flush_alert(); r.status != tls_status::done) return r;
  if (size == 0) return {tls_status::done, 0};
  for (int i = 0; i < 64; ++i) {
    would_block_ = false;
    ssize_t n = gnutls_record_recv(session(), data, size);
    if (n > 0) {
      maybe_store_session();
      return {tls_status::done, static_cast<std::size_t>(n)};
    }
    if (n == 0) {
      close_notify_received_ = true;
      return {tls_status::closed, 0};
    }
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
      maybe_store_session();
      // GnuTLS also answers E_AGAIN after handling a post-handshake message (a TLS 1.3 session
      // ticket) without asking the transport for more: the next record may already be there (in a
      // read-ahead transport the socket then never becomes readable for it). Wait only when the
      // transport itself would block.
      if (!would_block_) continue;
      return again();
    }
    if (n == GNUTLS_E_REHANDSHAKE) {
      if (side_ != ssl_side::client) return refuse_renegotiation();
      alert_pending_ = true;  // a server's HelloRequest is ignored with a no_renegotiation warning
      if (tls_result r = flush_alert(); r.status != tls_status::done) return r;
      continue;
    }
    if (gnutls_error_is_fatal(static_cast<int>(n)) == 0) continue;  // warning alerts, tickets, key updates
    return fail(static_cast<int>(n), false);
  }
  return again();
}

tls_result gnutls_engine::write(const void* data, std::size_t size) {
  if (!handshake_done_) {
    tls_result r = handshake();
    if (r.status != tls_status::done) return r;
  }
  if (error_code_ != 0) return {tls_status::error, 0};
  // Writing after the peer's close_notify is allowed: it closed its direction only (a half-close,
  // RFC 8446 section 6.1), as OpenSSL allows it too.
  if (tls_result r = flush_alert(); r.status != tls_status::done) return r;
  if (size == 0) return {tls_status::done, 0};
  // One record per call (partial write); after GNUTLS_E_AGAIN GnuTLS keeps the encrypted record
  // and the next call flushes it and reports its length, whatever buffer it is given.
  ssize_t n = gnutls_record_send(session(), data, size);
  if (n >= 0) return {tls_status::done, static_cast<std::size_t>(n)};
  if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) return again();
  return fail(static_cast<int>(n), false);
}

tls_result gnutls_engine::shutdown() {
  if (!session_ || !handshake_done_ || error_code_ != 0) {
    close_notify_sent_ = true;  // nothing to close cleanly
    return {tls_status::done, 0};
  }
  if (!close_notify_sent_) {
    int rc = gnutls_bye(session(), GNUTLS_SHUT_WR);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) return again();
    if (rc < 0) return fail(rc, false);
    close_notify_sent_ = true;
    return {tls_status::done, 0};
  }
  if (close_notify_received_) return {tls_status::done, 0};
  // Second call: wait for the peer's close_notify, discarding data that still arrives.
  char scratch[4096];
  for (int i = 0; i < 64; ++i) {
    would_block_ = false;
    ssize_t n = gnutls_record_recv(session(), scratch, sizeof scratch);
    if (n > 0) continue;
    if (n == 0) {
      close_notify_received_ = true;
      return {tls_status::done, 0};
    }
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
      if (!would_block_) continue;  // a post-handshake message was handled (see read())
      return again();
    }
    if (n == GNUTLS_E_REHANDSHAKE && side_ != ssl_side::client) return refuse_renegotiation();
    if (n == GNUTLS_E_REHANDSHAKE || gnutls_error_is_fatal(static_cast<int>(n)) == 0) continue;
    return fail(static_cast<int>(n), false);
  }
  return again();
}

void gnutls_engine::maybe_store_session() {
  if (session_stored_ || ctx_ == nullptr || side_ != ssl_side::client || session_key_.empty() ||
      !ctx_->options.session_resumption || !handshake_done_)
    return;
  // TLS 1.3 tickets arrive after the handshake; asking earlier would make GnuTLS wait for one.
  if (gnutls_protocol_get_version(session()) == GNUTLS_TLS1_3 &&
      (gnutls_session_get_flags(session()) & GNUTLS_SFLAGS_SESSION_TICKET) == 0)
    return;
  gnutls_datum_t d{};
  if (gnutls_session_get_data2(session(), &d) == 0 && d.size > 0) {
    ctx_->store_session(session_key_, d);
    session_stored_ = true;
  }
  if (d.data) gnutls_free(d.data);
}

// GnuTLS keeps a client's renegotiation ClientHello queued where application data is read, so a
// server cannot ignore it and go on (as OpenSSL does): the connection ends with a fatal
// no_renegotiation alert instead.
tls_result gnutls_engine::refuse_renegotiation() {
  const int before = io_errno_;
  gnutls_alert_send(session(), GNUTLS_AL_FATAL, GNUTLS_A_NO_RENEGOTIATION);  // best effort
  io_errno_ = before;
  return fail_message("the peer asked to renegotiate; renegotiation is refused");
}

tls_result gnutls_engine::flush_alert() {
  if (!alert_pending_) return {tls_status::done, 0};
  int rc = gnutls_alert_send(session(), GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
  if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) return again();
  alert_pending_ = false;
  if (rc < 0) return fail(rc, false);
  return {tls_status::done, 0};
}

tls_result gnutls_engine::fail(int rc, bool handshaking) {
  error_code_ = rc;
  if (handshaking && io_errno_ == 0 && !eof_) {
    send_failure_alert(rc);
    io_errno_ = 0;  // a peer already gone when the alert goes out does not change what failed
  }
  return {tls_status::error, 0};
}

tls_result gnutls_engine::fail_message(std::string message) {
  error_code_ = GNUTLS_E_INTERNAL_ERROR;
  error_message_ = std::move(message);
  return {tls_status::error, 0};
}

// GnuTLS leaves the alert to the application; tell the peer why (best effort, never blocks).
void gnutls_engine::send_failure_alert(int rc) {
  if (verify_failure_) {
    gnutls_alert_description_t a = GNUTLS_A_BAD_CERTIFICATE;
    switch (verify_failure_->reason) {
      case verify_reason::unknown_issuer:
      case verify_reason::self_signed:
      case verify_reason::self_signed_in_chain: a = GNUTLS_A_UNKNOWN_CA; break;
      case verify_reason::expired:
      case verify_reason::not_yet_valid: a = GNUTLS_A_CERTIFICATE_EXPIRED; break;
      case verify_reason::revoked: a = GNUTLS_A_CERTIFICATE_REVOKED; break;
      case verify_reason::no_certificate: a = GNUTLS_A_CERTIFICATE_REQUIRED; break;
      default: break;
    }
    gnutls_alert_send(session(), GNUTLS_AL_FATAL, a);
    return;
  }
  if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED || rc == GNUTLS_E_PREMATURE_TERMINATION) return;
  gnutls_alert_send_appropriate(session(), rc);
}

ssize_t gnutls_engine::push(gnutls_transport_ptr_t p, const void* data, std::size_t size) {
  auto* e = static_cast<gnutls_engine*>(p);
  io_result r = e->t_.write(data, size);
  if (r.error == 0) return static_cast<ssize_t>(r.bytes);
  if (r.would_block()) e->would_block_ = true;
  if (!r.would_block()) e->io_errno_ = r.error;
  gnutls_transport_set_errno(e->session(), r.would_block() ? EAGAIN : r.error);
  return -1;
}

// GnuTLS queues the records of a flight (ServerHello, ChangeCipherSpec, EncryptedExtensions,
// Certificate, ...) and hands them over together: one transport write, so one send and usually one
// segment, instead of one per record. A short write is fine: GnuTLS keeps what was not taken and
// offers it again on the next call.
ssize_t gnutls_engine::vec_push(gnutls_transport_ptr_t p, const giovec_t* iov, int iovcnt) {
  if (iovcnt == 1) return push(p, iov[0].iov_base, iov[0].iov_len);
  auto* e = static_cast<gnutls_engine*>(p);
  std::size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  if (total == 0) return 0;
  e->gather_.clear();
  e->gather_.reserve(total);
  for (int i = 0; i < iovcnt; ++i) {
    const char* base = static_cast<const char*>(iov[i].iov_base);
    e->gather_.insert(e->gather_.end(), base, base + iov[i].iov_len);
  }
  return push(p, e->gather_.data(), e->gather_.size());
}

ssize_t gnutls_engine::pull(gnutls_transport_ptr_t p, void* data, std::size_t size) {
  auto* e = static_cast<gnutls_engine*>(p);
  io_result r = e->t_.read(data, size);
  if (r.error == 0) {
    if (r.bytes == 0) e->eof_ = true;
    return static_cast<ssize_t>(r.bytes);
  }
  if (r.would_block()) e->would_block_ = true;
  if (!r.would_block()) e->io_errno_ = r.error;
  gnutls_transport_set_errno(e->session(), r.would_block() ? EAGAIN : r.error);
  return -1;
}

void gnutls_engine::attach_transport() {
  gnutls_session_t s = session();
  gnutls_transport_set_ptr(s, this);
  gnutls_transport_set_push_function(s, &push);
  gnutls_transport_set_vec_push_function(s, &vec_push);  // used in place of push when set
  gnutls_transport_set_pull_function(s, &pull);
  gnutls_transport_set_pull_timeout_function(s, &pull_timeout);
}



void gnutls_engine::setup(ssl_side side) {
  const gnutls_context& c = *ctx_;
  unsigned flags = (side == ssl_side::client ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NONBLOCK;
  if (!c.options.session_resumption) flags |= GNUTLS_NO_TICKETS;
  gnutls_session_t s = nullptr;
  if (int rc = gnutls_init(&s, flags); rc < 0) library_failure("GnuTLS session", rc);
  session_.reset(s);
  attach_transport();
  if (int rc = gnutls_priority_set(s, c.priority.get()); rc < 0) library_failure("GnuTLS session priorities", rc);
  if (int rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c.credentials.get()); rc < 0)
    library_failure("GnuTLS session credentials", rc);
  gnutls_handshake_set_timeout(s, GNUTLS_INDEFINITE_TIMEOUT);  // comm's handshake_timeout governs

  if (side == ssl_side::client) {
    if (!sni_.empty() && !is_ip_literal(sni_)) {
      if (int rc = gnutls_server_name_set(s, GNUTLS_NAME_DNS, sni_.data(), sni_.size()); rc < 0)
        library_failure("GnuTLS server name " + sni_, rc);
    }
    if (c.verify_mode() != peer_verification::none || c.options.verify_callback)
      gnutls_session_set_verify_function(s, &verify_function);
    if (c.options.session_resumption && !session_key_.empty()) {
      std::vector<unsigned char> data = c.find_session(session_key_);
      if (!data.empty()) gnutls_session_set_data(s, data.data(), data.size());  // a stale one just is not resumed
    }
    if (c.options.cert_request_callback)
      gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CERTIFICATE_REQUEST, GNUTLS_HOOK_POST, &cert_request_hook);
  } else {
    apply_server_verification(c);
    if (c.ticket_key.data != nullptr) gnutls_session_ticket_enable_server(s, &c.ticket_key);
    if (c.options.client_hello_callback) gnutls_handshake_set_post_client_hello_function(s, &client_hello_function);
  }
  if (!c.alpn.empty()) {
    // A server with ALPN and no protocol in common fails the handshake (no_application_protocol),
    // as with OpenSSL; a client offering none is served without ALPN.
    const unsigned alpn_flags = side == ssl_side::client ? 0u : (GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE);
    if (int rc = gnutls_alpn_set_protocols(s, c.alpn.data(), static_cast<unsigned>(c.alpn.size()), alpn_flags); rc < 0)
      library_failure("GnuTLS ALPN", rc);
  }
  if (c.options.keylog_callback) gnutls_session_set_keylog_function(s, &keylog_function);
  if (c.options.gnutls_session_configure_callback) c.options.gnutls_session_configure_callback(gnutls_session_ref{s});
  if (ssl_configure_) ssl_configure_(gnutls_session_ref{s});
  register_engine(native(), this);
}

void gnutls_engine::apply_server_verification(const gnutls_context& c) {
  const peer_verification mode = c.verify_mode();
  gnutls_certificate_request_t req = GNUTLS_CERT_IGNORE;
  if (mode == peer_verification::required) req = GNUTLS_CERT_REQUIRE;
  else if (mode == peer_verification::optional || c.options.verify_callback) req = GNUTLS_CERT_REQUEST;
  gnutls_certificate_server_set_request(session(), req);
  gnutls_session_set_verify_function(session(), req == GNUTLS_CERT_IGNORE ? nullptr : &verify_function);
}

std::unique_ptr<tls_engine> make_gnutls_engine(std::shared_ptr<gnutls_context> context, const engine_params& params,
                                               transport& t) {
  return std::make_unique<gnutls_engine>(std::move(context), params, t);
}

std::unique_ptr<tls_engine> make_adopted_engine(session_ptr session, const engine_params& params, transport& t) {
  return std::make_unique<gnutls_engine>(std::move(session), params, t);
}


}  // namespace comm::detail::gtls
