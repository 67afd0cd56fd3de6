// GnuTLS entry points: adopted sessions and certificate release.
#include <stdexcept>

#include "tls/gnutls/common.hpp"

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

std::unique_ptr<tls_engine> gnutls_engine_adopt(adopted_gnutls_session session, const engine_params& params,
                                                transport& t) {
  // Owned from here on: freed by the engine, or here if building the engine fails.
  gtls::session_ptr owned(session.release());
  return gtls::make_adopted_engine(std::move(owned), params, t);
}

}  // namespace detail
}  // namespace comm
