// Which TLS implementations this build has, and the process-wide default.
#include <atomic>

#include "tls/engine.hpp"

namespace comm {
namespace {
std::atomic<ssl_implementation> default_implementation{ssl_implementation::openssl};
}

std::string_view to_string(ssl_implementation impl) noexcept {
  switch (impl) {
    case ssl_implementation::openssl: return "openssl";
    case ssl_implementation::gnutls: return "gnutls";
    case ssl_implementation::apple: return "apple";
  }
  return "unknown";
}

bool ssl_implementation_available(ssl_implementation impl) noexcept {
  return detail::find_backend(impl) != nullptr;
}

ssl_implementation ssl_default_implementation() noexcept { return default_implementation.load(); }

void set_ssl_default_implementation(ssl_implementation impl) {
  if (!ssl_implementation_available(impl))
    throw ssl_failure(ssl_errc::unavailable, "set_ssl_default_implementation: the TLS implementation " +
                                                 std::string(to_string(impl)) + " is not available in this build");
  default_implementation.store(impl);
}

namespace detail {
const tls_backend* find_backend(ssl_implementation impl) noexcept {
  switch (impl) {
    case ssl_implementation::openssl: return openssl_backend_instance();
    case ssl_implementation::gnutls: return gnutls_backend_instance();
    case ssl_implementation::apple: return nullptr;   // Apple's Security framework: Apple platforms only
  }
  return nullptr;
}
}  // namespace detail

}  // namespace comm
