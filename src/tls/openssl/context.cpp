// Realising an abstract context as an SSL_CTX: files, keys, trust, verification policy, ALPN,
// versions, ciphers, resumption and the model's callbacks.
#include <openssl/pem.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <vector>

#include "tls/openssl/common.hpp"
#include "tls/openssl/crl.hpp"

namespace comm::detail::ossl {

int engine_state_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
engine_state* state_of(const SSL* ssl) noexcept {
  return static_cast<engine_state*>(SSL_get_ex_data(ssl, engine_state_index()));
}
int context_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
openssl_context* context_of(const SSL_CTX* ctx) noexcept {
  return static_cast<openssl_context*>(SSL_CTX_get_ex_data(ctx, context_index()));
}

void openssl_context::store_session(const std::string& key, SSL_SESSION* session) {
  std::lock_guard lock(sessions_mutex_);
  sessions_[key].reset(session);
}
session_ptr openssl_context::find_session(const std::string& key) const {
  std::lock_guard lock(sessions_mutex_);
  auto it = sessions_.find(key);
  if (it == sessions_.end() || !SSL_SESSION_is_resumable(it->second.get())) return nullptr;
  SSL_SESSION_up_ref(it->second.get());
  return session_ptr(it->second.get());
}

namespace {

[[noreturn]] void library_failure(const std::string& what) {
  unsigned long code = 0;
  std::string text = drain_error_queue(&code);
  throw ssl_error(ssl_errc::library_error, what + (text.empty() ? "" : ": " + text), {ssl_code_kind::library, long(code)});
}
[[noreturn]] void invalid(const std::string& operation, const std::string& why) {
  ERR_clear_error();
  throw ssl_failure(ssl_errc::invalid_argument, operation + ": " + why);
}

constexpr const char* default_tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

int to_openssl_version(ssl_protocol_version v) {
  switch (v) {
    case ssl_protocol_version::v3: return SSL3_VERSION;
    case ssl_protocol_version::tls_v1: return TLS1_VERSION;
    case ssl_protocol_version::tls_v1_1: return TLS1_1_VERSION;
    case ssl_protocol_version::tls_v1_2: return TLS1_2_VERSION;
    case ssl_protocol_version::tls_v1_3: return TLS1_3_VERSION;
    case ssl_protocol_version::unknown: return 0;
  }
  return 0;
}

struct password_source {
  const std::string* password;
  const password_callback* callback;
  std::exception_ptr error;
};
int password_cb(char* buf, int size, int, void* user) {
  auto* src = static_cast<password_source*>(user);
  std::string pw;
  try {
    pw = (src->callback && *src->callback) ? (*src->callback)() : *src->password;
  } catch (...) {
    src->error = std::current_exception();
    return -1;
  }
  if (pw.size() > static_cast<std::size_t>(size)) return -1;
  std::memcpy(buf, pw.data(), pw.size());
  OPENSSL_cleanse(pw.data(), pw.size());
  return static_cast<int>(pw.size());
}

// Whole-chain verification in one place, so the user's callback runs once per handshake with the
// final verdict (including the host name check) and may override it.
// The verified-chain cache key of the chain under verification (the peer's certificates as sent,
// leaf first), or "" when it cannot be had.
std::string chain_key(const engine_state& st, ssl_side side, X509_STORE_CTX* store) {
  std::string key = verified_chain_cache::key(side, st.verify_host);
  const STACK_OF(X509)* sent = X509_STORE_CTX_get0_untrusted(store);
  X509* leaf = X509_STORE_CTX_get0_cert(store);
  if (leaf == nullptr) return {};
  const int n = sent != nullptr ? sk_X509_num(sent) : 0;
  std::vector<unsigned char> der;
  for (int i = -1; i < n; ++i) {
    X509* x = i < 0 ? leaf : sk_X509_value(sent, i);
    if (i == 0 && x == leaf) continue;  // the stack starts with the leaf
    const int len = i2d_X509(x, nullptr);
    if (len <= 0) return {};
    der.resize(static_cast<std::size_t>(len));
    unsigned char* p = der.data();
    if (i2d_X509(x, &p) != len) return {};
    verified_chain_cache::add_certificate(key, der);
  }
  return key;
}

// The earliest notAfter of the verified chain (trust anchor included).
verified_chain_cache::clock::time_point chain_not_after(X509_STORE_CTX* store) {
  auto earliest = verified_chain_cache::clock::time_point::max();
  const STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(store);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(chain, i)), &tm) != 1)
      return verified_chain_cache::clock::time_point::min();  // unknown: not cached
    earliest = std::min(earliest, verified_chain_cache::clock::from_time_t(timegm(&tm)));
  }
  return chain != nullptr ? earliest : verified_chain_cache::clock::time_point::min();
}

// X509_verify_cert, or the verified-chain cache's earlier verdict for the same chain and name.
int verify_chain(openssl_context* c, engine_state* st, X509_STORE_CTX* store) {
  verified_chain_cache* cache = c != nullptr && st != nullptr && st->chain_cache_allowed ? c->usable_chain_cache() : nullptr;
  if (st != nullptr) st->verified_from_cache = false;
  if (cache == nullptr) return X509_verify_cert(store);
  const auto now = verified_chain_cache::clock::now();
  std::string key = chain_key(*st, c->side, store);
  if (!key.empty() && cache->contains(key, now)) {
    st->verified_from_cache = true;
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
  }
  const int rc = X509_verify_cert(store);
  if (rc > 0 && !key.empty() && X509_STORE_CTX_get_error(store) == X509_V_OK)
    cache->insert(std::move(key), now, chain_not_after(store));
  return rc;
}

int cert_verify_cb(X509_STORE_CTX* store, void*) {
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  openssl_context* c = ssl ? context_of(SSL_get_SSL_CTX(ssl)) : nullptr;
  engine_state* st = ssl ? state_of(ssl) : nullptr;
  const int rc = verify_chain(c, st, store);
  // The verdict is the store's error code. What checking a signature left on the error queue (an
  // EVP error for a CRL signed by another key) must not stand in front of the handshake's
  // "certificate verify failed", which makes the failure an ssl_verification_failure.
  if (rc >= 0) ERR_clear_error();
  int ok = rc > 0 ? 1 : 0;
  if (c == nullptr || st == nullptr) return ok;
  const verify_callback& user = c->options.verify_callback;
  if (user) {
    if (st->engine == nullptr || st->engine->owner == nullptr) return ok;
    verify_result r = make_verify_result(X509_STORE_CTX_get_error(store), true);
    r.from_cache = st->verified_from_cache;
    bool accept = false;
    try {
      accept = user(*st->engine->owner, r);
    } catch (...) {
      st->callback_error = std::current_exception();
    }
    if (!accept) {
      st->refused_by = {ssl_code_kind::verify_callback, 0};
      X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
      return 0;
    }
    return 1;  // accepted: SSL_get_verify_result still tells the library's own verdict
  }
  // "optional": ask for (and check) a certificate but let the handshake go on.
  const peer_verification mode = c->options.verify.value_or(
      c->side == ssl_side::client ? peer_verification::required : peer_verification::none);
  return mode == peer_verification::required ? ok : 1;
}

int alpn_select_cb(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                   unsigned int inlen, void*) {
  openssl_context* c = context_of(SSL_get_SSL_CTX(ssl));
  if (c == nullptr || c->alpn_wire.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, c->alpn_wire.data(), static_cast<unsigned>(c->alpn_wire.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // no overlap: no_application_protocol
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

int servername_cb(SSL* ssl, int* alert, void*) {
  openssl_context* c = context_of(SSL_get_SSL_CTX(ssl));
  engine_state* st = state_of(ssl);
  if (c == nullptr || st == nullptr || !c->options.client_hello_callback) return SSL_TLSEXT_ERR_OK;
  if (st->engine == nullptr || st->engine->owner == nullptr) return SSL_TLSEXT_ERR_OK;
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  try {
    client_hello_decision d = c->options.client_hello_callback(*st->engine->owner, name ? name : "");
    if (!d.accept) {
      st->refused_by = {ssl_code_kind::client_hello_callback, 0};
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (d.use_context) {
      if (d.use_context.implementation() != ssl_implementation::openssl)
        throw ssl_failure(ssl_errc::invalid_argument,
                          "client_hello_callback: the chosen context uses " +
                              std::string(to_string(d.use_context.implementation())) + ", not openssl");
      auto other = d.use_context.impl()->realized();
      auto* oc = dynamic_cast<openssl_context*>(other.get());
      if (oc == nullptr || SSL_set_SSL_CTX(ssl, oc->ctx.get()) == nullptr)
        throw ssl_failure(ssl_errc::failure, "client_hello_callback: could not switch to the chosen context");
      // SSL_set_SSL_CTX takes the certificate only; the verification policy of the new context too.
      SSL_set_verify(ssl, SSL_CTX_get_verify_mode(oc->ctx.get()), nullptr);
      st->switched_context = std::move(other);
    }
    return SSL_TLSEXT_ERR_OK;
  } catch (...) {
    st->callback_error = std::current_exception();
    st->refused_by = {ssl_code_kind::client_hello_callback, 0};
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
}

int cert_cb(SSL* ssl, void*) {
  openssl_context* c = context_of(SSL_get_SSL_CTX(ssl));
  engine_state* st = state_of(ssl);
  if (c == nullptr || st == nullptr || !c->options.cert_request_callback || SSL_is_server(ssl)) return 1;
  if (st->engine == nullptr || st->engine->owner == nullptr) return 1;
  try {
    if (c->options.cert_request_callback(*st->engine->owner)) return 1;
  } catch (...) {
    st->callback_error = std::current_exception();
  }
  st->refused_by = {ssl_code_kind::cert_request_callback, 0};
  return 0;
}

int new_session_cb(SSL* ssl, SSL_SESSION* session) {
  openssl_context* c = context_of(SSL_get_SSL_CTX(ssl));
  engine_state* st = state_of(ssl);
  if (c == nullptr || st == nullptr || st->session_key.empty()) return 0;
  // A copy, not the connection's own object: OpenSSL marks that one not resumable when the
  // connection ends without close_notify (SSL_free after an abort), which would drop it from the
  // cache although the ticket in it is still good.
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) return 0;
  c->store_session(st->session_key, copy);  // takes the copy; frees the one it replaces
  return 0;  // OpenSSL keeps (and frees) its own reference to `session`
}

void keylog_cb(const SSL* ssl, const char* line) {
  openssl_context* c = context_of(SSL_get_SSL_CTX(ssl));
  engine_state* st = state_of(ssl);
  if (c == nullptr || st == nullptr || !c->options.keylog_callback) return;
  if (st->engine == nullptr || st->engine->owner == nullptr) return;
  try {
    c->options.keylog_callback(*st->engine->owner, line);
  } catch (...) {
    // A debugging aid must not change the connection's outcome.
  }
}

std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protocols, const std::string& op) {
  std::vector<unsigned char> wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) invalid(op, "option alpn_protocols: '" + p + "' is not a valid protocol name");
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

// From the abstract context's options `o`: the realised copy has no key password or key PEM.
void load_identity(openssl_context& c, const ssl_context_options& o, const std::string& op) {
  SSL_CTX* ctx = c.ctx.get();
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1)
      library_failure(op + ": cannot use certificate file " + o.cert_file);
  } else if (!o.cert_pem.empty()) {
    bio_ptr bio(BIO_new_mem_buf(o.cert_pem.data(), static_cast<int>(o.cert_pem.size())));
    x509_ptr leaf(PEM_read_bio_X509_AUX(bio.get(), nullptr, nullptr, nullptr));
    if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1) library_failure(op + ": cannot use cert_pem");
    while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
        X509_free(extra);
        library_failure(op + ": cannot add a chain certificate from cert_pem");
      }
    }
    ERR_clear_error();  // the loop ends on "no start line"
  } else {
    return;
  }
  pkey_ptr key = load_private_key(o.key_file, o.key_pem, o.password, o.password_callback, op);
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) library_failure(op + ": cannot use the private key");
  if (SSL_CTX_check_private_key(ctx) != 1) library_failure(op + ": the private key does not match the certificate");
}

void load_trust(openssl_context& c, const std::string& op) {
  const auto& o = c.options;
  SSL_CTX* ctx = c.ctx.get();
  if (!o.trusted_file.empty() || !o.trusted_directory.empty()) {
    const char* file = o.trusted_file.empty() ? nullptr : o.trusted_file.c_str();
    const char* dir = o.trusted_directory.empty() ? nullptr : o.trusted_directory.c_str();
    if (SSL_CTX_load_verify_locations(ctx, file, dir) != 1)
      library_failure(op + ": cannot load trusted certificates from " + (file ? o.trusted_file : o.trusted_directory));
    if (file && c.side == ssl_side::server) {
      // Tell clients which CAs we accept.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(file)) SSL_CTX_set_client_CA_list(ctx, names);
    }
  }
  if (!o.trusted_pem.empty()) {
    bio_ptr bio(BIO_new_mem_buf(o.trusted_pem.data(), static_cast<int>(o.trusted_pem.size())));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int n = 0;
    while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      X509_STORE_add_cert(store, cert);
      X509_free(cert);
      ++n;
    }
    ERR_clear_error();
    if (n == 0) invalid(op, "option trusted_pem holds no certificate");
  }
  const bool other_source = !o.trusted_file.empty() || !o.trusted_directory.empty() || !o.trusted_pem.empty();
  if (o.use_system_trusted.value_or(c.side == ssl_side::client && !other_source)) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) library_failure(op + ": cannot load the system trust store");
  }
}

}  // namespace

pkey_ptr load_private_key(const std::string& file, const std::string& pem, const std::string& password,
                          const password_callback& callback, const std::string& op) {
  bio_ptr bio(file.empty() ? BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())) : BIO_new_file(file.c_str(), "r"));
  const std::string source = file.empty() ? std::string("key_pem") : "key file " + file;
  if (!bio) library_failure(op + ": cannot open " + source);
  password_source src{&password, &callback, nullptr};
  pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, password_cb, &src));
  if (src.error) {
    ERR_clear_error();
    std::rethrow_exception(src.error);
  }
  if (!key) library_failure(op + ": cannot read the private key from " + source + " (wrong password?)");
  return key;
}

std::shared_ptr<openssl_context> realize_context(const ssl_context_options& options, ssl_side side,
                                                 bool require_identity) {
  const std::string op = "OpenSSL context" + (options.name.empty() ? std::string() : " '" + options.name + "'");
  ERR_clear_error();
  auto c = std::make_shared<openssl_context>();
  c->options = options;
  forget_secrets(c->options);  // the key is read from `options` below; nothing needs them later
  c->side = side;
  c->chain_cache = backend_context::make_chain_cache(
      options, options.openssl_ctx_configure_callback || options.openssl_ssl_configure_callback);
  c->ctx.reset(SSL_CTX_new(TLS_method()));
  if (!c->ctx) library_failure(op + ": SSL_CTX_new");
  SSL_CTX* ctx = c->ctx.get();
  SSL_CTX_set_ex_data(ctx, context_index(), c.get());

  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (int v = to_openssl_version(options.protocol_version.min); SSL_CTX_set_min_proto_version(ctx, v) != 1) {
    ERR_clear_error();
    throw ssl_failure(ssl_errc::invalid_argument, op + ": cannot set the minimum protocol version " +
                                                     std::string(to_string(options.protocol_version.min)),
                      {ssl_code_kind::min_proto_version, 0});
  }
  if (options.protocol_version.max &&
      SSL_CTX_set_max_proto_version(ctx, to_openssl_version(*options.protocol_version.max)) != 1)
    invalid(op, "cannot set the maximum protocol version " + std::string(to_string(*options.protocol_version.max)));
  if (!options.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, options.ciphers.c_str()) != 1)
    invalid(op, "option ciphers: no usable cipher in '" + options.ciphers + "'");
  // Default TLS 1.2 list: forward secret (ECDHE) and AEAD (GCM, ChaCha20-Poly1305) only, for ECDSA
  // and RSA certificates. OpenSSL's own default also has CBC suites and RSA key exchange. TLS 1.3
  // suites are all AEAD with (EC)DHE already.
  if (options.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, default_tls12_ciphers) != 1)
    library_failure(op + ": cannot set the default cipher list");
  if (!options.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, options.ciphersuites.c_str()) != 1)
    invalid(op, "option ciphersuites: no usable suite in '" + options.ciphersuites + "'");
  if (!options.groups.empty() && SSL_CTX_set1_groups_list(ctx, options.groups.c_str()) != 1)
    invalid(op, "option groups: cannot use '" + options.groups + "'");

  load_identity(*c, options, op);
  load_trust(*c, op);
  load_crls(*c, op);
  if (!options.dh_file.empty()) {
    bio_ptr bio(BIO_new_file(options.dh_file.c_str(), "r"));
    EVP_PKEY* dh = bio ? PEM_read_bio_Parameters(bio.get(), nullptr) : nullptr;
    if (dh == nullptr || SSL_CTX_set0_tmp_dh_pkey(ctx, dh) != 1) {
      EVP_PKEY_free(dh);
      library_failure(op + ": cannot use DH parameters from " + options.dh_file);
    }
  }

  const peer_verification mode =
      options.verify.value_or(side == ssl_side::client ? peer_verification::required : peer_verification::none);
  int verify_mode = SSL_VERIFY_NONE;
  if (side == ssl_side::client) {
    if (mode != peer_verification::none || options.verify_callback) verify_mode = SSL_VERIFY_PEER;
  } else if (mode == peer_verification::required) {
    verify_mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  } else if (mode == peer_verification::optional || options.verify_callback) {
    verify_mode = SSL_VERIFY_PEER;
  }
  SSL_CTX_set_verify(ctx, verify_mode, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, cert_verify_cb, nullptr);

  c->alpn_wire = alpn_wire(options.alpn_protocols, op);
  if (!c->alpn_wire.empty()) {
    if (side == ssl_side::client) {
      if (SSL_CTX_set_alpn_protos(ctx, c->alpn_wire.data(), static_cast<unsigned>(c->alpn_wire.size())) != 0)
        invalid(op, "option alpn_protocols rejected");
    } else {
      SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, nullptr);
    }
  }

  if (side == ssl_side::client) {
    SSL_CTX_set_session_cache_mode(ctx, options.session_resumption
                                            ? SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE
                                            : SSL_SESS_CACHE_OFF);
    if (options.session_resumption) SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    if (options.cert_request_callback) SSL_CTX_set_cert_cb(ctx, cert_cb, nullptr);
  } else {
    static const unsigned char sid_context[] = "comm";
    SSL_CTX_set_session_id_context(ctx, sid_context, sizeof sid_context - 1);
    if (!options.session_resumption) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (options.client_hello_callback) SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
  }

  if (options.keylog_callback) SSL_CTX_set_keylog_callback(ctx, keylog_cb);  // NSS key log lines

  if (options.openssl_ctx_configure_callback) options.openssl_ctx_configure_callback(ssl_ctx_pointer{ctx});
  if (require_identity && side == ssl_side::server && SSL_CTX_get0_certificate(ctx) == nullptr)
    invalid(op, "a server context has no certificate after configuration");
  ERR_clear_error();
  return c;
}

}  // namespace comm::detail::ossl
