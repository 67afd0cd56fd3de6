// Temporary definitions until the OpenSSL backend and engine land.
#include "tls/engine.hpp"

namespace comm {
namespace {
[[noreturn]] void not_yet(const char* what) {
  throw ssl_failure(ssl_errc::unavailable, std::string(what) + ": not implemented yet");
}
class stub_backend final : public detail::tls_backend {
 public:
  ssl_implementation id() const noexcept override { return ssl_implementation::openssl; }
  std::shared_ptr<detail::backend_context> realize(const ssl_context_options&, ssl_side) const override {
    not_yet("OpenSSL realize");
  }
  std::unique_ptr<detail::tls_engine> create_engine(std::shared_ptr<detail::backend_context>,
                                                    const ssl_context_options&, const detail::engine_params&,
                                                    detail::transport&) const override {
    not_yet("OpenSSL engine");
  }
  std::unique_ptr<detail::tls_engine> create_default_engine(ssl_protocol_keyword, const detail::engine_params&,
                                                            detail::transport&) const override {
    not_yet("OpenSSL engine");
  }
};
}  // namespace

namespace detail {
const tls_backend* openssl_backend_instance() noexcept {
  static const stub_backend backend;
  return &backend;
}
std::unique_ptr<tls_engine> openssl_engine_from_ctx(ssl_ctx_st*, const engine_params&, transport&) {
  not_yet("OpenSSL engine from SSL_CTX*");
}
std::unique_ptr<tls_engine> openssl_engine_adopt(adopted_ssl_pointer, const engine_params&, transport&) {
  not_yet("OpenSSL engine from adopted SSL*");
}
}  // namespace detail

demo_credentials make_demo_credentials(const std::string&) { not_yet("make_demo_credentials"); }

}  // namespace comm
