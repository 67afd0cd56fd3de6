// Shared by the GnuTLS implementation's files (and nothing outside src/tls/gnutls): RAII handles,
// the realised context, verification and certificate helpers.
#pragma once

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tls/engine.hpp"

namespace comm::detail::gtls {

template <class T, void (*F)(T)>
struct deleter {
  void operator()(T p) const noexcept { F(p); }
};
using credentials_ptr = std::unique_ptr<gnutls_certificate_credentials_st,
                                        deleter<gnutls_certificate_credentials_t, gnutls_certificate_free_credentials>>;
using session_ptr = std::unique_ptr<gnutls_session_int, deleter<gnutls_session_t, gnutls_deinit>>;
using crt_ptr = std::unique_ptr<gnutls_x509_crt_int, deleter<gnutls_x509_crt_t, gnutls_x509_crt_deinit>>;
// A DER certificate (as gnutls_certificate_get_peers gives them) imported; null when it cannot be.
crt_ptr import_der(const gnutls_datum_t& der);
using crl_ptr = std::unique_ptr<gnutls_x509_crl_int, deleter<gnutls_x509_crl_t, gnutls_x509_crl_deinit>>;
using priority_ptr = std::unique_ptr<std::remove_pointer_t<gnutls_priority_t>, deleter<gnutls_priority_t, gnutls_priority_deinit>>;
using dh_params_ptr = std::unique_ptr<std::remove_pointer_t<gnutls_dh_params_t>, deleter<gnutls_dh_params_t, gnutls_dh_params_deinit>>;

// "GnuTLS context 'name'": the prefix of every realisation error.
std::string context_operation(const ssl_context_options& options);
// ssl_failure(invalid_argument) naming the option and GnuTLS.
[[noreturn]] void reject_option(const std::string& operation, const std::string& option, const std::string& why);
// gnutls_strerror(code) without its closing full stop, for messages that go on after it
// ("...: No common application protocol could be negotiated: TLS protocol failure").
std::string error_text(int code);
// ssl_error(library_error) with error_text(code).
[[noreturn]] void library_failure(const std::string& what, int code, ssl_code_kind kind = ssl_code_kind::library);

// Wipes a secret's whole buffer (up to the capacity, where older contents may linger) with a write
// the compiler may not drop, then frees it.
inline void wipe_secret(std::string& s) noexcept {
  s.resize(s.capacity());  // never reallocates
  gnutls_memset(s.data(), 0, s.size());
  std::string().swap(s);
}
// The realised copy of the options keeps no key password, password callback or key PEM: the
// credentials are made from the abstract context's options, which keep them for
// reset_ssl_abstract_context, and GnuTLS keeps the decoded key in the credentials.
inline void forget_secrets(ssl_context_options& o) noexcept {
  wipe_secret(o.password);
  wipe_secret(o.key_pem);
  o.password_callback = nullptr;
}

// An abstract context realised for GnuTLS: certificate credentials (own identity, trust) and a
// priority cache (versions, ciphers, groups). Shared by every connection of the context.
class gnutls_context final : public backend_context {
 public:
  gnutls_context() = default;
  gnutls_context(const gnutls_context&) = delete;
  gnutls_context& operator=(const gnutls_context&) = delete;
  ~gnutls_context() override;

  ssl_context_options options;  // a copy (callbacks must outlive the abstract context), secrets removed
  ssl_side side = ssl_side::client;
  dh_params_ptr dh_params;       // referenced by the credentials: destroyed after them
  credentials_ptr credentials;
  priority_ptr priority;
  gnutls_datum_t ticket_key{};   // server session tickets; made at realisation
  std::vector<gnutls_datum_t> alpn;  // points into options.alpn_protocols
  std::vector<crl_ptr> crls;  // crl_file / crl_pem parsed again: the credentials cannot list theirs

  ssl_ctx_ref native() const noexcept override { return gnutls_credentials_ref{credentials.get()}; }
  peer_verification verify_mode() const noexcept {
    return options.verify.value_or(side == ssl_side::client ? peer_verification::required : peer_verification::none);
  }

  // Client session cache, keyed by "host:port" (gnutls_session_get_data2 blobs).
  void store_session(const std::string& key, const gnutls_datum_t& data);
  std::vector<unsigned char> find_session(const std::string& key) const;

 private:
  mutable std::mutex sessions_mutex_;
  std::map<std::string, std::vector<unsigned char>> sessions_;
};

std::shared_ptr<gnutls_context> realize_context(const ssl_context_options& options, ssl_side side);
// Credentials holding the trust sources of `options` (and DH parameters), plus an own identity
// from key_file/cert_file when given. Used for contexts and for ssl_connection_read_certificates.
credentials_ptr make_credentials(const ssl_context_options& options, ssl_side side, const std::string& operation);

std::unique_ptr<tls_engine> make_gnutls_engine(std::shared_ptr<gnutls_context> context, const engine_params& params,
                                               transport& t);
std::unique_ptr<tls_engine> make_adopted_engine(session_ptr session, const engine_params& params, transport& t);

// Verification: the peer's chain against the session's trust, the host name (or IP SAN) and purpose;
// with `crls` non-empty also that the leaf's issuer has a CRL among them (as OpenSSL requires).
// The earliest expiry of the peer's certificates and of the trusted issuer of the last one.
std::chrono::system_clock::time_point chain_not_after(const gnutls_datum_t* certs, unsigned n,
                                                      gnutls_certificate_credentials_t trust);
verify_result verify_session(gnutls_session_t session, const std::string& host_name, ssl_side side,
                             const std::vector<crl_ptr>* crls = nullptr);
verify_result verify_result_from_status(gnutls_session_t session, unsigned status);
std::vector<certificate_data> peer_certificates_data(gnutls_session_t session);
std::vector<native_certificate> copy_peer_certificates(gnutls_session_t session);

bool is_ip_literal(const std::string& host) noexcept;
// The OpenSSL name of a suite given by its IANA name (the same name from both implementations);
// the IANA name itself when the suite is not in the mapping table.
std::string openssl_suite_name(const std::string& iana);

}  // namespace comm::detail::gtls
