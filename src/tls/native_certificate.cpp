// native_certificate frees its handle with its implementation's own function.
#include "tls/engine.hpp"

namespace comm {

namespace {
void free_handle(native_certificate::handle& h) noexcept {
  if (auto* x = std::get_if<x509_st*>(&h); x && *x) detail::openssl_free_x509(*x);
  if (auto* g = std::get_if<gnutls_x509_crt_int*>(&h); g && *g) detail::gnutls_free_certificate(*g);
  h = native_certificate::handle{};
}
}  // namespace

native_certificate& native_certificate::operator=(native_certificate&& o) noexcept {
  if (this != &o) {
    free_handle(h_);
    h_ = std::exchange(o.h_, handle{});
  }
  return *this;
}

native_certificate::~native_certificate() { free_handle(h_); }

x509_st* native_certificate::x509() const noexcept {
  auto* p = std::get_if<x509_st*>(&h_);
  return p ? *p : nullptr;
}

gnutls_x509_crt_int* native_certificate::gnutls_crt() const noexcept {
  auto* p = std::get_if<gnutls_x509_crt_int*>(&h_);
  return p ? *p : nullptr;
}

}  // namespace comm
