// The GnuTLS engine: one gnutls_session_t driven over a non-blocking comm transport.
//
// GnuTLS pulls exactly the bytes of the record it is reading (header, then body), so nothing
// after a close_notify is taken from the socket: detach_ssl can hand the plain stream back.
// Renegotiation is refused: a peer's request is answered with a no_renegotiation warning.
#include <cstring>

#include "tls/gnutls/common.hpp"

namespace comm::detail::gtls {
namespace {

// OpenSSL's text for a received alert, so that both implementations describe it alike.
std::string alert_text(gnutls_alert_description_t a) {
  switch (a) {
    case GNUTLS_A_UNEXPECTED_MESSAGE: return "sslv3 alert unexpected message";
    case GNUTLS_A_BAD_RECORD_MAC: return "sslv3 alert bad record mac";
    case GNUTLS_A_HANDSHAKE_FAILURE: return "sslv3 alert handshake failure";
    case GNUTLS_A_BAD_CERTIFICATE: return "sslv3 alert bad certificate";
    case GNUTLS_A_UNSUPPORTED_CERTIFICATE: return "sslv3 alert unsupported certificate";
    case GNUTLS_A_CERTIFICATE_REVOKED: return "sslv3 alert certificate revoked";
    case GNUTLS_A_CERTIFICATE_EXPIRED: return "sslv3 alert certificate expired";
    case GNUTLS_A_CERTIFICATE_UNKNOWN: return "sslv3 alert certificate unknown";
    case GNUTLS_A_ILLEGAL_PARAMETER: return "sslv3 alert illegal parameter";
    case GNUTLS_A_UNKNOWN_CA: return "tlsv1 alert unknown ca";
    case GNUTLS_A_ACCESS_DENIED: return "tlsv1 alert access denied";
    case GNUTLS_A_DECODE_ERROR: return "tlsv1 alert decode error";
    case GNUTLS_A_DECRYPT_ERROR: return "tlsv1 alert decrypt error";
    case GNUTLS_A_PROTOCOL_VERSION: return "tlsv1 alert protocol version";
    case GNUTLS_A_INSUFFICIENT_SECURITY: return "tlsv1 alert insufficient security";
    case GNUTLS_A_INTERNAL_ERROR: return "tlsv1 alert internal error";
    case GNUTLS_A_INAPPROPRIATE_FALLBACK: return "tlsv1 alert inappropriate fallback";
    case GNUTLS_A_USER_CANCELED: return "tlsv1 alert user cancelled";
    case GNUTLS_A_NO_RENEGOTIATION: return "tlsv1 alert no renegotiation";
    case GNUTLS_A_RECORD_OVERFLOW: return "tlsv1 alert record overflow";
    case GNUTLS_A_UNRECOGNIZED_NAME: return "tlsv1 unrecognized name";
    case GNUTLS_A_MISSING_EXTENSION: return "tlsv13 alert missing extension";
    case GNUTLS_A_CERTIFICATE_REQUIRED: return "tlsv13 alert certificate required";
    case GNUTLS_A_NO_APPLICATION_PROTOCOL: return "tlsv1 alert no application protocol";
    default: {
      const char* name = gnutls_alert_get_name(a);
      return std::string("alert: ") + (name ? name : "unknown");
    }
  }
}

class gnutls_engine final : public tls_engine {
 public:
  gnutls_engine(std::shared_ptr<gnutls_context> context, const engine_params& p, transport& t)
      : ctx_(std::move(context)), active_(ctx_.get()), t_(t), adopted_(false), side_(p.side),
        sni_(!p.sni.empty() ? p.sni : ctx_->options.tlsext_host_name), session_key_(p.session_key),
        ssl_configure_(p.ssl_configure) {
    owner = p.owner;
    // The name verified: the one asked for, else the SNI (as the OpenSSL engine does).
    if (ctx_->options.check_host_name) host_name_ = !p.host_name.empty() ? p.host_name : sni_;
    if (side_ != ssl_side::both) setup(side_);
  }
  gnutls_engine(session_ptr adopted, const engine_params& p, transport& t)
      : t_(t), adopted_(true), side_(p.side), sni_(p.sni), host_name_(p.host_name) {
    owner = p.owner;
    session_ = std::move(adopted);
    attach_transport();  // the only thing comm sets on an adopted session
    if (p.ssl_configure) p.ssl_configure(gnutls_session_ref{session_.get()});
    register_engine(native(), this);
  }
  ~gnutls_engine() override {
    if (session_) unregister_connection(native());
  }
  gnutls_engine(const gnutls_engine&) = delete;
  gnutls_engine& operator=(const gnutls_engine&) = delete;

  ssl_implementation implementation() const noexcept override { return ssl_implementation::gnutls; }

  tls_result handshake() override {
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
      if (rc == GNUTLS_E_WARNING_ALERT_RECEIVED && gnutls_alert_get(session()) == GNUTLS_A_CLOSE_NOTIFY) {
        closed_ = true;  // an orderly close where a handshake was expected
        return fail(rc, false);
      }
      if (gnutls_error_is_fatal(rc) == 0) continue;  // a warning alert (e.g. unrecognized_name)
      return fail(rc, true);
    }
    return fail(GNUTLS_E_INTERNAL_ERROR, true);
  }
  bool handshake_done() const noexcept override { return handshake_done_; }

  tls_result read(void* data, std::size_t size) override {
    if (!handshake_done_) {
      tls_result r = handshake();
      if (r.status != tls_status::done) return r;
    }
    if (close_notify_received_) return {tls_status::closed, 0};
    if (error_code_ != 0) return {tls_status::error, 0};
    if (tls_result r = flush_alert(); r.status != tls_status::done) return r;
    if (size == 0) return {tls_status::done, 0};
    for (int i = 0; i < 64; ++i) {
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

  tls_result write(const void* data, std::size_t size) override {
    if (!handshake_done_) {
      tls_result r = handshake();
      if (r.status != tls_status::done) return r;
    }
    if (error_code_ != 0) return {tls_status::error, 0};
    if (close_notify_received_) {  // a write after the peer's close_notify
      closed_ = true;
      error_code_ = GNUTLS_E_SESSION_EOF;
      return {tls_status::error, 0};
    }
    if (tls_result r = flush_alert(); r.status != tls_status::done) return r;
    if (size == 0) return {tls_status::done, 0};
    // One record per call (partial write); after GNUTLS_E_AGAIN GnuTLS keeps the encrypted record
    // and the next call flushes it and reports its length, whatever buffer it is given.
    ssize_t n = gnutls_record_send(session(), data, size);
    if (n >= 0) return {tls_status::done, static_cast<std::size_t>(n)};
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) return again();
    return fail(static_cast<int>(n), false);
  }

  tls_result shutdown() override {
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
      ssize_t n = gnutls_record_recv(session(), scratch, sizeof scratch);
      if (n > 0) continue;
      if (n == 0) {
        close_notify_received_ = true;
        return {tls_status::done, 0};
      }
      if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) return again();
      if (n == GNUTLS_E_REHANDSHAKE && side_ != ssl_side::client) return refuse_renegotiation();
      if (n == GNUTLS_E_REHANDSHAKE || gnutls_error_is_fatal(static_cast<int>(n)) == 0) continue;
      return fail(static_cast<int>(n), false);
    }
    return again();
  }
  bool close_notify_received() const noexcept override { return close_notify_received_; }
  bool close_notify_sent() const noexcept override { return close_notify_sent_; }
  std::size_t pending() const noexcept override {
    return session_ && handshake_done_ ? gnutls_record_check_pending(session_.get()) : 0;
  }

  std::exception_ptr error(const std::string& operation, const std::string& peer) const override;

  void set_connect_state() override { choose_role(ssl_side::client); }
  void set_accept_state() override { choose_role(ssl_side::server); }

  ssl_ref native() const noexcept override { return gnutls_session_ref{session_.get()}; }
  ssl_ctx_ref native_context() const noexcept override {
    if (own_credentials_) return gnutls_credentials_ref{own_credentials_.get()};
    if (active_ != nullptr) return gnutls_credentials_ref{active_->credentials.get()};
    void* cred = nullptr;
    if (session_ && gnutls_credentials_get(session_.get(), GNUTLS_CRD_CERTIFICATE, &cred) == 0)
      return gnutls_credentials_ref{static_cast<gnutls_certificate_credentials_t>(cred)};
    return gnutls_credentials_ref{};
  }

  ssl_protocol_version protocol_version() const override {
    if (!session_ || !handshake_done_) return ssl_protocol_version::unknown;
    switch (gnutls_protocol_get_version(session_.get())) {
      case GNUTLS_SSL3: return ssl_protocol_version::v3;
      case GNUTLS_TLS1_0: return ssl_protocol_version::tls_v1;
      case GNUTLS_TLS1_1: return ssl_protocol_version::tls_v1_1;
      case GNUTLS_TLS1_2: return ssl_protocol_version::tls_v1_2;
      case GNUTLS_TLS1_3: return ssl_protocol_version::tls_v1_3;
      default: return ssl_protocol_version::unknown;
    }
  }
  // The name OpenSSL gives the same suite ("TLS_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
  // so that both implementations answer alike; GnuTLS's own IANA name when there is no mapping.
  std::string cipher() const override {
    if (!session_ || !handshake_done_) return {};
    const char* name = gnutls_ciphersuite_get(session_.get());
    return name ? openssl_suite_name(name) : "";
  }
  std::string alpn_protocol() const override {
    gnutls_datum_t d{};
    if (!session_ || gnutls_alpn_get_selected_protocol(session_.get(), &d) != 0) return {};
    return std::string(reinterpret_cast<const char*>(d.data), d.size);
  }
  std::string server_name() const override {
    if (!session_) return {};
    if (side_ == ssl_side::client) return is_ip_literal(sni_) ? std::string() : sni_;
    char buf[256];
    std::size_t len = sizeof buf;
    unsigned type = 0;
    if (gnutls_server_name_get(session_.get(), buf, &len, &type, 0) != 0 || type != GNUTLS_NAME_DNS) return {};
    return std::string(buf, strnlen(buf, len));
  }
  bool session_reused() const override { return session_ && gnutls_session_is_resumed(session_.get()) != 0; }
  verify_result verify() const override {
    if (!session_) return verify_result{false, 0, verify_reason::no_certificate, "no peer certificate"};
    return verify_session(session_.get(), host_name_, side_);
  }
  std::vector<certificate_data> peer_certificates_data() const override {
    return session_ ? gtls::peer_certificates_data(session_.get()) : std::vector<certificate_data>{};
  }
  std::vector<native_certificate> copy_peer_certificates() const override {
    return session_ ? gtls::copy_peer_certificates(session_.get()) : std::vector<native_certificate>{};
  }
  void read_certificates(const std::string& key_file, const read_certificates_options& options) override {
    if (!session_) throw ssl_failure(ssl_errc::invalid_argument, "ssl_connection_read_certificates: no TLS role chosen yet");
    // New credentials for this session only: the identity read now plus the context's trust.
    ssl_context_options o;
    if (active_ != nullptr) o = active_->options;
    o.cert_pem.clear();
    o.key_pem.clear();
    o.key_file = key_file;
    o.cert_file = options.cert_file.empty() ? key_file : options.cert_file;
    o.password = options.password;
    o.password_callback = options.password_callback;
    if (active_ == nullptr) o.use_system_trusted = false;
    credentials_ptr cred = make_credentials(o, side_, "ssl_connection_read_certificates");
    if (active_ != nullptr && active_->dh_params) gnutls_certificate_set_dh_params(cred.get(), active_->dh_params.get());
    if (int rc = gnutls_credentials_set(session(), GNUTLS_CRD_CERTIFICATE, cred.get()); rc < 0)
      library_failure("ssl_connection_read_certificates", rc);
    own_credentials_ = std::move(cred);
  }

 private:
  gnutls_session_t session() const noexcept { return session_.get(); }
  static gnutls_engine* from(gnutls_session_t s) noexcept {
    return static_cast<gnutls_engine*>(gnutls_transport_get_ptr(s));
  }

  void attach_transport() {
    gnutls_session_t s = session();
    gnutls_transport_set_ptr(s, this);
    gnutls_transport_set_push_function(s, &push);
    gnutls_transport_set_pull_function(s, &pull);
    gnutls_transport_set_pull_timeout_function(s, &pull_timeout);
  }
  static ssize_t push(gnutls_transport_ptr_t p, const void* data, std::size_t size) {
    auto* e = static_cast<gnutls_engine*>(p);
    io_result r = e->t_.write(data, size);
    if (r.error == 0) return static_cast<ssize_t>(r.bytes);
    if (!r.would_block()) e->io_errno_ = r.error;
    gnutls_transport_set_errno(e->session(), r.would_block() ? EAGAIN : r.error);
    return -1;
  }
  static ssize_t pull(gnutls_transport_ptr_t p, void* data, std::size_t size) {
    auto* e = static_cast<gnutls_engine*>(p);
    io_result r = e->t_.read(data, size);
    if (r.error == 0) {
      if (r.bytes == 0) e->eof_ = true;
      return static_cast<ssize_t>(r.bytes);
    }
    if (!r.would_block()) e->io_errno_ = r.error;
    gnutls_transport_set_errno(e->session(), r.would_block() ? EAGAIN : r.error);
    return -1;
  }
  // The transport never blocks: claim readiness and let pull() report EAGAIN.
  static int pull_timeout(gnutls_transport_ptr_t, unsigned int) { return 1; }

  void setup(ssl_side side);
  void apply_server_verification(const gnutls_context& c);
  void choose_role(ssl_side side) {
    if (session_) return;  // already fixed (client/server engines, adopted sessions)
    side_ = side;
    setup(side);
  }
  static int verify_function(gnutls_session_t s);
  static int client_hello_function(gnutls_session_t s);
  static int cert_request_hook(gnutls_session_t s, unsigned, unsigned, unsigned incoming, const gnutls_datum_t*);
  int on_verify();
  int on_client_hello();
  int on_cert_request();

  void maybe_store_session() {
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
  tls_result refuse_renegotiation() {
    gnutls_alert_send(session(), GNUTLS_AL_FATAL, GNUTLS_A_NO_RENEGOTIATION);  // best effort
    return fail_message("the peer asked to renegotiate; renegotiation is refused");
  }
  tls_result flush_alert() {
    if (!alert_pending_) return {tls_status::done, 0};
    int rc = gnutls_alert_send(session(), GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
    if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) return again();
    alert_pending_ = false;
    if (rc < 0) return fail(rc, false);
    return {tls_status::done, 0};
  }
  tls_result again() const noexcept {
    return {gnutls_record_get_direction(session()) == 1 ? tls_status::want_output : tls_status::want_input, 0};
  }
  tls_result fail(int rc, bool handshaking) {
    error_code_ = rc;
    if (handshaking && io_errno_ == 0 && !eof_) send_failure_alert(rc);
    return {tls_status::error, 0};
  }
  tls_result fail_message(std::string message) {
    error_code_ = GNUTLS_E_INTERNAL_ERROR;
    error_message_ = std::move(message);
    return {tls_status::error, 0};
  }
  // GnuTLS leaves the alert to the application; tell the peer why (best effort, never blocks).
  void send_failure_alert(int rc) {
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

  // Destroyed in reverse order: the session first, then the credentials it points to.
  std::shared_ptr<gnutls_context> ctx_;
  std::shared_ptr<backend_context> switched_;  // chosen by the client hello callback
  const gnutls_context* active_ = nullptr;     // ctx_ or the switched context
  credentials_ptr own_credentials_;            // from ssl_connection_read_certificates
  session_ptr session_;
  transport& t_;
  bool adopted_;
  ssl_side side_;
  std::string sni_, host_name_, session_key_;
  comm::ssl_configure_callback ssl_configure_;

  bool handshake_done_ = false, close_notify_received_ = false, close_notify_sent_ = false;
  bool session_stored_ = false, alert_pending_ = false, eof_ = false, closed_ = false, client_hello_seen_ = false;
  int io_errno_ = 0;
  int error_code_ = 0;
  std::string error_message_;
  ssl_code refused_by_{};
  std::exception_ptr callback_error_;
  std::optional<verify_result> verify_failure_;
};

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

int gnutls_engine::verify_function(gnutls_session_t s) {
  gnutls_engine* e = from(s);
  return e ? e->on_verify() : GNUTLS_E_CERTIFICATE_ERROR;
}

// Whole-chain verification in one place (like the OpenSSL engine): the user's callback runs once per
// handshake with the final verdict, host name included, and may override it.
int gnutls_engine::on_verify() {
  const gnutls_context& c = *active_;
  const peer_verification mode = c.verify_mode();
  verify_result r = verify_session(session(), host_name_, side_);
  if (r.reason == verify_reason::no_certificate && side_ != ssl_side::client) {
    if (mode != peer_verification::required) return 0;  // optional: none sent is fine
    verify_failure_ = r;
    return GNUTLS_E_CERTIFICATE_REQUIRED;
  }
  if (c.options.verify_callback) {
    if (owner == nullptr) return r.ok ? 0 : GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
    bool accept = false;
    try {
      accept = c.options.verify_callback(*owner, r);
    } catch (...) {
      callback_error_ = std::current_exception();
    }
    if (accept) return 0;
    refused_by_ = {ssl_code_kind::verify_callback, 0};
    verify_failure_ = verify_result{false, r.code, verify_reason::rejected_by_callback, "rejected by verify callback"};
    return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
  }
  if (mode == peer_verification::required && !r.ok) {
    verify_failure_ = r;
    return GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR;
  }
  return 0;
}

int gnutls_engine::client_hello_function(gnutls_session_t s) {
  gnutls_engine* e = from(s);
  return e ? e->on_client_hello() : 0;
}

int gnutls_engine::on_client_hello() {
  // Once per handshake: a second ClientHello (after a HelloRetryRequest) keeps the first decision.
  if (owner == nullptr || client_hello_seen_) return 0;
  client_hello_seen_ = true;
  try {
    client_hello_decision d = ctx_->options.client_hello_callback(*owner, server_name());
    if (!d.accept) {
      refused_by_ = {ssl_code_kind::client_hello_callback, 0};
      return GNUTLS_E_UNRECOGNIZED_NAME;
    }
    if (d.use_context) {
      if (d.use_context.implementation() != ssl_implementation::gnutls)
        throw ssl_failure(ssl_errc::invalid_argument, "client_hello_callback: the chosen context uses " +
                                                          std::string(to_string(d.use_context.implementation())) +
                                                          ", not gnutls");
      auto other = d.use_context.impl()->realized();
      auto* oc = dynamic_cast<gnutls_context*>(other.get());
      if (oc == nullptr) throw ssl_failure(ssl_errc::failure, "client_hello_callback: the chosen context is not GnuTLS's");
      if (int rc = gnutls_credentials_set(session(), GNUTLS_CRD_CERTIFICATE, oc->credentials.get()); rc < 0)
        library_failure("client_hello_callback: switch credentials", rc);
      active_ = oc;
      apply_server_verification(*oc);  // the chosen context's verification policy too
      switched_ = std::move(other);
    }
    return 0;
  } catch (...) {
    callback_error_ = std::current_exception();
    refused_by_ = {ssl_code_kind::client_hello_callback, 0};
    return GNUTLS_E_USER_ERROR;
  }
}

int gnutls_engine::cert_request_hook(gnutls_session_t s, unsigned, unsigned, unsigned incoming, const gnutls_datum_t*) {
  gnutls_engine* e = from(s);
  return e && incoming ? e->on_cert_request() : 0;
}

int gnutls_engine::on_cert_request() {
  if (owner == nullptr) return 0;
  try {
    if (active_->options.cert_request_callback(*owner)) return 0;
  } catch (...) {
    callback_error_ = std::current_exception();
  }
  refused_by_ = {ssl_code_kind::cert_request_callback, 0};
  return GNUTLS_E_CERTIFICATE_REQUIRED;
}

std::exception_ptr gnutls_engine::error(const std::string& operation, const std::string& peer) const {
  // The same classes, codes and texts as the OpenSSL engine for the same situations.
  const std::string where = operation + (peer.empty() ? "" : " with " + peer);
  const ssl_connection* conn = owner;
  if (callback_error_ && refused_by_.kind == ssl_code_kind::none) return callback_error_;
  if (refused_by_.kind == ssl_code_kind::verify_callback)
    return std::make_exception_ptr(ssl_verification_failure(
        verify_reason::rejected_by_callback, where + ": certificate rejected by the verify callback", refused_by_, conn));
  if (refused_by_.kind != ssl_code_kind::none)
    return std::make_exception_ptr(ssl_failure(
        ssl_errc::failure,
        where + ": handshake refused by the " +
            (refused_by_.kind == ssl_code_kind::client_hello_callback ? "client hello" : "certificate request") + " callback",
        refused_by_, conn));
  if (closed_)
    return std::make_exception_ptr(ssl_closed(ssl_errc::closed, where + ": the peer closed the TLS connection (close_notify)",
                                              {ssl_code_kind::closed, 0}, conn));
  if (verify_failure_ && verify_failure_->reason == verify_reason::no_certificate)
    return std::make_exception_ptr(ssl_verification_failure(
        verify_reason::no_certificate, where + ": the peer did not send a certificate", {ssl_code_kind::verification, 0}, conn));
  if (verify_failure_)
    return std::make_exception_ptr(ssl_verification_failure(
        verify_failure_->reason, where + ": certificate verify failed: " + verify_failure_->message,
        {ssl_code_kind::verification, verify_failure_->code}, conn));
  if (!error_message_.empty())
    return std::make_exception_ptr(ssl_failure(ssl_errc::failure, where + ": " + error_message_, {}, conn));
  const int rc = error_code_;
  if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && session_) {
    // An adopted session verifying with gnutls_session_set_verify_cert.
    verify_result r = verify_result_from_status(session_.get(), gnutls_session_get_verify_cert_status(session_.get()));
    return std::make_exception_ptr(ssl_verification_failure(r.reason, where + ": certificate verify failed: " + r.message,
                                                            {ssl_code_kind::verification, r.code}, conn));
  }
  if ((rc == GNUTLS_E_NO_CERTIFICATE_FOUND || rc == GNUTLS_E_CERTIFICATE_REQUIRED) && side_ == ssl_side::server)
    return std::make_exception_ptr(ssl_verification_failure(
        verify_reason::no_certificate, where + ": the peer did not send a certificate", {ssl_code_kind::verification, 0}, conn));
  if (io_errno_ != 0 && io_errno_ != ECONNRESET && io_errno_ != EPIPE)
    return std::make_exception_ptr(socket_io_error(std::error_code(io_errno_, std::generic_category()),
                                                   where + ": " + std::strerror(io_errno_), conn));
  if (io_errno_ != 0 || eof_ || rc == GNUTLS_E_PREMATURE_TERMINATION)
    return std::make_exception_ptr(ssl_failure(
        ssl_errc::truncated,
        where + ": connection truncated (no close_notify)" + (io_errno_ ? std::string(": ") + std::strerror(io_errno_) : ""),
        {ssl_code_kind::truncated, 0}, conn));
  std::string text = gnutls_strerror(rc);
  if ((rc == GNUTLS_E_FATAL_ALERT_RECEIVED || rc == GNUTLS_E_WARNING_ALERT_RECEIVED) && session_) {
    text = alert_text(gnutls_alert_get(session_.get()));
  }
  return std::make_exception_ptr(ssl_failure(ssl_errc::failure, where + ": " + text, {ssl_code_kind::library, rc}, conn));
}

}  // namespace

std::unique_ptr<tls_engine> make_gnutls_engine(std::shared_ptr<gnutls_context> context, const engine_params& params,
                                               transport& t) {
  return std::make_unique<gnutls_engine>(std::move(context), params, t);
}

std::unique_ptr<tls_engine> make_adopted_engine(session_ptr session, const engine_params& params, transport& t) {
  return std::make_unique<gnutls_engine>(std::move(session), params, t);
}

}  // namespace comm::detail::gtls
