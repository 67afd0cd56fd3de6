// The OpenSSL engine: one SSL per connection, its ciphertext moved by a BIO over comm's transport.
#pragma once

#include "tls/openssl/common.hpp"

namespace comm::detail::ossl {

class openssl_engine final : public tls_engine {
 public:
  openssl_engine(ssl_ptr ssl, std::shared_ptr<openssl_context> context, engine_origin origin,
                 const engine_params& params, transport& t);
  ~openssl_engine() override;

  ssl_implementation implementation() const noexcept override { return ssl_implementation::openssl; }
  tls_result handshake() override;
  bool handshake_done() const noexcept override { return SSL_is_init_finished(ssl_.get()) == 1; }
  tls_result read(void* data, std::size_t size) override;
  tls_result write(const void* data, std::size_t size) override;
  tls_result shutdown() override;
  bool close_notify_received() const noexcept override {
    return (SSL_get_shutdown(ssl_.get()) & SSL_RECEIVED_SHUTDOWN) != 0;
  }
  // Sent = written to the transport, not only queued in OpenSSL (see shutdown()).
  bool close_notify_sent() const noexcept override {
    return (SSL_get_shutdown(ssl_.get()) & SSL_SENT_SHUTDOWN) != 0 && !close_notify_queued_;
  }
  std::size_t pending() const noexcept override { return static_cast<std::size_t>(SSL_pending(ssl_.get())); }
  std::exception_ptr error(const std::string& operation, const std::string& peer) const override;
  void set_connect_state() override { SSL_set_connect_state(ssl_.get()); }
  void set_accept_state() override { SSL_set_accept_state(ssl_.get()); }
  bool is_client() const noexcept override { return SSL_is_server(ssl_.get()) == 0; }

  ssl_ref native() const noexcept override { return ssl_pointer{ssl_.get()}; }
  ssl_ctx_ref native_context() const noexcept override { return ssl_ctx_pointer{SSL_get_SSL_CTX(ssl_.get())}; }
  ssl_protocol_version protocol_version() const override;
  std::string cipher() const override;
  std::string alpn_protocol() const override;
  std::string server_name() const override;
  bool session_reused() const override { return SSL_session_reused(ssl_.get()) == 1; }
  verify_result verify() const override;
  std::vector<certificate_data> peer_certificates_data() const override;
  std::vector<native_certificate> copy_peer_certificates() const override;
  void read_certificates(const std::string& key_file, const read_certificates_options& options) override;

  // The BIO's view of the transport.
  struct bio_state {
    transport* t = nullptr;
    bool eof = false;
    int error = 0;  // errno of a failed transport call
  };

 private:
  enum class failure_kind { none, library, truncated, closed, transport, callback };
  tls_result finish(int ret, bool handshaking);
  std::vector<X509*> peer_chain() const;

  ssl_ptr ssl_;
  std::shared_ptr<openssl_context> context_;  // keeps the SSL_CTX's callbacks' state alive
  engine_state state_;
  bio_state bio_;
  // The first failure, captured when it happened (the error queue is per thread).
  failure_kind failure_ = failure_kind::none;
  bool failed_in_handshake_ = false;
  bool close_notify_queued_ = false;  // SSL_shutdown queued the alert but could not write it yet
  unsigned long err_code_ = 0;
  std::string err_text_;
  long verify_code_ = X509_V_OK;
};

}  // namespace comm::detail::ossl
