#include "peers/policy_certs.hpp"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace comm_test {

struct policy_cert::native {
  struct x509_free_t { void operator()(X509* p) const { X509_free(p); } };
  struct pkey_free_t { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
  std::unique_ptr<X509, x509_free_t> cert;
  std::unique_ptr<EVP_PKEY, pkey_free_t> key;
};

namespace {

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("policy certificates: ") + what);
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  if (value.empty()) return;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

std::string to_pem(int (*write)(BIO*, void*), void* obj) {
  BIO* bio = BIO_new(BIO_s_mem());
  check(bio != nullptr && write(bio, obj) == 1, "PEM");
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  std::string s(p, static_cast<std::size_t>(n));
  BIO_free(bio);
  return s;
}

}  // namespace

policy_cert_spec policy_ca_spec(const std::string& cn, int pathlen) {
  policy_cert_spec s;
  s.cn = cn;
  s.basic_constraints = "critical,CA:TRUE" + (pathlen >= 0 ? ",pathlen:" + std::to_string(pathlen) : std::string());
  s.key_usage = "critical,keyCertSign,cRLSign";
  s.eku.clear();
  return s;
}

policy_cert make_policy_cert(const policy_cert_spec& s, const policy_cert* issuer) {
  policy_cert out;
  out.impl = std::make_shared<policy_cert::native>();
  out.impl->key.reset(EVP_EC_gen("P-256"));
  check(out.impl->key != nullptr, "key");
  out.impl->cert.reset(X509_new());
  X509* c = out.impl->cert.get();
  X509_set_version(c, 2);
  unsigned char serial[12];
  RAND_bytes(serial, sizeof serial);
  serial[0] = static_cast<unsigned char>((serial[0] & 0x7f) | 0x10);
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(c), s.not_before);
  X509_gmtime_adj(X509_getm_notAfter(c), s.not_after);
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("comm policy tests"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(s.cn.c_str()), -1,
                             -1, 0);
  X509* signer = issuer ? issuer->impl->cert.get() : c;
  EVP_PKEY* signer_key = issuer ? issuer->impl->key.get() : out.impl->key.get();
  X509_set_issuer_name(c, X509_get_subject_name(signer));
  X509_set_pubkey(c, out.impl->key.get());
  add_ext(c, signer, NID_basic_constraints, s.basic_constraints);
  add_ext(c, signer, NID_key_usage, s.key_usage);
  add_ext(c, signer, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(c, signer, NID_authority_key_identifier, "keyid:always");
  add_ext(c, signer, NID_ext_key_usage, s.eku);
  add_ext(c, signer, NID_subject_alt_name, s.san);
  check(X509_sign(c, signer_key, EVP_sha256()) > 0, "sign");
  out.cert_pem = to_pem([](BIO* b, void* x) { return PEM_write_bio_X509(b, static_cast<X509*>(x)); }, c);
  out.key_pem = to_pem(
      [](BIO* b, void* k) {
        return PEM_write_bio_PrivateKey(b, static_cast<EVP_PKEY*>(k), nullptr, nullptr, 0, nullptr, nullptr);
      },
      out.impl->key.get());
  return out;
}

}  // namespace comm_test
