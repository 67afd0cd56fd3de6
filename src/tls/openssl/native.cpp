// OpenSSL native handles owned by comm: adopted SSL* and copied X509*.
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <stdexcept>

#include "tls/engine.hpp"

namespace comm {

adopted_ssl_pointer::adopted_ssl_pointer(ssl_st* ssl) : ptr_(ssl) {
  if (ssl == nullptr) throw std::invalid_argument("adopted_ssl_pointer: null SSL*");
}

adopted_ssl_pointer& adopted_ssl_pointer::operator=(adopted_ssl_pointer&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) SSL_free(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
  }
  return *this;
}

adopted_ssl_pointer::~adopted_ssl_pointer() {
  if (ptr_ != nullptr) SSL_free(ptr_);
}

namespace detail {
void openssl_free_x509(x509_st* cert) noexcept { X509_free(cert); }
}  // namespace detail

}  // namespace comm
