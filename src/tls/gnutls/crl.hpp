// Certificate revocation lists for the GnuTLS implementation (options crl_file / crl_pem).
#pragma once

#include <gnutls/gnutls.h>

#include <string>

#include "comm/tls.hpp"

namespace comm::detail::gtls {

// Adds the CRLs of `options` to the credentials; gnutls_certificate_verify_peers then refuses a
// revoked peer certificate (GNUTLS_CERT_REVOKED). Nothing when neither option is given.
void load_crls(gnutls_certificate_credentials_t cred, const ssl_context_options& options, const std::string& operation);

}  // namespace comm::detail::gtls
