// Realising an abstract context for GnuTLS: certificate credentials (identity, trust, DH), a
// priority string for versions, ciphers and groups, ALPN and the session-ticket key.
//
// Mapping decisions (documented in README's TLS section too):
//  - ciphers: OpenSSL or IANA names of TLS 1.2 suites (ECDHE-ECDSA-AES128-GCM-SHA256 or
//    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) are translated to GnuTLS priority elements; tokens
//    starting with '+', '-' or '%' are GnuTLS priority elements used as they are. OpenSSL cipher
//    string keywords (HIGH, !aNULL, ...) cannot be mapped and are rejected.
//  - ciphersuites: the TLS 1.3 suite names. GnuTLS has one cipher list for both versions, so the
//    ciphers named by `ciphers` and `ciphersuites` together form that list.
//  - groups: X25519, X448, P-256/P-384/P-521 (or prime256v1/secp256r1/...), ffdhe2048..8192.
//  - openssl_* and apple configure callbacks belong to other implementations and do not run here,
//    so one portable set of options can carry all of them.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "tls/gnutls/common.hpp"
#include "tls/gnutls/crl.hpp"

namespace comm::detail::gtls {

std::string context_operation(const ssl_context_options& options) {
  return "GnuTLS context" + (options.name.empty() ? std::string() : " '" + options.name + "'");
}

void reject_option(const std::string& operation, const std::string& option, const std::string& why) {
  throw ssl_failure(ssl_errc::invalid_argument, operation + ": option " + option + " cannot be used with GnuTLS: " + why);
}

std::string error_text(int code) {
  std::string text = gnutls_strerror(code);
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

void library_failure(const std::string& what, int code, ssl_code_kind kind) {
  throw ssl_error(ssl_errc::library_error, what + ": " + error_text(code), {kind, code});
}

gnutls_context::~gnutls_context() {
  if (ticket_key.data != nullptr) {
    gnutls_memset(ticket_key.data, 0, ticket_key.size);
    gnutls_free(ticket_key.data);
  }
}

void gnutls_context::store_session(const std::string& key, const gnutls_datum_t& data) {
  std::lock_guard lock(sessions_mutex_);
  sessions_[key].assign(data.data, data.data + data.size);
}

std::vector<unsigned char> gnutls_context::find_session(const std::string& key) const {
  std::lock_guard lock(sessions_mutex_);
  auto it = sessions_.find(key);
  return it == sessions_.end() ? std::vector<unsigned char>{} : it->second;
}

bool is_ip_literal(const std::string& host) noexcept {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

namespace {

const char* version_element(ssl_protocol_version v) {
  switch (v) {
    case ssl_protocol_version::tls_v1: return "+VERS-TLS1.0";
    case ssl_protocol_version::tls_v1_1: return "+VERS-TLS1.1";
    case ssl_protocol_version::tls_v1_2: return "+VERS-TLS1.2";
    case ssl_protocol_version::tls_v1_3: return "+VERS-TLS1.3";
    default: return nullptr;
  }
}

struct suite_mapping {
  const char* openssl;
  const char* iana;
  const char* kx;      // nullptr: TLS 1.3 (no key exchange element)
  const char* cipher;
  const char* mac;
};
constexpr suite_mapping suites[] = {
    {"ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA", "AES-128-GCM", "AEAD"},
    {"ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA", "AES-128-GCM", "AEAD"},
    {"ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA", "AES-256-GCM", "AEAD"},
    {"ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA", "AES-256-GCM", "AEAD"},
    {"ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA", "CHACHA20-POLY1305", "AEAD"},
    {"ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA", "CHACHA20-POLY1305", "AEAD"},
    {"DHE-RSA-AES128-GCM-SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA", "AES-128-GCM", "AEAD"},
    {"DHE-RSA-AES256-GCM-SHA384", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA", "AES-256-GCM", "AEAD"},
    {"DHE-RSA-CHACHA20-POLY1305", "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA", "CHACHA20-POLY1305", "AEAD"},
    {"AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256", "RSA", "AES-128-GCM", "AEAD"},
    {"AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384", "RSA", "AES-256-GCM", "AEAD"},
    {"ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA", "AES-128-CBC", "SHA256"},
    {"ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA", "AES-128-CBC", "SHA256"},
    {"ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA", "AES-128-CBC", "SHA1"},
    {"ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA", "AES-128-CBC", "SHA1"},
    {"ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA", "AES-256-CBC", "SHA1"},
    {"ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA", "AES-256-CBC", "SHA1"},
    {"AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA", "RSA", "AES-128-CBC", "SHA1"},
    {"AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA", "RSA", "AES-256-CBC", "SHA1"},
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", nullptr, "AES-128-GCM", "AEAD"},
    {"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", nullptr, "AES-256-GCM", "AEAD"},
    {"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", nullptr, "CHACHA20-POLY1305", "AEAD"},
    {"TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_SHA256", nullptr, "AES-128-CCM", "AEAD"},
    {"TLS_AES_128_CCM_8_SHA256", "TLS_AES_128_CCM_8_SHA256", nullptr, "AES-128-CCM-8", "AEAD"},
};

struct group_mapping {
  const char* name;
  const char* element;
};
constexpr group_mapping groups[] = {
    {"X25519", "GROUP-X25519"}, {"X448", "GROUP-X448"},
    {"P-256", "GROUP-SECP256R1"}, {"prime256v1", "GROUP-SECP256R1"}, {"secp256r1", "GROUP-SECP256R1"},
    {"P-384", "GROUP-SECP384R1"}, {"secp384r1", "GROUP-SECP384R1"},
    {"P-521", "GROUP-SECP521R1"}, {"secp521r1", "GROUP-SECP521R1"},
    {"ffdhe2048", "GROUP-FFDHE2048"}, {"ffdhe3072", "GROUP-FFDHE3072"}, {"ffdhe4096", "GROUP-FFDHE4096"},
    {"ffdhe6144", "GROUP-FFDHE6144"}, {"ffdhe8192", "GROUP-FFDHE8192"},
};

}  // namespace

std::string openssl_suite_name(const std::string& iana) {
  for (const auto& s : suites)
    if (iana == s.iana) return s.openssl;
  return iana;
}

namespace {

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::string token;
  for (char c : list) {
    if (c == ':' || c == ',' || c == ' ') {
      if (!token.empty()) out.push_back(std::move(token));
      token.clear();
    } else {
      token += c;
    }
  }
  if (!token.empty()) out.push_back(std::move(token));
  return out;
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

// The priority string of the options (see the file comment for the mapping).
std::string priority_string(const ssl_context_options& o, ssl_side side, const std::string& op) {
  std::string p = "NORMAL";
  if (side != ssl_side::client) p += ":%SERVER_PRECEDENCE";
  p += ":-VERS-ALL";
  const ssl_protocol_version lo = o.protocol_version.min;
  const ssl_protocol_version hi = o.protocol_version.max.value_or(ssl_protocol_version::tls_v1_3);
  bool any = false;
  for (int v = static_cast<int>(ssl_protocol_version::tls_v1); v <= static_cast<int>(ssl_protocol_version::tls_v1_3); ++v) {
    const auto version = static_cast<ssl_protocol_version>(v);
    if (version < lo || version > hi) continue;
    p += std::string(":") + version_element(version);
    any = true;
  }
  if (!any || lo == ssl_protocol_version::unknown)
    throw ssl_failure(ssl_errc::invalid_argument,
                      op + ": option protocol_version cannot be used with GnuTLS: no TLS version from " +
                          std::string(to_string(lo)) + " to " + std::string(to_string(hi)) + " is available",
                      {ssl_code_kind::min_proto_version, 0});

  std::vector<std::string> kx, ciphers, macs, raw;
  bool named = false;
  for (const auto* list : {&o.ciphers, &o.ciphersuites}) {
    const char* option = list == &o.ciphers ? "ciphers" : "ciphersuites";
    for (const auto& token : split(*list)) {
      if (token[0] == '+' || token[0] == '-' || token[0] == '%') {
        raw.push_back(token);
        continue;
      }
      auto it = std::find_if(std::begin(suites), std::end(suites),
                             [&](const suite_mapping& s) { return token == s.openssl || token == s.iana; });
      if (it == std::end(suites))
        reject_option(op, option, "'" + token + "' is not a cipher suite name GnuTLS supports (cipher string "
                                                "keywords cannot be mapped; use suite names or GnuTLS priority elements)");
      named = true;
      if (it->kx) add_unique(kx, it->kx);
      add_unique(ciphers, it->cipher);
      add_unique(macs, it->mac);
    }
  }
  if (named) {
    p += ":-CIPHER-ALL";
    for (const auto& c : ciphers) p += ":+" + c;
    add_unique(macs, "AEAD");  // TLS 1.3 and the GCM/ChaCha suites
    p += ":-MAC-ALL";
    for (const auto& m : macs) p += ":+" + m;
    if (!kx.empty()) {
      p += ":-KX-ALL";
      for (const auto& k : kx) p += ":+" + k;
    }
  }
  if (!named && o.ciphers.empty()) {
    // Default: AEAD ciphers only (TLS 1.3's are all AEAD; for TLS 1.2 this drops CBC and its MACs).
    p += ":-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM:-MAC-ALL:+AEAD";
  }
  if (o.ciphers.empty()) {
    // Default TLS 1.2 key exchange: ephemeral ECDH only (forward secrecy); TLS 1.3 always uses
    // (EC)DHE and is not limited by these elements.
    p += ":-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA";
  }
  for (const auto& r : raw) p += ":" + r;

  if (o.groups.empty()) {
    // OpenSSL's default order: X25519 first, so that a server preferring its own order does not
    // ask the usual client (X25519 key share) for another one (HelloRetryRequest).
    p += ":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-X448:+GROUP-SECP521R1:+GROUP-SECP384R1"
         ":+GROUP-FFDHE2048:+GROUP-FFDHE3072:+GROUP-FFDHE4096:+GROUP-FFDHE6144:+GROUP-FFDHE8192";
  } else {
    p += ":-GROUP-ALL";
    for (const auto& token : split(o.groups)) {
      auto it = std::find_if(std::begin(groups), std::end(groups),
                             [&](const group_mapping& g) { return strcasecmp(token.c_str(), g.name) == 0; });
      if (it == std::end(groups)) reject_option(op, "groups", "unknown group '" + token + "'");
      p += std::string(":+") + it->element;
    }
  }
  return p;
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ssl_error(ssl_errc::library_error, what + ": cannot open " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

gnutls_datum_t datum(const std::string& s) {
  return {reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())), static_cast<unsigned>(s.size())};
}

// Wipes a copy of a password or key when it goes out of scope.
struct secret {
  std::string value;
  secret() = default;
  secret(const secret&) = delete;
  secret& operator=(const secret&) = delete;
  ~secret() { wipe_secret(value); }
};

// A key file's text, read without stream buffers (which would be freed unwiped); `out` is wiped by
// its owner.
void read_key_file(const std::string& path, const std::string& what, std::string& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ssl_error(ssl_errc::library_error, what + ": cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size) + 1);
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      gnutls_memset(buf, 0, sizeof buf);
      ::close(fd);
      if (n < 0) throw ssl_error(ssl_errc::library_error, what + ": cannot read " + path + ": " + std::strerror(err));
      return;
    }
    if (out.size() + static_cast<std::size_t>(n) > out.capacity()) {
      // Growing would free the old buffer unwiped: move through a wiped copy instead.
      std::string bigger;
      bigger.reserve(2 * (out.size() + static_cast<std::size_t>(n)));
      bigger.append(out);
      wipe_secret(out);
      out.swap(bigger);
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
}

void load_identity(gnutls_certificate_credentials_t cred, const ssl_context_options& o, const std::string& op) {
  const bool from_files = !o.cert_file.empty() || !o.key_file.empty();
  const bool from_pem = !o.cert_pem.empty() || !o.key_pem.empty();
  if (!from_files && !from_pem) return;
  // PEM text, or a mix of file and text, is used in the memory form.
  secret cert, key;
  const bool both_files = !o.cert_file.empty() && !o.key_file.empty();
  if (!both_files) {
    cert.value = !o.cert_pem.empty() ? o.cert_pem : read_file(o.cert_file, op);
    if (!o.key_pem.empty())
      key.value = o.key_pem;
    else
      read_key_file(o.key_file, op, key.value);
  }
  const std::string source =
      both_files ? "certificate file " + o.cert_file + " and key file " + o.key_file
                 : (o.cert_pem.empty() ? "certificate file " + o.cert_file : std::string("cert_pem")) + " and " +
                       (o.key_pem.empty() ? "key file " + o.key_file : std::string("key_pem"));
  auto load = [&](const char* pass) {
    if (both_files)
      return gnutls_certificate_set_x509_key_file2(cred, o.cert_file.c_str(), o.key_file.c_str(), GNUTLS_X509_FMT_PEM,
                                                   pass, 0);
    gnutls_datum_t c = datum(cert.value), k = datum(key.value);
    return gnutls_certificate_set_x509_key_mem2(cred, &c, &k, GNUTLS_X509_FMT_PEM, pass, 0);
  };
  secret password;
  password.value = o.password;
  int rc = load(password.value.empty() ? nullptr : password.value.c_str());
  if (rc < 0 && password.value.empty() && o.password_callback) {
    // Like OpenSSL, the callback is asked only when the key turns out to need a password.
    password.value = o.password_callback();
    rc = load(password.value.c_str());
  }
  if (rc < 0) {
    std::string hint = rc == GNUTLS_E_DECRYPTION_FAILED ? " (wrong password?)" : "";
    throw ssl_error(ssl_errc::library_error, op + ": cannot use " + source + hint + ": " + error_text(rc),
                    {ssl_code_kind::library, rc});
  }
}

void load_trust(gnutls_certificate_credentials_t cred, const ssl_context_options& o, ssl_side side,
                const std::string& op) {
  if (!o.trusted_file.empty()) {
    int n = gnutls_certificate_set_x509_trust_file(cred, o.trusted_file.c_str(), GNUTLS_X509_FMT_PEM);
    if (n < 0) library_failure(op + ": cannot load trusted certificates from " + o.trusted_file, n);
    if (n == 0) reject_option(op, "trusted_file", o.trusted_file + " holds no certificate");
  }
  if (!o.trusted_directory.empty()) {
    int n = gnutls_certificate_set_x509_trust_dir(cred, o.trusted_directory.c_str(), GNUTLS_X509_FMT_PEM);
    if (n < 0) library_failure(op + ": cannot load trusted certificates from " + o.trusted_directory, n);
  }
  if (!o.trusted_pem.empty()) {
    gnutls_datum_t d = datum(o.trusted_pem);
    int n = gnutls_certificate_set_x509_trust_mem(cred, &d, GNUTLS_X509_FMT_PEM);
    if (n < 0) library_failure(op + ": cannot load trusted_pem", n);
    if (n == 0) reject_option(op, "trusted_pem", "it holds no certificate");
  }
  const bool other_source = !o.trusted_file.empty() || !o.trusted_directory.empty() || !o.trusted_pem.empty();
  if (o.use_system_trusted.value_or(side == ssl_side::client && !other_source)) {
    int n = gnutls_certificate_set_x509_system_trust(cred);
    if (n < 0) library_failure(op + ": cannot load the system trust store", n);
  }
}

}  // namespace

credentials_ptr make_credentials(const ssl_context_options& o, ssl_side side, const std::string& op) {
  gnutls_certificate_credentials_t raw = nullptr;
  if (int rc = gnutls_certificate_allocate_credentials(&raw); rc < 0) library_failure(op + ": allocate credentials", rc);
  credentials_ptr cred(raw);
  // Verification happens in the engine's verify function; keep GnuTLS's own profile checks on.
  gnutls_certificate_set_verify_flags(raw, 0);
  load_identity(raw, o, op);
  load_trust(raw, o, side, op);
  load_crls(raw, o, op);
  return cred;
}

std::shared_ptr<gnutls_context> realize_context(const ssl_context_options& options, ssl_side side) {
  const std::string op = context_operation(options);
  auto c = std::make_shared<gnutls_context>();
  c->options = options;
  forget_secrets(c->options);  // the credentials are made from `options` below
  c->side = side;
  c->chain_cache = backend_context::make_chain_cache(
      options, options.gnutls_credentials_configure_callback || options.gnutls_session_configure_callback);

  const std::string prio = priority_string(options, side, op);
  gnutls_priority_t raw_prio = nullptr;
  const char* err_pos = nullptr;
  if (int rc = gnutls_priority_init2(&raw_prio, prio.c_str(), &err_pos, 0); rc < 0) {
    std::string at = err_pos ? std::string(err_pos) : std::string();
    throw ssl_failure(ssl_errc::invalid_argument,
                      op + ": options ciphers/ciphersuites/groups cannot be used with GnuTLS: priority string rejected at '" +
                          at + "': " + error_text(rc),
                      {ssl_code_kind::library, rc});
  }
  c->priority.reset(raw_prio);

  if (!options.dh_file.empty()) {
    const std::string pem = read_file(options.dh_file, op);
    gnutls_dh_params_t dh = nullptr;
    if (int rc = gnutls_dh_params_init(&dh); rc < 0) library_failure(op + ": DH parameters", rc);
    c->dh_params.reset(dh);
    gnutls_datum_t d = datum(pem);
    if (int rc = gnutls_dh_params_import_pkcs3(dh, &d, GNUTLS_X509_FMT_PEM); rc < 0)
      library_failure(op + ": cannot use DH parameters from " + options.dh_file, rc);
  }
  c->credentials = make_credentials(options, side, op);
  c->crls = read_crls(options, op);
  if (c->dh_params) gnutls_certificate_set_dh_params(c->credentials.get(), c->dh_params.get());

  for (const auto& p : options.alpn_protocols) {
    if (p.empty() || p.size() > 255) reject_option(op, "alpn_protocols", "'" + p + "' is not a valid protocol name");
  }
  for (const auto& p : c->options.alpn_protocols) c->alpn.push_back(datum(p));

  if (side != ssl_side::client && options.session_resumption) {
    if (int rc = gnutls_session_ticket_key_generate(&c->ticket_key); rc < 0)
      library_failure(op + ": session ticket key", rc);
  }
  if (options.gnutls_credentials_configure_callback)
    options.gnutls_credentials_configure_callback(gnutls_credentials_ref{c->credentials.get()});
  return c;
}

namespace {

class gnutls_backend final : public tls_backend {
 public:
  ssl_implementation id() const noexcept override { return ssl_implementation::gnutls; }

  std::shared_ptr<backend_context> realize(const ssl_context_options& options, ssl_side side) const override {
    return realize_context(options, side);
  }

  std::unique_ptr<tls_engine> create_engine(std::shared_ptr<backend_context> context, const ssl_context_options&,
                                            const engine_params& params, transport& t) const override {
    auto c = std::dynamic_pointer_cast<gnutls_context>(std::move(context));
    if (!c) throw std::invalid_argument("GnuTLS engine: the context was realised by another implementation");
    if (params.ctx_configure) {
      c->configured_natively = true;
      params.ctx_configure(gnutls_credentials_ref{c->credentials.get()});
    }
    return make_gnutls_engine(std::move(c), params, t);
  }

  // A client verifies against the system store with the secure defaults; a server has no
  // identity until the attach options' ctx_configure_callback gives the credentials one.
  std::unique_ptr<tls_engine> create_default_engine(ssl_protocol_keyword keyword, const engine_params& params,
                                                    transport& t) const override {
    ssl_context_options o;
    o.name = "default";
    if (keyword == ssl_protocol_keyword::tls_v1_2) o.protocol_version = {ssl_protocol_version::tls_v1_2, ssl_protocol_version::tls_v1_2};
    if (keyword == ssl_protocol_keyword::tls_v1_3) o.protocol_version = {ssl_protocol_version::tls_v1_3, ssl_protocol_version::tls_v1_3};
    o.session_resumption = false;  // nothing to share sessions with
    const ssl_side side = params.side == ssl_side::client ? ssl_side::client : ssl_side::server;
    std::shared_ptr<gnutls_context> c;
    if (side == ssl_side::client && !params.ctx_configure) {
      // The system store is parsed once per keyword, not per connection.
      static std::mutex m;
      static std::shared_ptr<gnutls_context> cached[3];
      std::lock_guard lock(m);
      auto& slot = cached[static_cast<int>(keyword)];
      if (!slot) slot = realize_context(o, ssl_side::client);
      c = slot;
    } else {
      c = realize_context(o, side);
      if (params.ctx_configure) {
        c->configured_natively = true;
        params.ctx_configure(gnutls_credentials_ref{c->credentials.get()});
      }
    }
    return make_gnutls_engine(std::move(c), params, t);
  }
};

}  // namespace

}  // namespace comm::detail::gtls

namespace comm::detail {

const tls_backend* gnutls_backend_instance() noexcept {
  static const gtls::gnutls_backend backend;
  return &backend;
}

}  // namespace comm::detail
