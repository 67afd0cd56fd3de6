// Shared by the OpenSSL implementation's files (and nothing outside src/tls/openssl):
// RAII handles, the realised context, error-queue and verification helpers.
#pragma once

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tls/engine.hpp"

namespace comm::detail::ossl {

template <class T, void (*F)(T*)>
struct deleter {
  void operator()(T* p) const noexcept { F(p); }
};
using ctx_ptr = std::unique_ptr<SSL_CTX, deleter<SSL_CTX, SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, deleter<SSL, SSL_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509, X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY, EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO, BIO_free_all>>;
using session_ptr = std::unique_ptr<SSL_SESSION, deleter<SSL_SESSION, SSL_SESSION_free>>;

// Drains the thread's error queue: "reason; reason" (empty if none); *first = the first code.
std::string drain_error_queue(unsigned long* first = nullptr);

// SSL_get_error explains a call only if the thread's error queue was empty before it (it looks at
// ERR_peek_error). The queue almost always is: ERR_clear_error would still walk all its 16 slots,
// freeing two null pointers in each, on every record (3-4 % of an echo server's CPU).
inline void empty_error_queue() noexcept {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

verify_reason reason_from_x509(long code) noexcept;
verify_result make_verify_result(long code, bool have_certificate);

// Per-connection state the context's callbacks need (kept in the SSL's ex_data).
struct engine_state {
  tls_engine* engine = nullptr;  // for ->owner
  std::string session_key;       // client resumption cache key
  // A user callback that threw or refused: reported by the engine instead of the library's text.
  std::exception_ptr callback_error;
  ssl_code refused_by;  // client_hello_callback / cert_request_callback / verify_callback
  std::shared_ptr<backend_context> switched_context;  // chosen by the client hello callback
  // Verified-chain cache: allowed unless a configure callback had the SSL; the name checked.
  bool chain_cache_allowed = false;
  std::string verify_host;
  bool verified_from_cache = false;  // this handshake's verdict came from the cache
};
int engine_state_index();
engine_state* state_of(const SSL* ssl) noexcept;

// Wipes a secret's whole buffer (up to the capacity, where older contents may linger) with a write
// the compiler may not drop, then frees it.
inline void wipe_secret(std::string& s) noexcept {
  s.resize(s.capacity());  // never reallocates
  OPENSSL_cleanse(s.data(), s.size());
  std::string().swap(s);
}
// The realised copy of the options keeps no key password, password callback or key PEM: the key is
// loaded from the abstract context's options, which keep them for reset_ssl_abstract_context.
inline void forget_secrets(ssl_context_options& o) noexcept {
  wipe_secret(o.password);
  wipe_secret(o.key_pem);
  o.password_callback = nullptr;
}

// An SSL_CTX realised from an abstract context's options (or a default for a keyword).
class openssl_context final : public backend_context {
 public:
  ctx_ptr ctx;
  ssl_context_options options;  // a copy (callbacks must outlive the abstract context), secrets removed
  ssl_side side = ssl_side::client;
  std::vector<unsigned char> alpn_wire;  // length-prefixed protocol list

  ssl_ctx_ref native() const noexcept override { return ssl_ctx_pointer{ctx.get()}; }

  // Client session cache, keyed by "host:port".
  void store_session(const std::string& key, SSL_SESSION* session);  // takes the reference
  session_ptr find_session(const std::string& key) const;           // a new reference

 private:
  mutable std::mutex sessions_mutex_;
  std::map<std::string, session_ptr> sessions_;
};
int context_index();
openssl_context* context_of(const SSL_CTX* ctx) noexcept;

// require_identity: a server context must end up with a certificate (abstract contexts).
std::shared_ptr<openssl_context> realize_context(const ssl_context_options& options, ssl_side side,
                                                 bool require_identity);

// Loads a PEM private key (file or text) with the password / callback; ssl_error naming the source.
pkey_ptr load_private_key(const std::string& file, const std::string& pem, const std::string& password,
                          const password_callback& callback, const std::string& operation);

enum class engine_origin { abstract_context, default_context, borrowed_context, adopted };
std::unique_ptr<tls_engine> make_openssl_engine(ssl_ptr ssl, std::shared_ptr<openssl_context> context,
                                                engine_origin origin, const engine_params& params, transport& t);

}  // namespace comm::detail::ossl
