// The TLS engine interface: one per live TLS connection, independent of any TLS library and of
// how bytes move. socket_stream (blocking, with poll) and async_io_state (epoll) both drive it.
//
// The engine pulls and pushes ciphertext through a `transport` that never blocks: a read or write
// that cannot proceed returns would_block, and the engine reports what it needs next
// (want_input / want_output). The driver waits for that readiness and calls the same operation
// again. The engine never reads ahead of the current record, so after a close_notify exchange the
// plain bytes that follow stay in the socket (detach_ssl relies on this).
#pragma once

#include <atomic>
#include <cerrno>
#include <cstring>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/tls.hpp"
#include "tls/verified_chain_cache.hpp"

namespace comm::detail {

// Ciphertext I/O under the engine. Implementations: a non-blocking socket (tls/socket_transport),
// memory buffers (fuzzing, tests).
struct io_result {
  std::size_t bytes = 0;
  int error = 0;  // 0 = ok (bytes == 0 on read = orderly EOF); EAGAIN = would block; else errno
  bool would_block() const noexcept { return error == EAGAIN || error == EWOULDBLOCK; }
};
class transport {
 public:
  virtual ~transport() = default;
  virtual io_result read(void* data, std::size_t size) = 0;
  virtual io_result write(const void* data, std::size_t size) = 0;
};

enum class tls_status {
  done,         // the operation completed; `bytes` says how much (read/write)
  want_input,   // wait until the transport is readable, then call the same operation again
  want_output,  // wait until the transport is writable, then call again
  closed,       // the peer sent close_notify (read: clean end of stream)
  error,        // failed; error() has the ssl_condition (or socket_io_error) to throw
};
struct tls_result {
  tls_status status = tls_status::done;
  std::size_t bytes = 0;
};

class tls_engine {
 public:
  virtual ~tls_engine() = default;
  virtual ssl_implementation implementation() const noexcept = 0;

  virtual tls_result handshake() = 0;
  virtual bool handshake_done() const noexcept = 0;
  // read/write run the handshake first when it is not done yet.
  virtual tls_result read(void* data, std::size_t size) = 0;
  // May write fewer bytes than asked (done with bytes < size); retry the rest.
  // After want_*, call again with the same (or an extended) buffer.
  virtual tls_result write(const void* data, std::size_t size) = 0;
  // Sends close_notify (done when it is sent). Call again after the peer's close_notify has been
  // read (read() returned closed) — or use shutdown_received() to poll for it — for a full exchange.
  virtual tls_result shutdown() = 0;
  virtual bool close_notify_received() const noexcept = 0;
  virtual bool close_notify_sent() const noexcept = 0;
  // Decrypted bytes readable without touching the transport.
  virtual std::size_t pending() const noexcept = 0;
  // The error after a tls_status::error, as an exception to throw (never null after an error).
  // `operation` and `peer` name what failed in the message ("TLS handshake with 127.0.0.1:443").
  virtual std::exception_ptr error(const std::string& operation, const std::string& peer) const = 0;
  // For ssl_side::both: choose the role before the handshake.
  virtual void set_connect_state() = 0;
  virtual void set_accept_state() = 0;
  virtual bool is_client() const noexcept = 0;  // the role chosen (false before one is)

  // Native handles and connection facts.
  virtual ssl_ref native() const noexcept = 0;
  virtual ssl_ctx_ref native_context() const noexcept = 0;
  virtual ssl_protocol_version protocol_version() const = 0;
  virtual std::string cipher() const = 0;
  virtual std::string alpn_protocol() const = 0;
  virtual std::string server_name() const = 0;
  virtual bool session_reused() const = 0;
  virtual verify_result verify() const = 0;
  virtual std::vector<certificate_data> peer_certificates_data() const = 0;
  virtual std::vector<native_certificate> copy_peer_certificates() const = 0;
  virtual void read_certificates(const std::string& key_file, const read_certificates_options& options) = 0;

  // The connection object that owns this engine (for callbacks and errors); updated on move.
  ssl_connection* owner = nullptr;
};

// A TLS 1.3 client past its handshake: the server's session tickets may still be on their way (a
// close must not let them meet a closed socket while bytes are unsent; see wait_until_sent).
inline bool tickets_may_come(const tls_engine& e) noexcept {
  try {
    return e.is_client() && e.handshake_done() && e.protocol_version() == ssl_protocol_version::tls_v1_3;
  } catch (...) {
    return false;
  }
}

// "TLS handshake with 127.0.0.1:443", "TLS read from 127.0.0.1:443": the start of an engine's error
// message. Drivers pass either the bare operation ("TLS read") or one ending in its preposition.
inline std::string describe_operation(const std::string& operation, const std::string& peer) {
  if (peer.empty()) return operation;
  for (const char* p : {" with", " from", " to", " on"}) {
    const std::string suffix = p;
    if (operation.size() >= suffix.size() && operation.compare(operation.size() - suffix.size(), suffix.size(), suffix) == 0)
      return operation + " " + peer;
  }
  return operation + (operation.rfind("TLS read", 0) == 0 ? " from " : " with ") + peer;
}

// The error for a transport that failed under a TLS connection, as the engines report it: the
// peer resetting or going away is a truncation (no close_notify came), anything else a socket
// error. `where` is describe_operation's text.
inline std::exception_ptr transport_failure(int error, const std::string& where, const ssl_connection* conn) {
  if (error == ECONNRESET || error == EPIPE)
    return std::make_exception_ptr(ssl_failure(ssl_errc::truncated,
                                               where + ": connection truncated (no close_notify): " + std::strerror(error),
                                               {ssl_code_kind::truncated, 0}, conn));
  return std::make_exception_ptr(
      socket_io_error(std::error_code(error, std::generic_category()), where + ": " + std::strerror(error), conn));
}

// Everything an engine needs besides its context.
struct engine_params {
  ssl_side side = ssl_side::client;
  std::string sni;          // client: SNI to send (not an IP literal)
  std::string host_name;    // client: name or IP text to verify; empty = no host check
  std::string session_key;  // client: resumption cache key; empty = none
  comm::ctx_configure_callback ctx_configure;  // from attach options
  comm::ssl_configure_callback ssl_configure;
  ssl_connection* owner = nullptr;
};

// A context realised by one implementation (an SSL_CTX, gnutls credentials, ...) from an
// abstract context's options; cached in the abstract context until reset.
class backend_context {
 public:
  virtual ~backend_context() = default;
  virtual ssl_ctx_ref native() const noexcept = 0;

  // The verified-chain cache, or null: off in the options, CRLs given, or native objects open to
  // user callbacks. A connection's ctx_configure_callback may change the shared native context,
  // so after one has run the cache is never used again.
  std::unique_ptr<verified_chain_cache> chain_cache;
  std::atomic<bool> configured_natively{false};
  verified_chain_cache* usable_chain_cache() const noexcept {
    return configured_natively.load(std::memory_order_relaxed) ? nullptr : chain_cache.get();
  }
  static std::unique_ptr<verified_chain_cache> make_chain_cache(const ssl_context_options& o, bool native_callbacks) {
    if (o.verified_chain_cache.count() <= 0 || native_callbacks || !o.crl_file.empty() || !o.crl_pem.empty())
      return nullptr;
    return std::make_unique<verified_chain_cache>(o.verified_chain_cache);
  }
};

// One per implementation. Adding an implementation = a folder with one of these.
class tls_backend {
 public:
  virtual ~tls_backend() = default;
  virtual ssl_implementation id() const noexcept = 0;
  // Reads files, decrypts keys, applies every option or rejects it (ssl_failure naming it).
  virtual std::shared_ptr<backend_context> realize(const ssl_context_options& options, ssl_side side) const = 0;
  virtual std::unique_ptr<tls_engine> create_engine(std::shared_ptr<backend_context> context,
                                                    const ssl_context_options& options,
                                                    const engine_params& params, transport& t) const = 0;
  // A default context for the keyword (secure client defaults; a server one needs configuring).
  virtual std::unique_ptr<tls_engine> create_default_engine(ssl_protocol_keyword keyword,
                                                            const engine_params& params,
                                                            transport& t) const = 0;
};

// The backends this build has (nullptr when unavailable).
const tls_backend* find_backend(ssl_implementation impl) noexcept;
// Each implementation folder provides its backend (nullptr when that implementation is unavailable).
const tls_backend* openssl_backend_instance() noexcept;
const tls_backend* gnutls_backend_instance() noexcept;
// Frees native certificates for native_certificate (defined in the implementation folders).
void openssl_free_x509(x509_st* cert) noexcept;
void gnutls_free_certificate(gnutls_x509_crt_int* cert) noexcept;

// Implementation-specific native entry points (defined in the implementation folders).
std::unique_ptr<tls_engine> openssl_engine_from_ctx(ssl_ctx_st* borrowed, const engine_params& params, transport& t);
std::unique_ptr<tls_engine> openssl_engine_adopt(adopted_ssl_pointer ssl, const engine_params& params, transport& t);
std::unique_ptr<tls_engine> gnutls_engine_adopt(adopted_gnutls_session session, const engine_params& params,
                                                transport& t);
// The GnuTLS backend (tls/gnutls), and the free function behind native_certificate's destructor.
const tls_backend* gnutls_backend_instance() noexcept;
void gnutls_free_certificate(gnutls_x509_crt_int* crt) noexcept;

// The central dispatch on the :ssl-ctx value (tls/attach.cpp): builds the engine for a spec.
// Consumes adopted handles (freed on failure too). Throws ssl_condition.
std::unique_ptr<tls_engine> make_engine(ssl_ctx_spec&& spec, const engine_params& params, transport& t);

// Registry behind find_ssl_connection_from_ssl_ref: engines register while their connection is open.
void register_connection(const ssl_ref& ref, ssl_connection* conn);
void unregister_connection(const ssl_ref& ref) noexcept;
// Engines register themselves: the lookup answers engine->owner, which follows moves of the stream.
void register_engine(const ssl_ref& ref, const tls_engine* engine);

// The abstract context's shared state.
struct abstract_context_impl {
  ssl_context_options options;
  ssl_side side = ssl_side::client;
  ssl_implementation implementation = ssl_implementation::openssl;
  // Returns the cached realisation for the context's implementation, realising it if needed.
  std::shared_ptr<backend_context> realized() const;
  void reset() const;
  mutable std::mutex mutex;
  mutable std::shared_ptr<backend_context> cache;
  // Wipes the secrets kept for re-reading on reset (password, key_pem) before they are freed.
  ~abstract_context_impl();
};

}  // namespace comm::detail
