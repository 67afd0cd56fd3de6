// Certificate revocation lists (crl_file / crl_pem), for each implementation, over real TCP on
// 127.0.0.1: a CA, a server certificate and CRLs signed by the CA are made at run time; an OpenSSL
// comm server presents the certificate and a comm client of the implementation under test, trusting
// the CA, verifies it with or without a CRL.
#include <gtest/gtest.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include "comm/stream.hpp"
#include "comm/tls.hpp"
#include "peers/implementations.hpp"
#include "peers/policy_certs.hpp"
#include "tls/tls_test_util.hpp"

namespace {

using comm::verify_reason;
using comm_test::make_policy_cert;
using comm_test::policy_ca_spec;
using comm_test::policy_cert;
using namespace std::chrono_literals;

struct x509_free_t { void operator()(X509* p) const { X509_free(p); } };
struct pkey_free_t { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct crl_free_t { void operator()(X509_CRL* p) const { X509_CRL_free(p); } };
struct bio_free_t { void operator()(BIO* p) const { BIO_free(p); } };
using bio_ptr = std::unique_ptr<BIO, bio_free_t>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("CRL test: ") + what);
}

std::unique_ptr<X509, x509_free_t> read_cert(const std::string& pem) {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<X509, x509_free_t> c(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  check(c != nullptr, "read certificate");
  return c;
}

// A CRL issued by `ca` (in force from `from` to `until`, both in seconds from now) revoking the certificates in
// `revoked`, signed with the key of `signer` (default: the CA's own).
std::string make_crl(const policy_cert& ca, const std::vector<const policy_cert*>& revoked, long from = -3600,
                     long until = 7 * 24 * 3600, const policy_cert* signer = nullptr) {
  auto ca_cert = read_cert(ca.cert_pem);
  const std::string& signing_key = (signer ? *signer : ca).key_pem;
  bio_ptr kbio(BIO_new_mem_buf(signing_key.data(), static_cast<int>(signing_key.size())));
  std::unique_ptr<EVP_PKEY, pkey_free_t> key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  check(key != nullptr, "read CA key");
  std::unique_ptr<X509_CRL, crl_free_t> crl(X509_CRL_new());
  check(crl != nullptr, "X509_CRL_new");
  X509_CRL_set_version(crl.get(), 1);  // v2
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert.get()));
  ASN1_TIME* t = X509_gmtime_adj(nullptr, from);
  X509_CRL_set1_lastUpdate(crl.get(), t);
  X509_gmtime_adj(t, until);
  X509_CRL_set1_nextUpdate(crl.get(), t);
  for (const policy_cert* r : revoked) {
    auto cert = read_cert(r->cert_pem);
    X509_REVOKED* rev = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(cert.get()));
    X509_gmtime_adj(t, -600);
    X509_REVOKED_set_revocationDate(rev, t);
    X509_CRL_add0_revoked(crl.get(), rev);
  }
  ASN1_TIME_free(t);
  X509_CRL_sort(crl.get());
  check(X509_CRL_sign(crl.get(), key.get(), EVP_sha256()) > 0, "sign CRL");
  bio_ptr out(BIO_new(BIO_s_mem()));
  check(PEM_write_bio_X509_CRL(out.get(), crl.get()) == 1, "write CRL");
  char* p = nullptr;
  long n = BIO_get_mem_data(out.get(), &p);
  return std::string(p, static_cast<std::size_t>(n));
}

struct crl_pki {
  policy_cert ca = make_policy_cert(policy_ca_spec("crl test CA"), nullptr);
  policy_cert server = leaf(ca, "crl test server");
  policy_cert other = leaf(ca, "crl test other");
  std::string crl_revoking_server = make_crl(ca, {&server});
  std::string crl_revoking_other = make_crl(ca, {&other});
  // A CA that has nothing to do with the server, and its (empty) CRL.
  policy_cert unrelated_ca = make_policy_cert(policy_ca_spec("crl test unrelated CA"), nullptr);
  std::string unrelated_crl = make_crl(unrelated_ca, {});
  // The right issuer name, signed by another key; and the right CA's CRL, out of its period.
  policy_cert impostor = make_policy_cert(policy_ca_spec("crl test CA"), nullptr);
  std::string forged_crl = make_crl(ca, {}, -3600, 7 * 24 * 3600, &impostor);
  std::string forged_crl_revoking_server = make_crl(ca, {&server}, -3600, 7 * 24 * 3600, &impostor);
  std::string expired_crl = make_crl(ca, {}, -14 * 24 * 3600, -7 * 24 * 3600);
  std::string future_crl = make_crl(ca, {}, 24 * 3600, 7 * 24 * 3600);
  // A server certificate issued by an intermediate CA under `ca`.
  policy_cert intermediate = make_policy_cert(policy_ca_spec("crl test intermediate"), &ca);
  policy_cert chained_server = leaf(intermediate, "crl test chained server");
  std::string root_crl_revoking_intermediate = make_crl(ca, {&intermediate});
  std::string intermediate_crl = make_crl(intermediate, {});
  std::string intermediate_crl_revoking_server = make_crl(intermediate, {&chained_server});

  static policy_cert leaf(const policy_cert& ca, const std::string& cn) {
    comm_test::policy_cert_spec s;
    s.cn = cn;
    s.san = "DNS:localhost,IP:127.0.0.1";
    return make_policy_cert(s, &ca);
  }
};
const crl_pki& crl_test_pki() {
  static const crl_pki p;
  return p;
}

// A CRL written to a temporary file, removed with the object.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& content) {
    path = (std::filesystem::temp_directory_path() / ("comm_crl_" + std::to_string(::getpid()) + "_" +
                                                      std::to_string(counter()++) + ".pem"))
               .string();
    std::ofstream(path, std::ios::binary) << content;
  }
  ~temp_file() { std::remove(path.c_str()); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  static int& counter() {
    static int n = 0;
    return n;
  }
};

struct crl_verdict {
  bool ok = false;
  bool verification_failure = false;
  verify_reason reason = verify_reason::other;
  std::string what;
  comm::verify_result after;  // ssl_connection_verify once connected
};

class Crl : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  // The OpenSSL comm server presents crl_test_pki().server; the client under test trusts the CA and uses
  // the given CRL options.
  crl_verdict connect(const std::string& crl_file, const std::string& crl_pem) {
    return connect_to(crl_test_pki().server.cert_pem, crl_test_pki().server.key_pem, crl_file, crl_pem);
  }
  // The same with the chained server (leaf, then the intermediate).
  crl_verdict connect_chained(const std::string& crl_pem) {
    return connect_to(crl_test_pki().chained_server.cert_pem + crl_test_pki().intermediate.cert_pem, crl_test_pki().chained_server.key_pem, {},
                      crl_pem);
  }
  crl_verdict connect_to(const std::string& cert_pem, const std::string& key_pem, const std::string& crl_file,
                     const std::string& crl_pem, comm::verify_callback callback = {}) {
    comm::server srv = comm_test::start_line_echo_server(cert_pem, key_pem);

    crl_verdict v;
    try {
      comm::ssl_context_options co;
      co.implementation = GetParam();
      co.trusted_pem = crl_test_pki().ca.cert_pem;
      co.use_system_trusted = false;
      co.session_resumption = false;
      co.crl_file = crl_file;
      co.crl_pem = crl_pem;
      co.verify_callback = std::move(callback);
      auto client_ctx = comm::create_ssl_client_context(std::move(co));
      comm::connect_options c;
      c.timeout = 5s;
      auto sock = comm::connect_to_tcp_server("127.0.0.1", std::to_string(srv.local_port()), c);
      comm::attach_ssl_options tls;
      tls.ssl_ctx = client_ctx;
      tls.ssl_side = comm::ssl_side::client;
      tls.handshake_timeout = 5s;
      tls.tlsext_host_name = "localhost";
      comm::stream_options st;
      st.read_timeout = 5s;
      st.write_timeout = 5s;
      comm::socket_stream s(std::move(sock), st, std::move(tls));
      s.write_all("ping\n");
      s.flush();
      auto line = s.read_line();
      v.ok = line && *line == "ping";
      v.after = comm::ssl_connection_verify(s);
      v.reason = verify_reason::ok;
    } catch (const comm::ssl_verification_failure& e) {
      v.verification_failure = true;
      v.reason = e.reason();
      v.what = e.what();
    } catch (const std::exception& e) {
      v.what = e.what();
    }
    comm::server_terminate(srv);
    return v;
  }

  void expect_revoked(const crl_verdict& v) {
    EXPECT_FALSE(v.ok) << "a revoked certificate was accepted";
    EXPECT_TRUE(v.verification_failure) << v.what;
    EXPECT_EQ(v.reason, verify_reason::revoked) << "got " << comm::to_string(v.reason) << ": " << v.what;
  }

  // Refused as OpenSSL refuses it: verify_reason `reason` and OpenSSL's text for the case.
  void expect_refused(const crl_verdict& v, verify_reason reason, const std::string& text) {
    EXPECT_FALSE(v.ok) << "accepted";
    EXPECT_TRUE(v.verification_failure) << v.what;
    EXPECT_EQ(v.reason, reason) << "got " << comm::to_string(v.reason) << ": " << v.what;
    EXPECT_NE(v.what.find("certificate verify failed: " + text), std::string::npos) << v.what;
  }
};

TEST_P(Crl, WithoutCrlTheCertificateIsAccepted) {
  crl_verdict v = connect({}, {});
  EXPECT_TRUE(v.ok) << v.what;
}

TEST_P(Crl, CrlPemRevokingTheServerRefusesIt) {
  expect_revoked(connect({}, crl_test_pki().crl_revoking_server));
}

TEST_P(Crl, CrlFileRevokingTheServerRefusesIt) {
  temp_file f(crl_test_pki().crl_revoking_server);
  expect_revoked(connect(f.path, {}));
}

TEST_P(Crl, CrlRevokingAnotherSerialAcceptsTheServer) {
  crl_verdict v = connect({}, crl_test_pki().crl_revoking_other);
  EXPECT_TRUE(v.ok) << v.what;
  temp_file f(crl_test_pki().crl_revoking_other);
  crl_verdict w = connect(f.path, {});
  EXPECT_TRUE(w.ok) << w.what;
}


// Once CRLs are given, the issuer of the peer's certificate must have one among them (OpenSSL's
// X509_V_FLAG_CRL_CHECK; GnuTLS made to agree).
TEST_P(Crl, CrlOnlyFromAnUnrelatedCaRefusesTheServer) {
  expect_refused(connect({}, crl_test_pki().unrelated_crl), verify_reason::other, "unable to get certificate CRL");
  temp_file f(crl_test_pki().unrelated_crl);
  expect_refused(connect(f.path, {}), verify_reason::other, "unable to get certificate CRL");
}

TEST_P(Crl, CrlFromTheIssuerBesideAnUnrelatedOneAcceptsTheServer) {
  crl_verdict v = connect({}, crl_test_pki().unrelated_crl + crl_test_pki().crl_revoking_other);
  EXPECT_TRUE(v.ok) << v.what;
  temp_file f(crl_test_pki().unrelated_crl);
  crl_verdict w = connect(f.path, crl_test_pki().crl_revoking_other);
  EXPECT_TRUE(w.ok) << w.what;
}

TEST_P(Crl, RevokedByTheIssuersCrlBesideAnUnrelatedOne) {
  expect_revoked(connect({}, crl_test_pki().unrelated_crl + crl_test_pki().crl_revoking_server));
}

TEST_P(Crl, CrlWithTheIssuersNameButAnotherSignatureRefusesTheServer) {
  expect_refused(connect({}, crl_test_pki().forged_crl), verify_reason::other, "CRL signature failure");
  // A forged CRL revokes nothing.
  expect_refused(connect({}, crl_test_pki().forged_crl_revoking_server), verify_reason::other, "CRL signature failure");
}

// A verify callback sees the same verdict, and ssl_connection_verify tells it after accepting.
TEST_P(Crl, VerifyCallbackSeesTheMissingCrl) {
  comm::verify_result seen;
  crl_verdict v = connect_to(crl_test_pki().server.cert_pem, crl_test_pki().server.key_pem, {}, crl_test_pki().unrelated_crl,
                         [&seen](comm::ssl_connection&, const comm::verify_result& r) {
                           seen = r;
                           return true;
                         });
  EXPECT_TRUE(v.ok) << v.what;
  EXPECT_FALSE(seen.ok);
  EXPECT_EQ(seen.reason, verify_reason::other);
  EXPECT_EQ(seen.message, "unable to get certificate CRL");
  EXPECT_FALSE(v.after.ok);
  EXPECT_EQ(v.after.message, "unable to get certificate CRL");
}

TEST_P(Crl, IssuersCrlOutOfItsPeriodRefusesTheServer) {
  expect_refused(connect({}, crl_test_pki().expired_crl), verify_reason::expired, "CRL has expired");
  expect_refused(connect({}, crl_test_pki().future_crl), verify_reason::not_yet_valid, "CRL is not yet valid");
}

// Only the leaf is checked: its issuer is the intermediate, whose own revocation (by the root's
// CRL) is not looked at, and the root needs no CRL.
TEST_P(Crl, ChainedServerNeedsTheIntermediatesCrlOnly) {
  crl_verdict v = connect_chained(crl_test_pki().intermediate_crl);
  EXPECT_TRUE(v.ok) << v.what;
  expect_refused(connect_chained(crl_test_pki().root_crl_revoking_intermediate), verify_reason::other,
                 "unable to get certificate CRL");
  crl_verdict w = connect_chained(crl_test_pki().root_crl_revoking_intermediate + crl_test_pki().intermediate_crl);
  EXPECT_TRUE(w.ok) << "intermediates are not checked against CRLs: " << w.what;
  expect_revoked(connect_chained(crl_test_pki().intermediate_crl_revoking_server));
}

TEST_P(Crl, CrlFileThatDoesNotExistIsAnErrorAtCreation) {
  comm::ssl_context_options co;
  co.implementation = GetParam();
  co.trusted_pem = crl_test_pki().ca.cert_pem;
  co.crl_file = "/nonexistent/comm-crl.pem";
  try {
    comm::create_ssl_client_context(std::move(co));
    FAIL() << "a missing CRL file was accepted";
  } catch (const comm::ssl_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/comm-crl.pem"), std::string::npos) << e.what();
  }
}

TEST_P(Crl, CrlPemWithoutCrlIsRejected) {
  comm::ssl_context_options co;
  co.implementation = GetParam();
  co.trusted_pem = crl_test_pki().ca.cert_pem;
  co.crl_pem = crl_test_pki().ca.cert_pem;  // a certificate, not a CRL
  EXPECT_THROW(comm::create_ssl_client_context(std::move(co)), comm::ssl_failure);
}

INSTANTIATE_TEST_SUITE_P(Implementations, Crl, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

}  // namespace
