// Verification results and peer certificate data from GnuTLS, in comm's implementation-neutral
// terms. Reasons follow OpenSSL's order of checks (chain, CA constraints, purpose, host name,
// revocation, signatures, validity) so that both implementations name the same reason, and the
// messages are OpenSSL's texts for the same conditions.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "tls/gnutls/common.hpp"
#include "tls/gnutls/crl.hpp"

namespace comm::detail::gtls {

crt_ptr import_der(const gnutls_datum_t& der) {
  gnutls_x509_crt_t crt = nullptr;
  if (gnutls_x509_crt_init(&crt) < 0) return nullptr;
  crt_ptr p(crt);
  if (gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER) < 0) return nullptr;
  return p;
}

namespace {

std::string take(gnutls_datum_t& d) {
  std::string s(reinterpret_cast<const char*>(d.data), d.size);
  gnutls_free(d.data);
  d.data = nullptr;
  return s;
}

std::string name_entry(int (*get)(gnutls_x509_crt_t, const char*, unsigned, unsigned, void*, size_t*),
                       gnutls_x509_crt_t crt, const char* oid) {
  std::string buf(256, '\0');
  size_t size = buf.size();
  int rc = get(crt, oid, 0, 0, buf.data(), &size);
  if (rc == GNUTLS_E_SHORT_MEMORY_BUFFER) {
    buf.resize(size);
    rc = get(crt, oid, 0, 0, buf.data(), &size);
  }
  if (rc < 0) return {};
  buf.resize(size);
  while (!buf.empty() && buf.back() == '\0') buf.pop_back();
  return buf;
}

certificate_data data_of(gnutls_x509_crt_t crt) {
  certificate_data d;
  gnutls_datum_t dn{};
  if (gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) d.subject = take(dn);
  if (gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0) == 0) d.issuer = take(dn);
  d.subject_common_name = name_entry(gnutls_x509_crt_get_dn_by_oid, crt, GNUTLS_OID_X520_COMMON_NAME);
  d.issuer_common_name = name_entry(gnutls_x509_crt_get_issuer_dn_by_oid, crt, GNUTLS_OID_X520_COMMON_NAME);

  unsigned char serial[64];
  size_t serial_size = sizeof serial;
  if (gnutls_x509_crt_get_serial(crt, serial, &serial_size) == 0) {
    // Like OpenSSL's BN_bn2hex: upper case, two digits per byte, leading zero bytes dropped ("0" for zero).
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;
    while (i < serial_size && serial[i] == 0) ++i;
    for (; i < serial_size; ++i) {
      d.serial_number += hex[serial[i] >> 4];
      d.serial_number += hex[serial[i] & 15];
    }
    if (d.serial_number.empty()) d.serial_number.push_back('0');  // not = "0": GCC 12 -O3 -Wrestrict
  }
  d.not_before = std::chrono::system_clock::from_time_t(gnutls_x509_crt_get_activation_time(crt));
  d.not_after = std::chrono::system_clock::from_time_t(gnutls_x509_crt_get_expiration_time(crt));

  for (unsigned i = 0; i < 1024; ++i) {
    std::string buf(256, '\0');
    size_t size = buf.size();
    int type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf.data(), &size, nullptr);
    if (type == GNUTLS_E_SHORT_MEMORY_BUFFER) {
      buf.resize(size);
      type = gnutls_x509_crt_get_subject_alt_name(crt, i, buf.data(), &size, nullptr);
    }
    if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || (type < 0 && type != GNUTLS_E_X509_UNKNOWN_SAN)) break;
    if (type == GNUTLS_SAN_DNSNAME) {
      d.dns_names.emplace_back(buf.data(), strnlen(buf.data(), size));
    } else if (type == GNUTLS_SAN_IPADDRESS && (size == 4 || size == 16)) {
      char text[INET6_ADDRSTRLEN] = {};
      if (inet_ntop(size == 4 ? AF_INET : AF_INET6, buf.data(), text, sizeof text)) d.ip_addresses.emplace_back(text);
    }
  }
  gnutls_datum_t pem{};
  if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem) == 0) d.pem = take(pem);
  return d;
}

bool self_issued(gnutls_x509_crt_t crt) { return gnutls_x509_crt_check_issuer(crt, crt) != 0; }

// GnuTLS reports path length and key usage violations of an issuer alike (signer constraints);
// OpenSSL names them apart. A CA sent by the peer with more CAs below it than its pathlen allows
// is the path length case.
bool path_length_exceeded(gnutls_session_t session) {
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  for (unsigned i = 1; certs != nullptr && i < n; ++i) {
    crt_ptr crt = import_der(certs[i]);
    unsigned critical = 0, ca = 0;
    int pathlen = -1;
    if (crt && gnutls_x509_crt_get_basic_constraints(crt.get(), &critical, &ca, &pathlen) >= 0 && ca && pathlen >= 0 &&
        static_cast<int>(i) - 1 > pathlen)
      return true;
  }
  return false;
}

// OpenSSL's default: a host name matches subjectAltName DNS entries only, never the subject's CN.
bool has_dns_san(gnutls_session_t session) {
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  crt_ptr leaf = n > 0 ? import_der(certs[0]) : nullptr;
  for (unsigned i = 0; leaf && i < 1024; ++i) {
    char buf[512];
    size_t size = sizeof buf;
    int type = gnutls_x509_crt_get_subject_alt_name(leaf.get(), i, buf, &size, nullptr);
    if (type == GNUTLS_SAN_DNSNAME) return true;
    if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
  }
  return false;
}

}  // namespace

verify_result verify_result_from_status(gnutls_session_t session, unsigned status) {
  verify_result r;
  r.code = static_cast<long>(status);
  if (status == 0) {
    r.ok = true;
    r.reason = verify_reason::ok;
    r.message = "ok";
    return r;
  }
  if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
    unsigned n = 0;
    const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
    crt_ptr leaf = n > 0 ? import_der(certs[0]) : nullptr;
    crt_ptr last = n > 1 ? import_der(certs[n - 1]) : nullptr;
    if (leaf && self_issued(leaf.get())) {  // OpenSSL's "depth zero" case, whatever else was sent
      r.reason = verify_reason::self_signed;
      r.message = "self-signed certificate";
    } else if (last && self_issued(last.get())) {
      r.reason = verify_reason::self_signed_in_chain;
      r.message = "self-signed certificate in certificate chain";
    } else {
      r.reason = verify_reason::unknown_issuer;
      r.message = "unable to get local issuer certificate";
    }
  } else if (status & GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE && path_length_exceeded(session)) {
    r.reason = verify_reason::path_length_exceeded;
    r.message = "path length constraint exceeded";
  } else if (status & (GNUTLS_CERT_SIGNER_NOT_CA | GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE)) {
    r.reason = verify_reason::invalid_ca;
    r.message = "invalid CA certificate";
  } else if (status & GNUTLS_CERT_PURPOSE_MISMATCH) {
    r.reason = verify_reason::invalid_purpose;
    r.message = "unsupported certificate purpose";
  } else if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
    r.reason = verify_reason::host_name_mismatch;
    r.message = "hostname mismatch";
  } else if (status & GNUTLS_CERT_REVOKED) {
    r.reason = verify_reason::revoked;
    r.message = "certificate revoked";
  } else if (status & (GNUTLS_CERT_SIGNATURE_FAILURE | GNUTLS_CERT_INSECURE_ALGORITHM)) {
    r.reason = verify_reason::signature_failure;
    r.message = "certificate signature failure";
  } else if (status & GNUTLS_CERT_EXPIRED) {
    r.reason = verify_reason::expired;
    r.message = "certificate has expired";
  } else if (status & GNUTLS_CERT_NOT_ACTIVATED) {
    r.reason = verify_reason::not_yet_valid;
    r.message = "certificate is not yet valid";
  } else {
    r.reason = verify_reason::other;
    gnutls_datum_t text{};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0) r.message = take(text);
    if (r.message.empty()) r.message = "certificate verification failed";
  }
  return r;
}

std::chrono::system_clock::time_point chain_not_after(const gnutls_datum_t* certs, unsigned n,
                                                      gnutls_certificate_credentials_t trust) {
  using clock = std::chrono::system_clock;
  auto earliest = clock::time_point::max();
  crt_ptr last;
  for (unsigned i = 0; i < n; ++i) {
    last = import_der(certs[i]);
    const time_t t = last ? gnutls_x509_crt_get_expiration_time(last.get()) : time_t(-1);
    if (t == time_t(-1)) return clock::time_point::min();  // unknown: not cached
    earliest = std::min(earliest, clock::from_time_t(t));
  }
  gnutls_x509_trust_list_t list = nullptr;
  gnutls_x509_crt_t anchor = nullptr;  // owned by the list
  if (last && trust != nullptr) gnutls_certificate_get_trust_list(trust, &list);
  if (list != nullptr && gnutls_x509_trust_list_get_issuer(list, last.get(), &anchor, 0) == 0 && anchor != nullptr) {
    const time_t t = gnutls_x509_crt_get_expiration_time(anchor);
    if (t == time_t(-1)) return clock::time_point::min();
    earliest = std::min(earliest, clock::from_time_t(t));
  }
  return earliest;
}

verify_result verify_session(gnutls_session_t session, const std::string& host_name, ssl_side side,
                             const std::vector<crl_ptr>* crls) {
  unsigned n = 0;
  if (gnutls_certificate_get_peers(session, &n) == nullptr || n == 0)
    return verify_result{false, 0, verify_reason::no_certificate, "no peer certificate"};
  // The host name check covers IP literals too: GnuTLS matches them against IP address SANs only.
  gnutls_typed_vdata_st data[2] = {};
  unsigned count = 0;
  if (!host_name.empty()) {
    data[count].type = GNUTLS_DT_DNS_HOSTNAME;
    data[count].data = reinterpret_cast<unsigned char*>(const_cast<char*>(host_name.c_str()));
    ++count;
  }
  data[count].type = GNUTLS_DT_KEY_PURPOSE_OID;
  data[count].data = reinterpret_cast<unsigned char*>(
      const_cast<char*>(side == ssl_side::client ? GNUTLS_KP_TLS_WWW_SERVER : GNUTLS_KP_TLS_WWW_CLIENT));
  ++count;
  unsigned status = 0;
  if (int rc = gnutls_certificate_verify_peers(session, data, count, &status); rc < 0)
    return verify_result{false, rc, verify_reason::other, error_text(rc)};
  if (!host_name.empty() && !is_ip_literal(host_name) && !has_dns_san(session))
    status |= GNUTLS_CERT_UNEXPECTED_OWNER | GNUTLS_CERT_INVALID;  // GnuTLS would fall back to the CN
  // OpenSSL checks revocation after chain, CA constraints, purpose and host name, and before the
  // signatures and validity periods: a missing or unusable CRL of the issuer comes in that place.
  constexpr unsigned before_revocation = GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE |
                                         GNUTLS_CERT_SIGNER_NOT_CA | GNUTLS_CERT_PURPOSE_MISMATCH |
                                         GNUTLS_CERT_UNEXPECTED_OWNER;
  if (crls != nullptr && !crls->empty() && (status & before_revocation) == 0) {
    if (auto failure = check_leaf_crls(session, *crls, status)) return *failure;
  }
  return verify_result_from_status(session, status);
}

std::vector<certificate_data> peer_certificates_data(gnutls_session_t session) {
  std::vector<certificate_data> out;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  for (unsigned i = 0; certs != nullptr && i < n; ++i) {
    if (crt_ptr crt = import_der(certs[i])) out.push_back(data_of(crt.get()));
  }
  return out;
}

std::vector<native_certificate> copy_peer_certificates(gnutls_session_t session) {
  std::vector<native_certificate> out;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session, &n);
  for (unsigned i = 0; certs != nullptr && i < n; ++i) {
    crt_ptr crt = import_der(certs[i]);
    if (!crt) throw ssl_error(ssl_errc::library_error, "ssl_connection_copy_peer_certificates: cannot import certificate");
    out.emplace_back(native_certificate::handle{crt.release()});
  }
  return out;
}

}  // namespace comm::detail::gtls
