// CRLs for GnuTLS credentials. GnuTLS keeps them in the credentials' trust list and checks every
// certificate of the peer's chain against the CRLs of its issuer that it has (signed or not by
// it); it cannot be asked for a CRL to be there. OpenSSL (X509_V_FLAG_CRL_CHECK) checks the leaf
// only and refuses it when its issuer has no usable CRL once CRLs are given. The contexts keep
// their CRLs as objects too, and check_leaf_crls makes GnuTLS's verdict OpenSSL's.
#include "tls/gnutls/crl.hpp"

#include <ctime>

namespace comm::detail::gtls {

void load_crls(gnutls_certificate_credentials_t cred, const ssl_context_options& o, const std::string& op) {
  if (!o.crl_file.empty()) {
    int n = gnutls_certificate_set_x509_crl_file(cred, o.crl_file.c_str(), GNUTLS_X509_FMT_PEM);
    if (n < 0) library_failure(op + ": cannot load CRLs from " + o.crl_file, n);
    if (n == 0) reject_option(op, "crl_file", o.crl_file + " holds no CRL");
  }
  if (!o.crl_pem.empty()) {
    // As with OpenSSL: text without any CRL is a wrong argument, not a library failure.
    if (o.crl_pem.find("-----BEGIN X509 CRL-----") == std::string::npos)
      reject_option(op, "crl_pem", "it holds no CRL");
    gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(o.crl_pem.data())),
                     static_cast<unsigned>(o.crl_pem.size())};
    int n = gnutls_certificate_set_x509_crl_mem(cred, &d, GNUTLS_X509_FMT_PEM);
    if (n < 0) library_failure(op + ": cannot load crl_pem", n);
    if (n == 0) reject_option(op, "crl_pem", "it holds no CRL");
  }
}

namespace {

void import_crls(const gnutls_datum_t& pem, const std::string& what, std::vector<crl_ptr>& out) {
  gnutls_x509_crl_t* list = nullptr;
  unsigned size = 0;
  if (int rc = gnutls_x509_crl_list_import2(&list, &size, &pem, GNUTLS_X509_FMT_PEM, 0); rc < 0)
    library_failure(what, rc);
  for (unsigned i = 0; i < size; ++i) out.emplace_back(list[i]);
  gnutls_free(list);
}

// The leaf's issuer: the certificate of the peer's chain that issued it, else the trust anchor.
crt_ptr find_issuer(gnutls_session_t session, gnutls_x509_crt_t leaf, const gnutls_datum_t* certs, unsigned n) {
  for (unsigned i = 1; i < n; ++i) {
    crt_ptr c = import_der(certs[i]);
    if (c && gnutls_x509_crt_check_issuer(leaf, c.get())) return c;
  }
  void* cred = nullptr;
  gnutls_x509_trust_list_t trust = nullptr;
  if (gnutls_credentials_get(session, GNUTLS_CRD_CERTIFICATE, &cred) < 0 || cred == nullptr) return nullptr;
  gnutls_certificate_get_trust_list(static_cast<gnutls_certificate_credentials_t>(cred), &trust);
  gnutls_x509_crt_t found = nullptr;
  if (trust == nullptr || gnutls_x509_trust_list_get_issuer(trust, leaf, &found, GNUTLS_TL_GET_COPY) < 0) return nullptr;
  return crt_ptr(found);
}

verify_result crl_failure(unsigned status, verify_reason reason, const char* message) {
  return verify_result{false, static_cast<long>(status | GNUTLS_CERT_INVALID), reason, message};
}

}  // namespace

std::vector<crl_ptr> read_crls(const ssl_context_options& o, const std::string& op) {
  std::vector<crl_ptr> out;
  if (!o.crl_file.empty()) {
    gnutls_datum_t d{};
    if (int rc = gnutls_load_file(o.crl_file.c_str(), &d); rc < 0)
      library_failure(op + ": cannot load CRLs from " + o.crl_file, rc);
    try {
      import_crls(d, op + ": cannot load CRLs from " + o.crl_file, out);
    } catch (...) {
      gnutls_free(d.data);
      throw;
    }
    gnutls_free(d.data);
  }
  if (!o.crl_pem.empty()) {
    gnutls_datum_t d{reinterpret_cast<unsigned char*>(const_cast<char*>(o.crl_pem.data())),
                     static_cast<unsigned>(o.crl_pem.size())};
    import_crls(d, op + ": cannot load crl_pem", out);
  }
  return out;
}

std::optional<verify_result> check_leaf_crls(gnutls_session_t session, const std::vector<crl_ptr>& crls,
                                             unsigned& status) {
  if (crls.empty()) return std::nullopt;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  crt_ptr leaf = certs != nullptr && n > 0 ? import_der(certs[0]) : nullptr;
  if (!leaf) return std::nullopt;  // nothing to check (reported as no certificate elsewhere)
  crt_ptr issuer = find_issuer(session, leaf.get(), certs, n);
  const unsigned time_bits = GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED | GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE;
  const std::time_t now = std::time(nullptr);
  std::optional<verify_result> failure;
  bool usable = false, revoked = false;
  for (const auto& crl : crls) {
    if (!issuer || !gnutls_x509_crl_check_issuer(crl.get(), issuer.get())) continue;
    gnutls_x509_crt_t ca = issuer.get();
    unsigned crl_status = 0;
    if (gnutls_x509_crl_verify(crl.get(), &ca, 1, 0, &crl_status) < 0) crl_status |= GNUTLS_CERT_SIGNATURE_FAILURE;
    // The period too, whether or not gnutls_x509_crl_verify looked at it.
    const std::time_t next = gnutls_x509_crl_get_next_update(crl.get());
    if (next != static_cast<std::time_t>(-1) && next < now) crl_status |= GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED;
    if (gnutls_x509_crl_get_this_update(crl.get()) > now) crl_status |= GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE;
    if (crl_status == 0) {
      usable = true;
      gnutls_x509_crl_t one = crl.get();
      if (gnutls_x509_crt_check_revocation(leaf.get(), &one, 1) == 1) revoked = true;
    } else if ((crl_status & ~(time_bits | GNUTLS_CERT_INVALID)) != 0) {
      if (!failure) failure = crl_failure(crl_status, verify_reason::other, "CRL signature failure");
    } else if (crl_status & GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE) {
      failure = crl_failure(crl_status, verify_reason::not_yet_valid, "CRL is not yet valid");
    } else {
      failure = crl_failure(crl_status, verify_reason::expired, "CRL has expired");
    }
  }
  // GnuTLS's own verdict counts every CRL it was given against every certificate of the chain: keep
  // a revocation only when a usable CRL of the leaf's issuer lists the leaf.
  if (revoked) {
    status |= GNUTLS_CERT_REVOKED | GNUTLS_CERT_INVALID;
  } else {
    status &= ~static_cast<unsigned>(GNUTLS_CERT_REVOKED);
    if (status == GNUTLS_CERT_INVALID) status = 0;
  }
  if (usable) return std::nullopt;
  if (failure) return failure;
  return crl_failure(0, verify_reason::other, "unable to get certificate CRL");
}

}  // namespace comm::detail::gtls
