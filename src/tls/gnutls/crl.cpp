// CRLs for GnuTLS credentials. GnuTLS keeps them in the credentials' trust list and checks each
// certificate of the peer's chain against the CRLs of its issuer that it has.
#include "tls/gnutls/crl.hpp"

#include "tls/gnutls/common.hpp"

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

}  // namespace comm::detail::gtls
