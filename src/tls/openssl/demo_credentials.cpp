// make_demo_credentials: a throwaway CA and a leaf certificate made in memory (ECDSA P-256).
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "tls/openssl/common.hpp"

namespace comm {
namespace {

using detail::ossl::bio_ptr;
using detail::ossl::pkey_ptr;
using detail::ossl::x509_ptr;

[[noreturn]] void fail(const std::string& what) {
  throw ssl_error(ssl_errc::library_error, "make_demo_credentials: " + what + ": " + detail::ossl::drain_error_queue());
}

pkey_ptr new_key() {
  pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) fail("EC key generation");
  return key;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) fail("extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

x509_ptr make_cert(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool ca,
                   const std::string& san) {
  x509_ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 30L * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("comm demo"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  X509* signer = issuer ? issuer : cert.get();
  add_ext(cert.get(), signer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_ext(cert.get(), signer, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_ext(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (!ca) add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
  if (!san.empty()) add_ext(cert.get(), signer, NID_subject_alt_name, san);
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0) fail("signing " + cn);
  return cert;
}

std::string pem_of(X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string pem_of(EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  std::string s(data, static_cast<std::size_t>(n));
  OPENSSL_cleanse(data, static_cast<std::size_t>(n));
  return s;
}

}  // namespace

demo_credentials make_demo_credentials(const std::string& host_name) {
  ERR_clear_error();
  unsigned char buf[16];
  const bool numeric = inet_pton(AF_INET, host_name.c_str(), buf) == 1 || inet_pton(AF_INET6, host_name.c_str(), buf) == 1;
  std::string san = numeric ? "IP:" + host_name : "DNS:" + host_name;
  if (host_name == "localhost") san += ",IP:127.0.0.1,IP:::1";  // so connecting by loopback address verifies too
  pkey_ptr ca_key = new_key();
  x509_ptr ca = make_cert("comm demo CA", ca_key.get(), nullptr, nullptr, true, "");
  pkey_ptr key = new_key();
  x509_ptr leaf = make_cert(host_name, key.get(), ca.get(), ca_key.get(), false, san);
  return {pem_of(ca.get()), pem_of(leaf.get()), pem_of(key.get())};
}

}  // namespace comm
