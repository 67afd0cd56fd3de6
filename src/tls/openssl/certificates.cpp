// Peer certificates as data (subject, issuer, serial, validity, SANs, PEM) and as native handles.
#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/pem.h>

#include <ctime>

#include "tls/openssl/engine.hpp"

namespace comm::detail::ossl {
namespace {

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

std::string name_line(const X509_NAME* name) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return bio_text(bio.get());
}

std::string common_name(const X509_NAME* name) {
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return {};
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n < 0) return {};
  std::string s(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return s;
}

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

certificate_data data_of(X509* x) {
  certificate_data d;
  d.subject = name_line(X509_get_subject_name(x));
  d.subject_common_name = common_name(X509_get_subject_name(x));
  d.issuer = name_line(X509_get_issuer_name(x));
  d.issuer_common_name = common_name(X509_get_issuer_name(x));
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      d.serial_number = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  d.not_before = to_time_point(X509_get0_notBefore(x));
  d.not_after = to_time_point(X509_get0_notAfter(x));
  if (auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
      if (g->type == GEN_DNS) {
        d.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                                 static_cast<std::size_t>(ASN1_STRING_length(g->d.dNSName)));
      } else if (g->type == GEN_IPADD) {
        const int len = ASN1_STRING_length(g->d.iPAddress);
        char text[INET6_ADDRSTRLEN] = {};
        if ((len == 4 || len == 16) &&
            inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.iPAddress), text, sizeof text))
          d.ip_addresses.emplace_back(text);
      }
    }
    GENERAL_NAMES_free(names);
  }
  bio_ptr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x);
  d.pem = bio_text(bio.get());
  return d;
}

}  // namespace

// Leaf first, then the chain the peer sent (a server's chain includes its leaf, a client's not).
std::vector<X509*> openssl_engine::peer_chain() const {
  std::vector<X509*> out;
  X509* leaf = SSL_get0_peer_certificate(ssl_.get());
  if (leaf == nullptr) return out;
  out.push_back(leaf);
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_.get()))
    for (int i = 0; i < sk_X509_num(chain); ++i)
      if (X509* c = sk_X509_value(chain, i); X509_cmp(c, leaf) != 0) out.push_back(c);
  return out;
}

std::vector<certificate_data> openssl_engine::peer_certificates_data() const {
  std::vector<certificate_data> out;
  for (X509* x : peer_chain()) out.push_back(data_of(x));
  ERR_clear_error();
  return out;
}

std::vector<native_certificate> openssl_engine::copy_peer_certificates() const {
  std::vector<native_certificate> out;
  for (X509* x : peer_chain()) {
    X509_up_ref(x);
    out.emplace_back(native_certificate::handle{x});
  }
  return out;
}

}  // namespace comm::detail::ossl
