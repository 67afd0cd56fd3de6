// CRLs for OpenSSL contexts. Only the leaf is checked (X509_V_FLAG_CRL_CHECK, not _CRL_CHECK_ALL):
// users usually have the CRL of the CA that issues their servers, and checking the whole chain
// would fail every connection whose intermediate CAs have no CRL loaded.
#include "tls/openssl/crl.hpp"

#include <openssl/pem.h>

#include "tls/openssl/common.hpp"

namespace comm::detail::ossl {

namespace {

// Reads every PEM CRL of `bio` into the store; returns how many.
int add_crls(X509_STORE* store, BIO* bio) {
  int n = 0;
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr)) {
    X509_STORE_add_crl(store, crl);  // takes its own reference
    X509_CRL_free(crl);
    ++n;
  }
  ERR_clear_error();  // the loop ends on "no start line"
  return n;
}

}  // namespace

void load_crls(openssl_context& c, const std::string& op) {
  const auto& o = c.options;
  if (o.crl_file.empty() && o.crl_pem.empty()) return;
  X509_STORE* store = SSL_CTX_get_cert_store(c.ctx.get());
  if (!o.crl_file.empty()) {
    bio_ptr bio(BIO_new_file(o.crl_file.c_str(), "r"));
    if (!bio) {
      unsigned long code = 0;
      std::string text = drain_error_queue(&code);
      throw ssl_error(ssl_errc::library_error, op + ": cannot open CRL file " + o.crl_file + (text.empty() ? "" : ": " + text),
                      {ssl_code_kind::library, long(code)});
    }
    if (add_crls(store, bio.get()) == 0)
      throw ssl_failure(ssl_errc::invalid_argument, op + ": option crl_file: " + o.crl_file + " holds no CRL");
  }
  if (!o.crl_pem.empty()) {
    bio_ptr bio(BIO_new_mem_buf(o.crl_pem.data(), static_cast<int>(o.crl_pem.size())));
    if (!bio || add_crls(store, bio.get()) == 0)
      throw ssl_failure(ssl_errc::invalid_argument, op + ": option crl_pem holds no CRL");
  }
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
}

}  // namespace comm::detail::ossl
