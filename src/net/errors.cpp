// The "comm.ssl" error category and the names of verification reasons.
#include "comm/errors.hpp"

namespace comm {

namespace {
class ssl_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "comm.ssl"; }
  std::string message(int ev) const override {
    switch (static_cast<ssl_errc>(ev)) {
      case ssl_errc::closed: return "TLS connection closed by the peer";
      case ssl_errc::failure: return "TLS protocol failure";
      case ssl_errc::library_error: return "TLS library error";
      case ssl_errc::handshake_timeout: return "TLS handshake timed out";
      case ssl_errc::verification_failure: return "peer certificate verification failed";
      case ssl_errc::x509_lookup: return "X.509 lookup failed";
      case ssl_errc::truncated: return "TLS connection truncated (no close_notify)";
      case ssl_errc::not_ssl: return "connection has no TLS attached";
      case ssl_errc::unavailable: return "TLS implementation unavailable";
      case ssl_errc::invalid_argument: return "invalid TLS option";
    }
    return "unknown TLS error " + std::to_string(ev);
  }
};
}  // namespace

const std::error_category& ssl_category() noexcept {
  static const ssl_category_impl category;
  return category;
}

std::string_view to_string(verify_reason r) noexcept {
  switch (r) {
    case verify_reason::ok: return "ok";
    case verify_reason::expired: return "certificate has expired";
    case verify_reason::not_yet_valid: return "certificate is not yet valid";
    case verify_reason::host_name_mismatch: return "host name mismatch";
    case verify_reason::unknown_issuer: return "unknown issuer";
    case verify_reason::self_signed: return "self-signed certificate";
    case verify_reason::self_signed_in_chain: return "self-signed certificate in chain";
    case verify_reason::revoked: return "certificate revoked";
    case verify_reason::invalid_ca: return "invalid CA certificate";
    case verify_reason::path_length_exceeded: return "path length constraint exceeded";
    case verify_reason::invalid_purpose: return "unsupported certificate purpose";
    case verify_reason::signature_failure: return "certificate signature failure";
    case verify_reason::no_certificate: return "no peer certificate";
    case verify_reason::rejected_by_callback: return "rejected by verify callback";
    case verify_reason::other: return "other verification failure";
  }
  return "other verification failure";
}

}  // namespace comm
