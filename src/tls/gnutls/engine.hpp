// The GnuTLS engine: one gnutls_session_t driven over a non-blocking comm transport. Shared by
// engine.cpp (set-up and I/O) and engine_callbacks.cpp (GnuTLS callbacks, errors, facts).
#pragma once

#include <optional>

#include "tls/gnutls/common.hpp"

namespace comm::detail::gtls {

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

  tls_result handshake() override;
  bool handshake_done() const noexcept override { return handshake_done_; }

  tls_result read(void* data, std::size_t size) override;

  tls_result write(const void* data, std::size_t size) override;

  tls_result shutdown() override;
  bool close_notify_received() const noexcept override { return close_notify_received_; }
  bool close_notify_sent() const noexcept override { return close_notify_sent_; }
  std::size_t pending() const noexcept override {
    return session_ && handshake_done_ ? gnutls_record_check_pending(session_.get()) : 0;
  }

  std::exception_ptr error(const std::string& operation, const std::string& peer) const override;

  void set_connect_state() override { choose_role(ssl_side::client); }
  void set_accept_state() override { choose_role(ssl_side::server); }
  bool is_client() const noexcept override { return session_ && side_ == ssl_side::client; }

  ssl_ref native() const noexcept override { return gnutls_session_ref{session_.get()}; }
  ssl_ctx_ref native_context() const noexcept override;

  ssl_protocol_version protocol_version() const override;
  std::string cipher() const override;
  std::string alpn_protocol() const override;
  std::string server_name() const override;
  bool session_reused() const override { return session_ && gnutls_session_is_resumed(session_.get()) != 0; }
  verify_result verify() const override {
    if (!session_) return verify_result{false, 0, verify_reason::no_certificate, "no peer certificate"};
    verify_result r = verify_session(session_.get(), host_name_, side_, active_ != nullptr ? &active_->crls : nullptr);
    r.from_cache = r.ok && verified_from_cache_;
    return r;
  }
  std::vector<certificate_data> peer_certificates_data() const override {
    return session_ ? gtls::peer_certificates_data(session_.get()) : std::vector<certificate_data>{};
  }
  std::vector<native_certificate> copy_peer_certificates() const override {
    return session_ ? gtls::copy_peer_certificates(session_.get()) : std::vector<native_certificate>{};
  }
  void read_certificates(const std::string& key_file, const read_certificates_options& options) override;

 private:
  gnutls_session_t session() const noexcept { return session_.get(); }
  static gnutls_engine* from(gnutls_session_t s) noexcept {
    return static_cast<gnutls_engine*>(gnutls_transport_get_ptr(s));
  }

  void attach_transport();
  static ssize_t push(gnutls_transport_ptr_t p, const void* data, std::size_t size);
  static ssize_t vec_push(gnutls_transport_ptr_t p, const giovec_t* iov, int iovcnt);
  static ssize_t pull(gnutls_transport_ptr_t p, void* data, std::size_t size);
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
  static int keylog_function(gnutls_session_t s, const char* label, const gnutls_datum_t* secret);
  static int cert_request_hook(gnutls_session_t s, unsigned, unsigned, unsigned incoming, const gnutls_datum_t*);
  int on_verify();
  verify_result verify_with_cache(const gnutls_context& c);
  int on_client_hello();
  int on_cert_request();

  void maybe_store_session();

  tls_result refuse_renegotiation();
  tls_result flush_alert();
  tls_result again() const noexcept {
    return {gnutls_record_get_direction(session()) == 1 ? tls_status::want_output : tls_status::want_input, 0};
  }
  tls_result fail(int rc, bool handshaking);
  tls_result fail_message(std::string message);
  void send_failure_alert(int rc);

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
  bool would_block_ = false;  // the transport answered EAGAIN during the current GnuTLS call
  std::vector<char> gather_;  // vec_push: the records of a flight joined for one transport write
  int error_code_ = 0;
  std::string error_message_;
  ssl_code refused_by_{};
  std::exception_ptr callback_error_;
  std::optional<verify_result> verify_failure_;
  bool verified_from_cache_ = false;  // this handshake's verdict came from the verified-chain cache
};

}  // namespace comm::detail::gtls
