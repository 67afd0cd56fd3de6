// The GnuTLS engine's callbacks (verification, client hello, certificate request), its errors in
// comm's terms (the same classes, codes and texts as the OpenSSL engine) and the connection facts.
#include <cstring>

#include "tls/gnutls/engine.hpp"

namespace comm::detail::gtls {
namespace {

// OpenSSL's text for a received alert, so that both implementations describe it alike.
// Takes an int: a peer may send any alert number (0-255), and loading one that names no
// enumerator into gnutls_alert_description_t is undefined behaviour.
std::string alert_text(int a) {
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
      // Converting to the enum is only defined within its value range (0-127 for GnuTLS's).
      const char* name = a >= 0 && a < 128 ? gnutls_alert_get_name(static_cast<gnutls_alert_description_t>(a)) : nullptr;
      return name ? std::string("alert: ") + name : "alert number " + std::to_string(a);
    }
  }
}

}  // namespace

ssl_ctx_ref gnutls_engine::native_context() const noexcept {
  if (own_credentials_) return gnutls_credentials_ref{own_credentials_.get()};
  if (active_ != nullptr) return gnutls_credentials_ref{active_->credentials.get()};
  void* cred = nullptr;
  if (session_ && gnutls_credentials_get(session_.get(), GNUTLS_CRD_CERTIFICATE, &cred) == 0)
    return gnutls_credentials_ref{static_cast<gnutls_certificate_credentials_t>(cred)};
  return gnutls_credentials_ref{};
}

ssl_protocol_version gnutls_engine::protocol_version() const {
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
std::string gnutls_engine::cipher() const {
  if (!session_ || !handshake_done_) return {};
  const char* name = gnutls_ciphersuite_get(session_.get());
  return name ? openssl_suite_name(name) : "";
}

std::string gnutls_engine::alpn_protocol() const {
  gnutls_datum_t d{};
  if (!session_ || gnutls_alpn_get_selected_protocol(session_.get(), &d) != 0) return {};
  return std::string(reinterpret_cast<const char*>(d.data), d.size);
}

std::string gnutls_engine::server_name() const {
  if (!session_) return {};
  if (side_ == ssl_side::client) return is_ip_literal(sni_) ? std::string() : sni_;
  char buf[256];
  std::size_t len = sizeof buf;
  unsigned type = 0;
  if (gnutls_server_name_get(session_.get(), buf, &len, &type, 0) != 0 || type != GNUTLS_NAME_DNS) return {};
  return std::string(buf, strnlen(buf, len));
}

void gnutls_engine::read_certificates(const std::string& key_file, const read_certificates_options& options) {
  if (!session_) throw ssl_failure(ssl_errc::invalid_argument, "ssl_connection_read_certificates: no TLS role chosen yet");
  // New credentials for this session only: the identity read now plus the context's trust.
  struct wiped_options {
    ssl_context_options o;
    ~wiped_options() { forget_secrets(o); }  // the password copy, also when loading throws
  } holder;
  ssl_context_options& o = holder.o;
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

// verify_session, or the verified-chain cache's earlier verdict for the same chain and name. A
// connection whose session a configure callback had uses no cache.
verify_result gnutls_engine::verify_with_cache(const gnutls_context& c) {
  verified_from_cache_ = false;
  verified_chain_cache* cache = ssl_configure_ || adopted_ ? nullptr : c.usable_chain_cache();
  unsigned n = 0;
  const gnutls_datum_t* certs = cache != nullptr ? gnutls_certificate_get_peers(session(), &n) : nullptr;
  if (certs == nullptr || n == 0) return verify_session(session(), host_name_, side_, &c.crls);
  std::string key = verified_chain_cache::key(side_, host_name_);
  for (unsigned i = 0; i < n; ++i) verified_chain_cache::add_certificate(key, {certs[i].data, certs[i].size});
  const auto now = verified_chain_cache::clock::now();
  if (cache->contains(key, now)) {
    verified_from_cache_ = true;
    return verify_result{true, 0, verify_reason::ok, "ok", true};
  }
  verify_result r = verify_session(session(), host_name_, side_, &c.crls);
  if (r.ok) cache->insert(std::move(key), now, chain_not_after(certs, n, c.credentials.get()));
  return r;
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
  verify_result r = verify_with_cache(c);
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

// GnuTLS hands over the label and the secret; the NSS key log line also names the connection by
// its client random: "<label> <client random hex> <secret hex>", as OpenSSL writes it.
int gnutls_engine::keylog_function(gnutls_session_t s, const char* label, const gnutls_datum_t* secret) {
  gnutls_engine* e = from(s);
  if (e == nullptr || e->owner == nullptr || e->ctx_ == nullptr || !e->ctx_->options.keylog_callback) return 0;
  static const char digits[] = "0123456789abcdef";
  auto hex = [](const gnutls_datum_t& d) {
    std::string out;
    out.reserve(2 * d.size);
    for (unsigned i = 0; i < d.size; ++i) out += digits[d.data[i] >> 4], out += digits[d.data[i] & 15];
    return out;
  };
  gnutls_datum_t client_random{}, server_random{};
  gnutls_session_get_random(s, &client_random, &server_random);
  try {
    e->ctx_->options.keylog_callback(*e->owner, std::string(label) + " " + hex(client_random) + " " + hex(*secret));
  } catch (...) {
    // A debugging aid must not change the connection's outcome.
  }
  return 0;
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
  const std::string where = describe_operation(operation, peer);
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
  if (io_errno_ != 0) return transport_failure(io_errno_, where, conn);
  if (eof_ || rc == GNUTLS_E_PREMATURE_TERMINATION)
    return std::make_exception_ptr(ssl_failure(ssl_errc::truncated, where + ": connection truncated (no close_notify)",
                                               {ssl_code_kind::truncated, 0}, conn));
  std::string text = error_text(rc);
  if ((rc == GNUTLS_E_FATAL_ALERT_RECEIVED || rc == GNUTLS_E_WARNING_ALERT_RECEIVED) && session_) {
    text = alert_text(static_cast<int>(gnutls_alert_get(session_.get())));
  }
  return std::make_exception_ptr(ssl_failure(ssl_errc::failure, where + ": " + text, {ssl_code_kind::library, rc}, conn));
}

}  // namespace comm::detail::gtls
