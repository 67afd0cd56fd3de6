// OpenSSL error queue and X509_V_ERR_* codes in comm's terms.
#include "tls/openssl/common.hpp"

namespace comm::detail::ossl {

std::string drain_error_queue(unsigned long* first) {
  std::string text;
  if (first) *first = 0;
  while (unsigned long e = ERR_get_error()) {
    if (first && *first == 0) *first = e;
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed" -> keep the reason after the last "::"
    std::string_view s(buf);
    if (const char* r = ERR_reason_error_string(e)) s = r;
    if (!text.empty()) text += "; ";
    text += s;
  }
  return text;
}

verify_reason reason_from_x509(long code) noexcept {
  switch (code) {
    case X509_V_OK: return verify_reason::ok;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CRL_HAS_EXPIRED: return verify_reason::expired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CRL_NOT_YET_VALID: return verify_reason::not_yet_valid;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
    case X509_V_ERR_EMAIL_MISMATCH: return verify_reason::host_name_mismatch;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return verify_reason::unknown_issuer;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return verify_reason::self_signed;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return verify_reason::self_signed_in_chain;
    case X509_V_ERR_CERT_REVOKED: return verify_reason::revoked;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN: return verify_reason::invalid_ca;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return verify_reason::path_length_exceeded;
    case X509_V_ERR_INVALID_PURPOSE: return verify_reason::invalid_purpose;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_CA_MD_TOO_WEAK:
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL: return verify_reason::signature_failure;
    case X509_V_ERR_APPLICATION_VERIFICATION: return verify_reason::rejected_by_callback;
    default: return verify_reason::other;
  }
}

verify_result make_verify_result(long code, bool have_certificate) {
  verify_result r;
  if (!have_certificate) {
    r.ok = false;
    r.code = code;
    r.reason = verify_reason::no_certificate;
    r.message = "no peer certificate";
    return r;
  }
  r.ok = code == X509_V_OK;
  r.code = code;
  r.reason = reason_from_x509(code);
  r.message = X509_verify_cert_error_string(code);
  return r;
}

}  // namespace comm::detail::ossl
