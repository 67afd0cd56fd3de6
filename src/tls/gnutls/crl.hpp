// Certificate revocation lists for the GnuTLS implementation (options crl_file / crl_pem).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tls/gnutls/common.hpp"

namespace comm::detail::gtls {

// Adds the CRLs of `options` to the credentials; gnutls_certificate_verify_peers then refuses a
// revoked peer certificate (GNUTLS_CERT_REVOKED). Nothing when neither option is given.
void load_crls(gnutls_certificate_credentials_t cred, const ssl_context_options& options, const std::string& operation);

// The same CRLs as objects, for check_leaf_crls (GnuTLS cannot list a trust list's CRLs).
std::vector<crl_ptr> read_crls(const ssl_context_options& options, const std::string& operation);

// OpenSSL's X509_V_FLAG_CRL_CHECK on top of GnuTLS's verdict `status`, once CRLs are given: only
// the leaf is checked, against the CRLs of its issuer that are signed by it and in force now. A
// revocation GnuTLS found elsewhere in the chain (or by an unusable CRL) is taken out of `status`;
// one of the leaf is put in. When the issuer has no usable CRL: the failure OpenSSL reports
// ("unable to get certificate CRL", "CRL signature failure", "CRL has expired", "CRL is not yet
// valid"); nothing otherwise.
std::optional<verify_result> check_leaf_crls(gnutls_session_t session, const std::vector<crl_ptr>& crls,
                                             unsigned& status);

}  // namespace comm::detail::gtls
