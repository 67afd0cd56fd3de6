// comm — the SSL layer: implementations, abstract contexts, native references, connection facts.
//
// One abstract context (create_ssl_client_context / create_ssl_server_context) is realised by any
// available implementation (OpenSSL, GnuTLS; Apple's Security framework only on Apple platforms).
// Every live TLS connection (a socket_stream or an async_io_state with TLS attached: an
// "ssl_connection") hands out its implementation's own native handle as an `ssl_ref`, a
// std::variant that user code dispatches on with std::visit / std::get_if, as Lisp code uses typecase.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <utility>
#include <variant>
#include <vector>

#include "comm/errors.hpp"

// Native types, declared without including any TLS library's headers.
struct ssl_st;                               // OpenSSL SSL
struct ssl_ctx_st;                           // OpenSSL SSL_CTX
struct x509_st;                              // OpenSSL X509
struct gnutls_session_int;                   // *gnutls_session_t
struct gnutls_certificate_credentials_st;    // *gnutls_certificate_credentials_t
struct gnutls_x509_crt_int;                  // *gnutls_x509_crt_t
struct SSLContext;                           // Apple SSLContextRef = struct SSLContext*

namespace comm {

namespace detail {
class tls_engine;
struct abstract_context_impl;
}  // namespace detail

using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// Implementations
enum class ssl_implementation { openssl, gnutls, apple };
std::string_view to_string(ssl_implementation impl) noexcept;
bool ssl_implementation_available(ssl_implementation impl) noexcept;
ssl_implementation ssl_default_implementation() noexcept;
// Throws ssl_failure (ssl_errc::unavailable) naming the implementation when it is not available.
void set_ssl_default_implementation(ssl_implementation impl);

// ---------------------------------------------------------------------------------------------
// Native references. Borrowed: valid only while their connection (or context) is alive.
struct ssl_pointer {  // OpenSSL SSL*
  ssl_st* ptr = nullptr;
  friend bool operator==(const ssl_pointer&, const ssl_pointer&) = default;
};
struct ssl_ctx_pointer {  // OpenSSL SSL_CTX*
  ssl_ctx_st* ptr = nullptr;
  friend bool operator==(const ssl_ctx_pointer&, const ssl_ctx_pointer&) = default;
};
struct gnutls_session_ref {  // gnutls_session_t
  gnutls_session_int* ptr = nullptr;
  friend bool operator==(const gnutls_session_ref&, const gnutls_session_ref&) = default;
};
struct gnutls_credentials_ref {  // gnutls_certificate_credentials_t
  gnutls_certificate_credentials_st* ptr = nullptr;
  friend bool operator==(const gnutls_credentials_ref&, const gnutls_credentials_ref&) = default;
};
struct ssl_context_ref {  // Apple SSLContextRef (exists everywhere so portable code compiles)
  SSLContext* ptr = nullptr;
  friend bool operator==(const ssl_context_ref&, const ssl_context_ref&) = default;
};
// A live connection's native handle.
using ssl_ref = std::variant<ssl_pointer, gnutls_session_ref, ssl_context_ref>;
// A native context (what ctx configure callbacks receive).
using ssl_ctx_ref = std::variant<ssl_ctx_pointer, gnutls_credentials_ref, ssl_context_ref>;

// Adopted native connections: comm owns the handle from construction on and frees it exactly
// once (SSL_free / gnutls_deinit), when the connection closes or when attaching fails.
// Move-only. Constructing one from nullptr throws std::invalid_argument.
class adopted_ssl_pointer {
 public:
  explicit adopted_ssl_pointer(ssl_st* ssl);
  adopted_ssl_pointer(adopted_ssl_pointer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
  adopted_ssl_pointer& operator=(adopted_ssl_pointer&& o) noexcept;
  adopted_ssl_pointer(const adopted_ssl_pointer&) = delete;
  adopted_ssl_pointer& operator=(const adopted_ssl_pointer&) = delete;
  ~adopted_ssl_pointer();
  ssl_st* get() const noexcept { return ptr_; }
  ssl_st* release() noexcept { return std::exchange(ptr_, nullptr); }

 private:
  ssl_st* ptr_;
};
class adopted_gnutls_session {
 public:
  explicit adopted_gnutls_session(gnutls_session_int* session);
  adopted_gnutls_session(adopted_gnutls_session&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
  adopted_gnutls_session& operator=(adopted_gnutls_session&& o) noexcept;
  adopted_gnutls_session(const adopted_gnutls_session&) = delete;
  adopted_gnutls_session& operator=(const adopted_gnutls_session&) = delete;
  ~adopted_gnutls_session();
  gnutls_session_int* get() const noexcept { return ptr_; }
  gnutls_session_int* release() noexcept { return std::exchange(ptr_, nullptr); }

 private:
  gnutls_session_int* ptr_;
};

// A native certificate copied from a connection, owned by the caller (X509_free /
// gnutls_x509_crt_deinit on destruction). Move-only.
class native_certificate {
 public:
  using handle = std::variant<x509_st*, gnutls_x509_crt_int*>;
  explicit native_certificate(handle h) noexcept : h_(h) {}
  native_certificate(native_certificate&& o) noexcept : h_(std::exchange(o.h_, handle{})) {}
  native_certificate& operator=(native_certificate&& o) noexcept;
  native_certificate(const native_certificate&) = delete;
  native_certificate& operator=(const native_certificate&) = delete;
  ~native_certificate();
  const handle& get() const noexcept { return h_; }
  x509_st* x509() const noexcept;                 // nullptr unless OpenSSL
  gnutls_x509_crt_int* gnutls_crt() const noexcept;  // nullptr unless GnuTLS

 private:
  handle h_;
};

// ---------------------------------------------------------------------------------------------
// Connection facts
enum class ssl_protocol_version { unknown, v3, tls_v1, tls_v1_1, tls_v1_2, tls_v1_3 };
std::string_view to_string(ssl_protocol_version v) noexcept;  // "TLSv1.3", ...

enum class ssl_side { client, server, both };

struct verify_result {
  bool ok = false;
  long code = 0;  // the implementation's own: X509_V_ERR_* (OpenSSL), gnutls status bits (GnuTLS)
  verify_reason reason = verify_reason::other;
  std::string message;  // "certificate has expired", ...
  // The handshake took this verdict from the context's verified-chain cache (see
  // ssl_context_options::verified_chain_cache) instead of checking the chain again.
  bool from_cache = false;
};

struct certificate_data {
  std::string subject;              // one-line distinguished name
  std::string subject_common_name;
  std::string issuer;
  std::string issuer_common_name;
  std::string serial_number;        // hexadecimal, upper case, no separators
  std::chrono::system_clock::time_point not_before, not_after;
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries, as text
  std::string pem;
};

// ---------------------------------------------------------------------------------------------
// The "SSL connection" of the model: a socket_stream or an async_io_state. Non-copyable base.
class ssl_connection {
 public:
  ssl_connection() = default;
  ssl_connection(const ssl_connection&) = delete;
  ssl_connection& operator=(const ssl_connection&) = delete;
  virtual ~ssl_connection() = default;
  // Whether TLS is attached now.
  bool is_ssl() const noexcept { return tls_engine_() != nullptr; }
  // The engine driving TLS, or nullptr. Not for users (the type is internal).
  virtual detail::tls_engine* tls_engine_() const noexcept = 0;
};

// Callbacks (the model's keyword callbacks).
using password_callback = std::function<std::string()>;
// Sees the implementation's verdict and may override it: return true to accept.
using verify_callback = std::function<bool(ssl_connection&, const verify_result&)>;
// Server: called with the SNI name (empty if none) before the certificate is chosen.
struct client_hello_decision;
using client_hello_callback = std::function<client_hello_decision(ssl_connection&, std::string_view server_name)>;
// Client: the server asked for a certificate; return false to fail the handshake.
using cert_request_callback = std::function<bool(ssl_connection&)>;
using ctx_configure_callback = std::function<void(ssl_ctx_ref)>;
using ssl_configure_callback = std::function<void(ssl_ref)>;
using openssl_ctx_configure_callback = std::function<void(ssl_ctx_pointer)>;
using openssl_ssl_configure_callback = std::function<void(ssl_pointer)>;
using gnutls_credentials_configure_callback = std::function<void(gnutls_credentials_ref)>;
using gnutls_session_configure_callback = std::function<void(gnutls_session_ref)>;
using apple_configure_callback = std::function<void(ssl_context_ref)>;
// One line of the NSS key log format for each secret of a connection ("CLIENT_RANDOM <client
// random> <master secret>" for TLS 1.2, "<label> <client random> <secret>" for TLS 1.3), in hex
// without a newline: what Wireshark reads to decrypt a capture. For debugging only.
using keylog_callback = std::function<void(const ssl_connection&, std::string_view line)>;

enum class peer_verification { none, optional, required };

struct protocol_versions {
  ssl_protocol_version min = ssl_protocol_version::tls_v1_2;
  std::optional<ssl_protocol_version> max{};  // none = the newest the implementation has
};

// The model's keywords of create-ssl-client-context / create-ssl-server-context. One struct for
// both sides: an option that belongs to the other side is rejected at creation, naming it.
struct ssl_context_options {
  std::string name{};
  std::optional<ssl_implementation> implementation{};  // none = ssl_default_implementation()
  // Own certificate and key (files, or PEM text in memory).
  std::string cert_file{};  // full chain, leaf first
  std::string key_file{};
  std::string cert_pem{};
  std::string key_pem{};
  std::string password{};
  comm::password_callback password_callback{};
  // Trust.
  std::string trusted_file{};
  std::string trusted_directory{};
  std::string trusted_pem{};
  std::optional<bool> use_system_trusted{};  // none: client yes unless another trust source is given
  // Certificate revocation lists (PEM; a file or text may hold several). When one is given, the
  // peer's own certificate must not be revoked by a CRL of its issuer: ssl_verification_failure
  // with verify_reason::revoked. Both implementations then also want a CRL from the issuer of the
  // peer's certificate, signed by it and in force (else ssl_verification_failure with
  // verify_reason::other "unable to get certificate CRL" or "CRL signature failure",
  // verify_reason::expired "CRL has expired", verify_reason::not_yet_valid "CRL is not yet
  // valid"). Only the peer's own certificate is checked (OpenSSL's X509_V_FLAG_CRL_CHECK, not
  // X509_V_FLAG_CRL_CHECK_ALL), with both implementations: intermediates are not checked against
  // CRLs, need none, and a CRL revoking an intermediate has no effect.
  std::string crl_file{};
  std::string crl_pem{};
  // Verification: default client = required (chain + host name), server = none.
  std::optional<peer_verification> verify{};
  bool check_host_name = true;  // client: host name / IP SAN check against the name connected to
  comm::verify_callback verify_callback{};
  // Verified-chain cache. Once a peer's chain has verified (chain to a trusted root, host name,
  // purpose, validity), the same certificate bytes for the same host name are accepted again by
  // this context without repeating those checks, for at most this long and never past the earliest
  // notAfter of the peer's certificates; the checks of the first verification then stand. Every
  // handshake still checks the peer's proof of its key and runs verify_callback (which sees
  // verify_result::from_cache). Failures are never cached. Not used with CRLs, with native
  // configure callbacks in these options, or on a connection given a ctx_configure_callback or
  // ssl_configure_callback (these may change what verification means). 0 = off.
  std::chrono::seconds verified_chain_cache{60};
  protocol_versions protocol_version{};
  std::vector<std::string> alpn_protocols{};  // in preference order
  std::string ciphers{};       // TLS 1.2 cipher list (implementation syntax)
  std::string ciphersuites{};  // TLS 1.3 suites (OpenSSL syntax)
  std::string groups{};        // "X25519:P-256"
  bool session_resumption = true;  // client: cache sessions per host:port; server: tickets
  // Client only.
  std::string tlsext_host_name{};  // SNI (default: the host connected to, if it is a name)
  comm::cert_request_callback cert_request_callback{};
  // Server only.
  comm::client_hello_callback client_hello_callback{};
  std::string dh_file{};
  // Per-implementation configure callbacks.
  comm::openssl_ctx_configure_callback openssl_ctx_configure_callback{};
  comm::openssl_ssl_configure_callback openssl_ssl_configure_callback{};
  comm::gnutls_credentials_configure_callback gnutls_credentials_configure_callback{};
  comm::gnutls_session_configure_callback gnutls_session_configure_callback{};
  comm::apple_configure_callback apple_configure_callback{};
  // Debugging: receives the key log lines of every connection made with the context (anyone
  // holding them can decrypt the traffic). Empty = off, the default.
  comm::keylog_callback keylog_callback{};
};

// Implementation-neutral, immutable once built, shareable across threads and connections.
class ssl_abstract_context {
 public:
  ssl_abstract_context() = default;  // empty
  explicit operator bool() const noexcept { return impl_ != nullptr; }
  const std::string& name() const;
  ssl_side side() const;
  ssl_implementation implementation() const;
  const ssl_context_options& options() const;
  const std::shared_ptr<detail::abstract_context_impl>& impl() const noexcept { return impl_; }
  explicit ssl_abstract_context(std::shared_ptr<detail::abstract_context_impl> impl) : impl_(std::move(impl)) {}

 private:
  std::shared_ptr<detail::abstract_context_impl> impl_;
};

struct client_hello_decision {
  bool accept = true;
  ssl_abstract_context use_context;  // empty = keep the current one; must be the same implementation
};

// Build contexts. Files are read (and the key decrypted) now, so a bad path or a wrong password is
// an error here: ssl_error naming the file and the library's reason; an option of the wrong side
// or one the implementation cannot honour: ssl_failure (ssl_errc::invalid_argument) naming it.
ssl_abstract_context create_ssl_client_context(ssl_context_options options = {});
ssl_abstract_context create_ssl_server_context(ssl_context_options options);
// Drops cached native contexts; files are read again on next use (certificate rotation).
void reset_ssl_abstract_context(const ssl_abstract_context& context);

// "A default context" for the side (the model's symbol values of :ssl-ctx). Clients verify against
// the system store with the secure defaults; servers need their certificate set by a configure callback.
enum class ssl_protocol_keyword { default_, tls_v1_2, tls_v1_3 };

// What the :ssl-ctx keyword accepts. Borrowed native contexts are never freed by comm; adopted
// native connections are owned by comm from the call on.
using ssl_ctx_spec = std::variant<std::monostate, ssl_abstract_context, ssl_protocol_keyword, ssl_ctx_pointer,
                                  adopted_ssl_pointer, adopted_gnutls_session, ssl_context_ref>;
// Where a failed connect would leave nothing to free an adopted handle (open_tcp_stream, async
// connect), only these are accepted: passing an adopted handle there does not compile.
using client_ssl_ctx_spec = std::variant<std::monostate, ssl_abstract_context, ssl_protocol_keyword, ssl_ctx_pointer>;

struct attach_ssl_options {
  ssl_ctx_spec ssl_ctx = ssl_protocol_keyword::default_;
  comm::ssl_side ssl_side = comm::ssl_side::server;  // the model's default
  comm::ctx_configure_callback ctx_configure_callback{};  // native context (not for adopted handles)
  comm::ssl_configure_callback ssl_configure_callback{};  // native connection, before the handshake
  std::optional<milliseconds> handshake_timeout{};
  std::string tlsext_host_name{};  // SNI; also the name verified when host_name is empty
  std::string host_name{};         // name (or IP text) the certificate must match (client)
  std::string session_key{};       // client session cache key ("host:port"); empty = no resumption
  bool defer_handshake = false;  // true: handshake on first I/O or socket_stream_handshake
};

struct detach_ssl_options {
  std::optional<int> retry_count = 5;  // none: do not insist on a clean close_notify exchange
  milliseconds retry_timeout{100};
};

// Connection functions (on socket_stream or async_io_state). All throw ssl_failure with
// ssl_errc::not_ssl on a connection without TLS.
ssl_ref ssl_connection_ssl_ref(const ssl_connection& conn);
ssl_ctx_ref ssl_connection_ctx_ref(const ssl_connection& conn);
ssl_implementation ssl_connection_implementation(const ssl_connection& conn);
// Native reference back to its open connection (matched by address); nullptr when none is open.
ssl_connection* find_ssl_connection_from_ssl_ref(const ssl_ref& ref) noexcept;
ssl_protocol_version ssl_connection_protocol_version(const ssl_connection& conn);
std::string ssl_connection_cipher(const ssl_connection& conn);
std::string ssl_connection_alpn_protocol(const ssl_connection& conn);  // empty = none agreed
std::string ssl_connection_server_name(const ssl_connection& conn);    // SNI (as seen by a server)
bool ssl_connection_session_reused(const ssl_connection& conn);
verify_result ssl_connection_verify(const ssl_connection& conn);
std::vector<certificate_data> ssl_connection_get_peer_certificates_data(const ssl_connection& conn);
std::vector<native_certificate> ssl_connection_copy_peer_certificates(const ssl_connection& conn);
struct read_certificates_options {
  std::string cert_file{};
  std::string password{};
  comm::password_callback password_callback{};
};
void ssl_connection_read_certificates(ssl_connection& conn, const std::string& key_file,
                                      const read_certificates_options& options = {});

// Makes a throwaway CA and a certificate for `host_name` (DNS and, if numeric, IP SAN), in memory.
// Used by `commcat demo` and handy in tests. PEM strings; keys are ECDSA P-256.
struct demo_credentials {
  std::string ca_cert_pem;
  std::string cert_pem;  // leaf
  std::string key_pem;
};
demo_credentials make_demo_credentials(const std::string& host_name = "localhost");

}  // namespace comm
