// The OpenSSL engine's state machine: handshake, read, write, shutdown, and the errors they end in.
#include "tls/openssl/engine.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace comm::detail::ossl {
namespace {

using bio_state = openssl_engine::bio_state;

int bio_write(BIO* bio, const char* data, size_t size, size_t* written) {
  auto* s = static_cast<bio_state*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  io_result r = s->t->write(data, size);
  if (r.would_block()) {
    BIO_set_retry_write(bio);
    return 0;
  }
  if (r.error != 0) {
    s->error = r.error;
    return 0;
  }
  *written = r.bytes;
  return 1;
}

int bio_read(BIO* bio, char* data, size_t size, size_t* read) {
  auto* s = static_cast<bio_state*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (size == 0) {
    *read = 0;
    return 1;
  }
  io_result r = s->t->read(data, size);
  if (r.would_block()) {
    BIO_set_retry_read(bio);
    return 0;
  }
  if (r.error != 0) {
    s->error = r.error;
    return 0;
  }
  if (r.bytes == 0) {
    s->eof = true;
    return 0;
  }
  *read = r.bytes;
  return 1;
}

long bio_ctrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;  // every write goes straight to the transport
    case BIO_CTRL_EOF: return static_cast<bio_state*>(BIO_get_data(bio))->eof ? 1 : 0;
    default: return 0;
  }
}

int bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* transport_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "comm transport");
    BIO_meth_set_write_ex(m, bio_write);
    BIO_meth_set_read_ex(m, bio_read);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    return m;
  }();  // lives for the process, as OpenSSL's own methods do
  return method;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

[[noreturn]] void setup_failure(const std::string& what) {
  unsigned long code = 0;
  std::string text = drain_error_queue(&code);
  throw ssl_error(ssl_errc::library_error, what + (text.empty() ? "" : ": " + text), {ssl_code_kind::library, long(code)});
}

}  // namespace

openssl_engine::openssl_engine(ssl_ptr ssl, std::shared_ptr<openssl_context> context, engine_origin origin,
                               const engine_params& params, transport& t)
    : ssl_(std::move(ssl)), context_(std::move(context)) {
  SSL* s = ssl_.get();
  owner = params.owner;
  state_.engine = this;
  state_.session_key = params.session_key;
  bio_.t = &t;
  BIO* bio = BIO_new(transport_method());
  if (bio == nullptr) setup_failure("TLS attach: BIO_new");
  BIO_set_data(bio, &bio_);
  SSL_set_bio(s, bio, bio);  // the SSL owns the BIO
  if (origin == engine_origin::adopted) {
    // The user's SSL: comm sets the I/O and, when asked for one, the role; nothing else.
    if (params.side == ssl_side::client) SSL_set_connect_state(s);
    if (params.side == ssl_side::server) SSL_set_accept_state(s);
  } else {
    SSL_set_ex_data(s, engine_state_index(), &state_);
    if (params.side == ssl_side::client) {
      const std::string& sni = !params.sni.empty()                           ? params.sni
                               : context_ && !context_->options.tlsext_host_name.empty() ? context_->options.tlsext_host_name
                                                                                       : std::string();
      if (!sni.empty() && !is_ip_literal(sni) && SSL_set_tlsext_host_name(s, sni.c_str()) != 1)
        setup_failure("TLS attach: cannot set SNI " + sni);
      std::string host = !params.host_name.empty() ? params.host_name : sni;
      const bool check = context_ == nullptr || context_->options.check_host_name;
      if (check && !host.empty()) {
        state_.verify_host = host;
        if (is_ip_literal(host)) {
          if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), host.c_str()) != 1)
            setup_failure("TLS attach: cannot check IP address " + host);
        } else {
          // Names come from subjectAltName only (RFC 6125), never from the subject's CN.
          SSL_set_hostflags(s, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          if (SSL_set1_host(s, host.c_str()) != 1) setup_failure("TLS attach: cannot check host name " + host);
        }
      }
      if (context_ && !params.session_key.empty())
        if (session_ptr cached = context_->find_session(params.session_key)) SSL_set_session(s, cached.get());
      SSL_set_connect_state(s);
    } else if (params.side == ssl_side::server) {
      SSL_set_accept_state(s);
    }
    if (context_ && context_->options.openssl_ssl_configure_callback)
      context_->options.openssl_ssl_configure_callback(ssl_pointer{s});
    state_.chain_cache_allowed = !params.ssl_configure;
  }
  if (params.ssl_configure) params.ssl_configure(ssl_pointer{s});
  ERR_clear_error();
  register_engine(ssl_pointer{s}, this);
}

openssl_engine::~openssl_engine() {
  unregister_connection(ssl_pointer{ssl_.get()});
  SSL_set_ex_data(ssl_.get(), engine_state_index(), nullptr);
}

tls_result openssl_engine::finish(int ret, bool handshaking) {
  const int e = SSL_get_error(ssl_.get(), ret);
  switch (e) {
    case SSL_ERROR_WANT_READ: return {tls_status::want_input, 0};
    case SSL_ERROR_WANT_WRITE: return {tls_status::want_output, 0};
    case SSL_ERROR_ZERO_RETURN:
      if (!handshaking) {
        ERR_clear_error();
        return {tls_status::closed, 0};
      }
      failure_ = failure_kind::closed;
      break;
    default: break;
  }
  if (failure_ == failure_kind::none) {
    err_text_ = drain_error_queue(&err_code_);
    const int reason = ERR_GET_REASON(err_code_);
    if (state_.callback_error || state_.refused_by.kind != ssl_code_kind::none)
      failure_ = failure_kind::callback;
    else if (bio_.error != 0)
      failure_ = (bio_.error == ECONNRESET || bio_.error == EPIPE) ? failure_kind::truncated : failure_kind::transport;
    else if (bio_.eof || reason == SSL_R_UNEXPECTED_EOF_WHILE_READING || (e == SSL_ERROR_SYSCALL && err_code_ == 0))
      failure_ = failure_kind::truncated;
    else
      failure_ = failure_kind::library;
    verify_code_ = SSL_get_verify_result(ssl_.get());
  }
  empty_error_queue();
  failed_in_handshake_ = handshaking;
  return {tls_status::error, 0};
}

tls_result openssl_engine::handshake() {
  if (failure_ != failure_kind::none) return {tls_status::error, 0};
  empty_error_queue();
  int r = SSL_do_handshake(ssl_.get());
  if (r == 1) return {tls_status::done, 0};
  return finish(r, true);
}

tls_result openssl_engine::read(void* data, std::size_t size) {
  if (failure_ != failure_kind::none) return {tls_status::error, 0};
  empty_error_queue();
  const bool handshaking = !handshake_done();
  std::size_t n = 0;
  if (SSL_read_ex(ssl_.get(), data, size, &n) == 1) return {tls_status::done, n};
  return finish(0, handshaking);
}

tls_result openssl_engine::write(const void* data, std::size_t size) {
  if (failure_ != failure_kind::none) return {tls_status::error, 0};
  empty_error_queue();
  const bool handshaking = !handshake_done();
  std::size_t n = 0;
  if (size == 0) return handshaking ? handshake() : tls_result{tls_status::done, 0};
  if (SSL_write_ex(ssl_.get(), data, size, &n) == 1) return {tls_status::done, n};
  tls_result r = finish(0, handshaking);
  if (r.status == tls_status::closed) {  // a write after the peer's close_notify
    failure_ = failure_kind::closed;
    return {tls_status::error, 0};
  }
  return r;
}

tls_result openssl_engine::shutdown() {
  if (failure_ != failure_kind::none) return {tls_status::error, 0};
  if (!close_notify_sent()) {
    // Send our close_notify. OpenSSL sets SSL_SENT_SHUTDOWN when it queues the alert, not when it
    // is written: after a would-block write SSL_shutdown must be called again (it then writes the
    // queued alert) until the alert has left. A retry whose write blocks again answers 0, not -1
    // (the BIO reports a retry as 0), so a pending write is also read from SSL_want_write.
    empty_error_queue();
    int r = SSL_shutdown(ssl_.get());
    if (r == 0 && SSL_want_write(ssl_.get())) {
      close_notify_queued_ = true;
      return {tls_status::want_output, 0};
    }
    if (r < 0) {
      tls_result res = finish(r, false);
      close_notify_queued_ = res.status == tls_status::want_output;
      return res;
    }
    close_notify_queued_ = false;
    return {tls_status::done, 0};
  }
  if (!close_notify_received()) {
    // Waiting for the peer's close_notify: let SSL_shutdown read it (data before it is discarded).
    empty_error_queue();
    int r = SSL_shutdown(ssl_.get());
    if (r == 1) return {tls_status::done, 0};
    if (r == 0) return {tls_status::want_input, 0};
    tls_result res = finish(r, false);
    return res.status == tls_status::closed ? tls_result{tls_status::done, 0} : res;
  }
  return {tls_status::done, 0};
}

std::exception_ptr openssl_engine::error(const std::string& operation, const std::string& peer) const {
  const std::string where = describe_operation(operation, peer);
  const ssl_connection* conn = owner;
  switch (failure_) {
    case failure_kind::callback:
      if (state_.callback_error && state_.refused_by.kind == ssl_code_kind::none) return state_.callback_error;
      if (state_.refused_by.kind == ssl_code_kind::verify_callback)
        return std::make_exception_ptr(ssl_verification_failure(
            verify_reason::rejected_by_callback, where + ": certificate rejected by the verify callback",
            state_.refused_by, conn));
      return std::make_exception_ptr(ssl_failure(
          ssl_errc::failure,
          where + ": handshake refused by the " +
              (state_.refused_by.kind == ssl_code_kind::client_hello_callback ? "client hello" : "certificate request") +
              " callback",
          state_.refused_by, conn));
    case failure_kind::closed:
      return std::make_exception_ptr(
          ssl_closed(ssl_errc::closed, where + ": the peer closed the TLS connection (close_notify)",
                     {ssl_code_kind::closed, 0}, conn));
    case failure_kind::truncated:
      if (bio_.error != 0) return transport_failure(bio_.error, where, conn);
      return std::make_exception_ptr(ssl_failure(ssl_errc::truncated, where + ": connection truncated (no close_notify)",
                                                 {ssl_code_kind::truncated, 0}, conn));
    case failure_kind::transport: return transport_failure(bio_.error, where, conn);
    case failure_kind::library: {
      const int reason = ERR_GET_REASON(err_code_);
      if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && verify_code_ != X509_V_OK) {
        verify_result v = make_verify_result(verify_code_, true);
        return std::make_exception_ptr(ssl_verification_failure(
            v.reason, where + ": certificate verify failed: " + v.message, {ssl_code_kind::verification, verify_code_},
            conn));
      }
      if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
        return std::make_exception_ptr(ssl_verification_failure(verify_reason::no_certificate,
                                                                where + ": the peer did not send a certificate",
                                                                {ssl_code_kind::verification, X509_V_OK}, conn));
      return std::make_exception_ptr(ssl_failure(ssl_errc::failure, where + ": " + (err_text_.empty() ? "TLS failure" : err_text_),
                                                 {ssl_code_kind::library, static_cast<long>(err_code_)}, conn));
    }
    case failure_kind::none: break;
  }
  return std::make_exception_ptr(ssl_failure(ssl_errc::failure, where + ": TLS failure", {}, conn));
}

ssl_protocol_version openssl_engine::protocol_version() const {
  switch (SSL_version(ssl_.get())) {
    case SSL3_VERSION: return ssl_protocol_version::v3;
    case TLS1_VERSION: return ssl_protocol_version::tls_v1;
    case TLS1_1_VERSION: return ssl_protocol_version::tls_v1_1;
    case TLS1_2_VERSION: return ssl_protocol_version::tls_v1_2;
    case TLS1_3_VERSION: return ssl_protocol_version::tls_v1_3;
    default: return ssl_protocol_version::unknown;
  }
}

std::string openssl_engine::cipher() const {
  const char* name = SSL_get_cipher_name(ssl_.get());
  return name && std::strcmp(name, "(NONE)") != 0 ? name : "";
}

std::string openssl_engine::alpn_protocol() const {
  const unsigned char* p = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &p, &len);
  return p ? std::string(reinterpret_cast<const char*>(p), len) : std::string();
}

std::string openssl_engine::server_name() const {
  const char* name = SSL_get_servername(ssl_.get(), TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

verify_result openssl_engine::verify() const {
  verify_result r = make_verify_result(SSL_get_verify_result(ssl_.get()), SSL_get0_peer_certificate(ssl_.get()) != nullptr);
  r.from_cache = r.ok && state_.verified_from_cache;
  return r;
}

void openssl_engine::read_certificates(const std::string& key_file, const read_certificates_options& options) {
  const std::string op = "ssl_connection_read_certificates";
  ERR_clear_error();
  const std::string& cert = options.cert_file.empty() ? key_file : options.cert_file;
  if (SSL_use_certificate_chain_file(ssl_.get(), cert.c_str()) != 1)
    setup_failure(op + ": cannot use certificate file " + cert);
  pkey_ptr key = load_private_key(key_file, {}, options.password, options.password_callback, op);
  if (SSL_use_PrivateKey(ssl_.get(), key.get()) != 1) setup_failure(op + ": cannot use the key from " + key_file);
  if (SSL_check_private_key(ssl_.get()) != 1) setup_failure(op + ": the key in " + key_file + " does not match " + cert);
}

}  // namespace comm::detail::ossl
