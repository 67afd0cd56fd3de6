// Abstract contexts: options checked for the side, realised eagerly by the chosen implementation
// (so a bad file or a wrong password fails at creation), cached until reset.
#include <string.h>  // explicit_bzero (glibc)

#include "tls/engine.hpp"

namespace comm {
namespace detail {

std::shared_ptr<backend_context> abstract_context_impl::realized() const {
  std::lock_guard lock(mutex);
  if (!cache) {
    const tls_backend* backend = find_backend(implementation);
    if (backend == nullptr)
      throw ssl_failure(ssl_errc::unavailable, "realise TLS context '" + options.name + "': the TLS implementation " +
                                                   std::string(to_string(implementation)) + " is not available");
    cache = backend->realize(options, side);
  }
  return cache;
}

void abstract_context_impl::reset() const {
  std::lock_guard lock(mutex);
  cache.reset();
}

namespace {
// The whole buffer (up to the capacity, where older contents may linger), with a write the
// compiler may not drop as dead before the free.
void wipe(std::string& s) noexcept {
  s.resize(s.capacity());  // never reallocates
  explicit_bzero(s.data(), s.size());
}
}  // namespace

abstract_context_impl::~abstract_context_impl() {
  wipe(options.password);
  wipe(options.key_pem);
}

}  // namespace detail

namespace {

[[noreturn]] void reject(const char* operation, const ssl_context_options& o, const std::string& why) {
  std::string what = std::string(operation);
  if (!o.name.empty()) what += " '" + o.name + "'";
  throw ssl_failure(ssl_errc::invalid_argument, what + ": " + why, {});
}

ssl_abstract_context build(ssl_context_options options, ssl_side side) {
  const char* op = side == ssl_side::client ? "create_ssl_client_context" : "create_ssl_server_context";
  const ssl_implementation impl = options.implementation.value_or(ssl_default_implementation());
  if (detail::find_backend(impl) == nullptr)
    throw ssl_failure(ssl_errc::unavailable, std::string(op) + ": the TLS implementation " +
                                                 std::string(to_string(impl)) + " is not available in this build");
  if (side == ssl_side::server) {
    if (!options.tlsext_host_name.empty()) reject(op, options, "option tlsext_host_name is for clients only");
    if (options.cert_request_callback) reject(op, options, "option cert_request_callback is for clients only");
  } else {
    if (options.client_hello_callback) reject(op, options, "option client_hello_callback is for servers only");
    if (!options.dh_file.empty()) reject(op, options, "option dh_file is for servers only");
  }
  if (!options.cert_file.empty() && !options.cert_pem.empty())
    reject(op, options, "options cert_file and cert_pem are exclusive");
  if (!options.key_file.empty() && !options.key_pem.empty())
    reject(op, options, "options key_file and key_pem are exclusive");
  const bool has_cert = !options.cert_file.empty() || !options.cert_pem.empty();
  const bool has_key = !options.key_file.empty() || !options.key_pem.empty();
  if (has_cert != has_key)
    reject(op, options, has_cert ? "a certificate needs its private key (key_file or key_pem)"
                                 : "a private key needs its certificate (cert_file or cert_pem)");
  const bool configured_natively = options.openssl_ctx_configure_callback ||
                                   options.gnutls_credentials_configure_callback || options.apple_configure_callback;
  if (side == ssl_side::server && !has_cert && !configured_natively)
    reject(op, options, "a server needs a certificate and key (cert_file/key_file or cert_pem/key_pem)");
  if (options.protocol_version.max && *options.protocol_version.max < options.protocol_version.min)
    reject(op, options, "protocol_version.max is below protocol_version.min");

  auto impl_state = std::make_shared<detail::abstract_context_impl>();
  impl_state->options = std::move(options);
  impl_state->side = side;
  impl_state->implementation = impl;
  impl_state->realized();  // eager: files, keys and every option are checked now
  return ssl_abstract_context(std::move(impl_state));
}

const detail::abstract_context_impl& state(const ssl_abstract_context& c, const char* what) {
  if (!c.impl()) throw std::invalid_argument(std::string(what) + ": empty ssl_abstract_context");
  return *c.impl();
}

}  // namespace

const std::string& ssl_abstract_context::name() const { return state(*this, "ssl_abstract_context::name").options.name; }
ssl_side ssl_abstract_context::side() const { return state(*this, "ssl_abstract_context::side").side; }
ssl_implementation ssl_abstract_context::implementation() const {
  return state(*this, "ssl_abstract_context::implementation").implementation;
}
const ssl_context_options& ssl_abstract_context::options() const {
  return state(*this, "ssl_abstract_context::options").options;
}

ssl_abstract_context create_ssl_client_context(ssl_context_options options) {
  return build(std::move(options), ssl_side::client);
}

ssl_abstract_context create_ssl_server_context(ssl_context_options options) {
  return build(std::move(options), ssl_side::server);
}

void reset_ssl_abstract_context(const ssl_abstract_context& context) {
  state(context, "reset_ssl_abstract_context").reset();
}

}  // namespace comm
