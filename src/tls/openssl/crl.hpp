// Certificate revocation lists for the OpenSSL implementation (options crl_file / crl_pem).
#pragma once

#include <string>

namespace comm::detail::ossl {

class openssl_context;

// Adds the CRLs of the context's options to its SSL_CTX's X509_STORE and turns on CRL checking of
// the peer's certificate. Nothing when neither option is given. ssl_error naming the source when a
// file cannot be read; ssl_failure (invalid_argument) when the source holds no CRL.
void load_crls(openssl_context& c, const std::string& operation);

}  // namespace comm::detail::ossl
