// The central dispatch on the :ssl-ctx value: which engine serves a connection.
#include <stdexcept>

#include "tls/engine.hpp"

namespace comm::detail {

std::unique_ptr<tls_engine> make_engine(ssl_ctx_spec&& spec, const engine_params& params, transport& t) {
  struct visitor {
    const engine_params& params;
    transport& t;

    std::unique_ptr<tls_engine> operator()(std::monostate) const {
      throw std::invalid_argument("attach TLS: no ssl_ctx given");
    }
    std::unique_ptr<tls_engine> operator()(ssl_abstract_context& context) const {
      if (!context) throw std::invalid_argument("attach TLS: empty ssl_abstract_context");
      const auto& impl = *context.impl();
      const tls_backend* backend = find_backend(impl.implementation);
      if (backend == nullptr)
        throw ssl_failure(ssl_errc::unavailable, "attach TLS: the TLS implementation " +
                                                     std::string(to_string(impl.implementation)) + " is not available");
      return backend->create_engine(impl.realized(), impl.options, params, t);
    }
    std::unique_ptr<tls_engine> operator()(ssl_protocol_keyword keyword) const {
      const ssl_implementation impl = ssl_default_implementation();
      const tls_backend* backend = find_backend(impl);
      if (backend == nullptr)
        throw ssl_failure(ssl_errc::unavailable, "attach TLS: the default TLS implementation " +
                                                     std::string(to_string(impl)) + " is not available");
      return backend->create_default_engine(keyword, params, t);
    }
    std::unique_ptr<tls_engine> operator()(ssl_ctx_pointer ctx) const {
      if (ctx.ptr == nullptr) throw std::invalid_argument("attach TLS: null SSL_CTX*");
      return openssl_engine_from_ctx(ctx.ptr, params, t);
    }
    std::unique_ptr<tls_engine> operator()(adopted_ssl_pointer& ssl) const {
      return openssl_engine_adopt(std::move(ssl), params, t);
    }
    std::unique_ptr<tls_engine> operator()(adopted_gnutls_session& session) const {
      return gnutls_engine_adopt(std::move(session), params, t);
    }
    std::unique_ptr<tls_engine> operator()(ssl_context_ref) const {
      throw ssl_failure(ssl_errc::unavailable,
                        "attach TLS: Apple Security framework (ssl_context_ref) is not available on this platform");
    }
  };
  return std::visit(visitor{params, t}, spec);
}

}  // namespace comm::detail
