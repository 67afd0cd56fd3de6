#include "peers/certificates.hpp"

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

namespace comm_test {
namespace {

struct x509_free_t { void operator()(X509* p) const { X509_free(p); } };
struct pkey_free_t { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct bio_free_t { void operator()(BIO* p) const { BIO_free_all(p); } };
using x509_ptr = std::unique_ptr<X509, x509_free_t>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free_t>;
using bio_ptr = std::unique_ptr<BIO, bio_free_t>;

struct issued {
  x509_ptr cert;
  pkey_ptr key;
};

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test certificates: ") + what);
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

struct spec {
  std::string cn;
  std::string san;            // "DNS:localhost,IP:127.0.0.1"; empty = none
  bool ca = false;
  long not_before = -3600;    // seconds from now
  long not_after = 7 * 24 * 3600;
  std::string eku = "serverAuth,clientAuth";
};

issued make(const spec& s, const issued* issuer) {
  issued out;
  out.key.reset(EVP_EC_gen("P-256"));
  check(out.key != nullptr, "key");
  out.cert.reset(X509_new());
  X509* c = out.cert.get();
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
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("comm tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(s.cn.c_str()), -1, -1, 0);
  X509* signer = issuer ? issuer->cert.get() : c;
  X509_set_issuer_name(c, X509_get_subject_name(signer));
  X509_set_pubkey(c, out.key.get());
  add_ext(c, signer, NID_basic_constraints, s.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_ext(c, signer, NID_key_usage, s.ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_ext(c, signer, NID_subject_key_identifier, "hash");
  if (issuer) add_ext(c, signer, NID_authority_key_identifier, "keyid:always");
  if (!s.ca && !s.eku.empty()) add_ext(c, signer, NID_ext_key_usage, s.eku);
  if (!s.san.empty()) add_ext(c, signer, NID_subject_alt_name, s.san);
  check(X509_sign(c, issuer ? issuer->key.get() : out.key.get(), EVP_sha256()) != 0, "sign");
  return out;
}

std::string pem(X509* c) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), c);
  char* d = nullptr;
  long n = BIO_get_mem_data(b.get(), &d);
  return std::string(d, static_cast<std::size_t>(n));
}

std::string pem(EVP_PKEY* k, const std::string& password = {}) {
  bio_ptr b(BIO_new(BIO_s_mem()));
  if (password.empty())
    PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  else
    PEM_write_bio_PKCS8PrivateKey(b.get(), k, EVP_aes_256_cbc(), password.data(), static_cast<int>(password.size()),
                                  nullptr, nullptr);
  char* d = nullptr;
  long n = BIO_get_mem_data(b.get(), &d);
  return std::string(d, static_cast<std::size_t>(n));
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  check(f.good(), "write");
}

credential save(const std::string& dir, const std::string& name, const issued& leaf, const issued* chain) {
  credential c;
  c.cert_pem = pem(leaf.cert.get()) + (chain ? pem(chain->cert.get()) : std::string());
  c.key_pem = pem(leaf.key.get());
  c.cert_file = dir + "/" + name + ".crt";
  c.key_file = dir + "/" + name + ".key";
  write_file(c.cert_file, c.cert_pem);
  write_file(c.key_file, c.key_pem);
  if (chain) {
    c.chain_file = dir + "/" + name + "-chain.crt";
    write_file(c.chain_file, pem(chain->cert.get()));
  }
  return c;
}

struct holder {
  test_pki pki;
  holder() {
    char tmpl[] = "/tmp/comm-test-pki-XXXXXX";
    check(::mkdtemp(tmpl) != nullptr, "mkdtemp");
    auto& p = pki;
    p.dir = tmpl;
    const std::string localhost = "DNS:localhost,IP:127.0.0.1,IP:::1";
    issued root = make({.cn = "comm test root CA", .san = "", .ca = true, .not_after = 30L * 24 * 3600}, nullptr);
    issued inter = make({.cn = "comm test intermediate CA", .san = "", .ca = true, .not_after = 30L * 24 * 3600}, &root);
    issued other = make({.cn = "comm test other CA", .san = "", .ca = true}, nullptr);
    p.ca_pem = pem(root.cert.get());
    p.ca_file = p.dir + "/ca.crt";
    write_file(p.ca_file, p.ca_pem);
    p.other_ca_file = p.dir + "/other-ca.crt";
    write_file(p.other_ca_file, pem(other.cert.get()));

    issued good = make({.cn = "localhost", .san = localhost}, &inter);
    p.good = save(p.dir, "good", good, &inter);
    p.expired = save(p.dir, "expired", make({.cn = "localhost", .san = localhost, .not_before = -7200, .not_after = -3600}, &inter), &inter);
    p.not_yet_valid = save(p.dir, "not-yet-valid", make({.cn = "localhost", .san = localhost, .not_before = 3600, .not_after = 7200}, &inter), &inter);
    p.wrong_host = save(p.dir, "wrong-host", make({.cn = "wrong.example.com", .san = "DNS:wrong.example.com"}, &inter), &inter);
    p.self_signed = save(p.dir, "self-signed", make({.cn = "localhost", .san = localhost}, nullptr), nullptr);
    p.untrusted = save(p.dir, "untrusted", make({.cn = "localhost", .san = localhost}, &other), nullptr);
    p.alt_host = save(p.dir, "alt-host", make({.cn = "alt.example.com", .san = "DNS:alt.example.com"}, &inter), &inter);
    p.client = save(p.dir, "client", make({.cn = "comm test client", .san = "", .eku = "clientAuth"}, &inter), &inter);
    p.untrusted_client = save(p.dir, "untrusted-client", make({.cn = "comm test client", .san = "", .eku = "clientAuth"}, &other), nullptr);
    p.encrypted_key_file = p.dir + "/good-encrypted.key";
    write_file(p.encrypted_key_file, pem(good.key.get(), p.key_password));
  }
  ~holder() {
    std::error_code ec;
    std::filesystem::remove_all(pki.dir, ec);
  }
};

}  // namespace

const test_pki& pki() {
  static const holder h;
  return h.pki;
}

}  // namespace comm_test
