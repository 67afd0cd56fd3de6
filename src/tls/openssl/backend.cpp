// The OpenSSL backend: realises abstract contexts and makes engines for every kind of :ssl-ctx.
#include "tls/openssl/engine.hpp"

namespace comm::detail {
namespace ossl {
namespace {

ssl_ptr new_ssl(SSL_CTX* ctx) {
  ssl_ptr ssl(SSL_new(ctx));
  if (!ssl) {
    std::string text = drain_error_queue();
    throw ssl_error(ssl_errc::library_error, "TLS attach: SSL_new: " + text);
  }
  return ssl;
}

class openssl_backend final : public tls_backend {
 public:
  ssl_implementation id() const noexcept override { return ssl_implementation::openssl; }

  std::shared_ptr<backend_context> realize(const ssl_context_options& options, ssl_side side) const override {
    return realize_context(options, side, true);
  }

  std::unique_ptr<tls_engine> create_engine(std::shared_ptr<backend_context> context, const ssl_context_options&,
                                            const engine_params& params, transport& t) const override {
    auto c = std::dynamic_pointer_cast<openssl_context>(context);
    if (!c) throw std::invalid_argument("OpenSSL engine: the context was realised by another implementation");
    if (params.ctx_configure) {
      c->configured_natively = true;
      params.ctx_configure(ssl_ctx_pointer{c->ctx.get()});
    }
    ssl_ptr ssl = new_ssl(c->ctx.get());
    return std::make_unique<openssl_engine>(std::move(ssl), std::move(c), engine_origin::abstract_context, params, t);
  }

  // A fresh context per connection: the configure callback may change it freely.
  std::unique_ptr<tls_engine> create_default_engine(ssl_protocol_keyword keyword, const engine_params& params,
                                                    transport& t) const override {
    ssl_context_options o;
    o.name = "default";
    if (keyword == ssl_protocol_keyword::tls_v1_2) o.protocol_version = {ssl_protocol_version::tls_v1_2, ssl_protocol_version::tls_v1_2};
    if (keyword == ssl_protocol_keyword::tls_v1_3) o.protocol_version = {ssl_protocol_version::tls_v1_3, ssl_protocol_version::tls_v1_3};
    o.session_resumption = false;  // nothing to share sessions with
    const ssl_side side = params.side == ssl_side::client ? ssl_side::client : ssl_side::server;
    auto c = realize_context(o, side, false);
    if (params.ctx_configure) {
      c->configured_natively = true;
      params.ctx_configure(ssl_ctx_pointer{c->ctx.get()});
    }
    ssl_ptr ssl = new_ssl(c->ctx.get());
    return std::make_unique<openssl_engine>(std::move(ssl), std::move(c), engine_origin::default_context, params, t);
  }
};

}  // namespace
}  // namespace ossl

const tls_backend* openssl_backend_instance() noexcept {
  static const ossl::openssl_backend backend;
  return &backend;
}

std::unique_ptr<tls_engine> openssl_engine_from_ctx(ssl_ctx_st* borrowed, const engine_params& params, transport& t) {
  if (params.ctx_configure) params.ctx_configure(ssl_ctx_pointer{borrowed});
  ossl::ssl_ptr ssl = ossl::new_ssl(borrowed);  // SSL_new takes its own reference on the SSL_CTX
  return std::make_unique<ossl::openssl_engine>(std::move(ssl), nullptr, ossl::engine_origin::borrowed_context, params, t);
}

std::unique_ptr<tls_engine> openssl_engine_adopt(adopted_ssl_pointer ssl, const engine_params& params, transport& t) {
  ossl::ssl_ptr owned(ssl.release());  // freed exactly once, by this engine or on failure here
  return std::make_unique<ossl::openssl_engine>(std::move(owned), nullptr, ossl::engine_origin::adopted, params, t);
}

}  // namespace comm::detail
