// GnuTLS entry points: the backend instance, certificate release and adopted sessions.
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <stdexcept>

#include "tls/engine.hpp"

namespace comm {

adopted_gnutls_session::adopted_gnutls_session(gnutls_session_int* session) : ptr_(session) {
  if (session == nullptr) throw std::invalid_argument("adopted_gnutls_session: null gnutls_session_t");
}

adopted_gnutls_session& adopted_gnutls_session::operator=(adopted_gnutls_session&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) gnutls_deinit(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
  }
  return *this;
}

adopted_gnutls_session::~adopted_gnutls_session() {
  if (ptr_ != nullptr) gnutls_deinit(ptr_);
}

namespace detail {

void gnutls_free_certificate(gnutls_x509_crt_int* crt) noexcept {
  if (crt != nullptr) gnutls_x509_crt_deinit(crt);
}

namespace {
class gnutls_stub_backend final : public tls_backend {
 public:
  ssl_implementation id() const noexcept override { return ssl_implementation::gnutls; }
  std::shared_ptr<backend_context> realize(const ssl_context_options&, ssl_side) const override {
    throw ssl_failure(ssl_errc::unavailable, "GnuTLS: not implemented yet");
  }
  std::unique_ptr<tls_engine> create_engine(std::shared_ptr<backend_context>, const ssl_context_options&,
                                            const engine_params&, transport&) const override {
    throw ssl_failure(ssl_errc::unavailable, "GnuTLS: not implemented yet");
  }
  std::unique_ptr<tls_engine> create_default_engine(ssl_protocol_keyword, const engine_params&,
                                                    transport&) const override {
    throw ssl_failure(ssl_errc::unavailable, "GnuTLS: not implemented yet");
  }
};
}  // namespace

const tls_backend* gnutls_backend_instance() noexcept {
  static const gnutls_stub_backend backend;
  return &backend;
}

std::unique_ptr<tls_engine> gnutls_engine_adopt(adopted_gnutls_session session, const engine_params&, transport&) {
  (void)session;  // freed here: comm owns it from the call on
  throw ssl_failure(ssl_errc::unavailable, "GnuTLS: not implemented yet");
}

}  // namespace detail
}  // namespace comm
