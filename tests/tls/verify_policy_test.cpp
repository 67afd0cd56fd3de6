// Verification policy of the client, for each implementation, over real TCP on 127.0.0.1: a TLS
// start_up_server presents a certificate made for the case, and a socket_stream client verifies it
// against the name under test (tlsext_host_name, or host_name for IP addresses). Validity, host
// names (IP SAN vs DNS SAN, wildcards, CN without SAN), CA basic constraints, path length and an
// intermediate missing from the chain.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

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
using comm_test::policy_cert_spec;
using namespace std::chrono_literals;

struct policy_pki {
  policy_cert root = make_policy_cert(policy_ca_spec("policy root"), nullptr);
  policy_cert inter = make_policy_cert(policy_ca_spec("policy intermediate"), &root);
};
const policy_pki& policy_test_pki() {
  static const policy_pki p;
  return p;
}

policy_cert leaf(const std::string& san, const std::string& cn = "leaf", const policy_cert* issuer = nullptr,
                 long not_before = -3600, long not_after = 7 * 24 * 3600) {
  policy_cert_spec s;
  s.cn = cn;
  s.san = san;
  s.not_before = not_before;
  s.not_after = not_after;
  return make_policy_cert(s, issuer ? issuer : &policy_test_pki().inter);
}

// What the client saw: ok, or the verification reason (other failures are reported as text).
struct policy_verdict {
  bool ok = false;
  verify_reason reason = verify_reason::other;
  std::string what;
};

class VerifyPolicy : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  // Serves `chain_pem` (leaf first) with `key_pem`; a client of the implementation under test
  // trusting only the policy root connects to 127.0.0.1 and verifies `name` (SNI + host name), or
  // an IP text given as host_name.
  policy_verdict connect(const std::string& chain_pem, const std::string& key_pem, const std::string& name,
                  const std::string& host_name = {}) {
    comm::server srv = comm_test::start_line_echo_server(chain_pem, key_pem);

    comm::ssl_context_options co;
    co.implementation = GetParam();
    co.trusted_pem = policy_test_pki().root.cert_pem;
    co.use_system_trusted = false;
    co.session_resumption = false;
    auto client_ctx = comm::create_ssl_client_context(std::move(co));

    policy_verdict v;
    try {
      comm::connect_options c;
      c.timeout = 5s;
      auto sock = comm::connect_to_tcp_server("127.0.0.1", std::to_string(srv.local_port()), c);
      comm::attach_ssl_options tls;
      tls.ssl_ctx = client_ctx;
      tls.ssl_side = comm::ssl_side::client;
      tls.handshake_timeout = 5s;
      tls.tlsext_host_name = name;
      tls.host_name = host_name;
      comm::stream_options st;
      st.read_timeout = 5s;
      st.write_timeout = 5s;
      comm::socket_stream s(std::move(sock), st, std::move(tls));
      s.write_all("ping\n");
      s.flush();
      auto line = s.read_line();
      v.ok = line && *line == "ping";
      v.reason = verify_reason::ok;
    } catch (const comm::ssl_verification_failure& e) {
      v.reason = e.reason();
      v.what = e.what();
    } catch (const std::exception& e) {
      v.what = e.what();
    }
    comm::server_terminate(srv);
    return v;
  }

  void expect_ok(const policy_cert& l, const std::string& chain_rest, const std::string& name,
                 const std::string& host_name = {}) {
    policy_verdict v = connect(l.cert_pem + chain_rest, l.key_pem, name, host_name);
    EXPECT_TRUE(v.ok) << "name " << name << " host " << host_name << ": " << v.what;
  }
  void expect_refused(const policy_cert& l, const std::string& chain_rest, const std::string& name,
                      verify_reason reason, const std::string& host_name = {}) {
    policy_verdict v = connect(l.cert_pem + chain_rest, l.key_pem, name, host_name);
    EXPECT_FALSE(v.ok) << "name " << name << " host " << host_name << " was accepted";
    EXPECT_EQ(v.reason, reason) << "name " << name << " host " << host_name << ": got "
                                << comm::to_string(v.reason) << ": " << v.what;
  }
};

TEST_P(VerifyPolicy, GoodChainThroughIntermediateIsAccepted) {
  expect_ok(leaf("DNS:localhost"), policy_test_pki().inter.cert_pem, "localhost");
}

TEST_P(VerifyPolicy, ExpiredIsRefused) {
  expect_refused(leaf("DNS:localhost", "leaf", nullptr, -30 * 24 * 3600, -24 * 3600), policy_test_pki().inter.cert_pem,
                 "localhost", verify_reason::expired);
}

TEST_P(VerifyPolicy, NotYetValidIsRefused) {
  expect_refused(leaf("DNS:localhost", "leaf", nullptr, 24 * 3600, 30 * 24 * 3600), policy_test_pki().inter.cert_pem,
                 "localhost", verify_reason::not_yet_valid);
}

TEST_P(VerifyPolicy, WrongHostIsRefused) {
  expect_refused(leaf("DNS:wrong.example.com"), policy_test_pki().inter.cert_pem, "localhost", verify_reason::host_name_mismatch);
}

TEST_P(VerifyPolicy, IpSanMatchesTheAddressButNotAName) {
  auto l = leaf("IP:127.0.0.1");
  expect_ok(l, policy_test_pki().inter.cert_pem, "", "127.0.0.1");
  expect_refused(l, policy_test_pki().inter.cert_pem, "localhost", verify_reason::host_name_mismatch);
  expect_refused(l, policy_test_pki().inter.cert_pem, "", verify_reason::host_name_mismatch, "127.0.0.2");
}

// An address written as a DNS name is not an IP address SAN.
TEST_P(VerifyPolicy, DnsSanWithAddressTextDoesNotMatchTheAddress) {
  expect_refused(leaf("DNS:127.0.0.1"), policy_test_pki().inter.cert_pem, "", verify_reason::host_name_mismatch, "127.0.0.1");
}

TEST_P(VerifyPolicy, WildcardMatchesOneLabelOnly) {
  auto l = leaf("DNS:*.example.com");
  expect_ok(l, policy_test_pki().inter.cert_pem, "a.example.com");
  expect_refused(l, policy_test_pki().inter.cert_pem, "a.b.example.com", verify_reason::host_name_mismatch);
  expect_refused(l, policy_test_pki().inter.cert_pem, "example.com", verify_reason::host_name_mismatch);
}

// RFC 6125 / CA/B Forum: a name is matched against the SANs only; a certificate with just a
// Common Name is refused for a host name.
TEST_P(VerifyPolicy, CommonNameWithoutSanIsRefusedForAHostName) {
  expect_refused(leaf("", "localhost"), policy_test_pki().inter.cert_pem, "localhost", verify_reason::host_name_mismatch);
}

TEST_P(VerifyPolicy, IntermediateMissingFromTheChainFails) {
  expect_refused(leaf("DNS:localhost"), "", "localhost", verify_reason::unknown_issuer);
}

// root -> intermediate (pathlen:0) -> sub-intermediate -> leaf: one CA too many below the limit.
TEST_P(VerifyPolicy, PathLengthConstraintIsHonoured) {
  const auto& root = policy_test_pki().root;
  auto limited = make_policy_cert(policy_ca_spec("pathlen 0 intermediate", 0), &root);
  auto sub = make_policy_cert(policy_ca_spec("sub intermediate"), &limited);
  auto l = leaf("DNS:localhost", "leaf", &sub);
  expect_refused(l, sub.cert_pem + limited.cert_pem, "localhost", verify_reason::path_length_exceeded);
  // Control: the same depth without the limit verifies.
  auto open = make_policy_cert(policy_ca_spec("unlimited intermediate"), &root);
  auto sub2 = make_policy_cert(policy_ca_spec("sub intermediate 2"), &open);
  expect_ok(leaf("DNS:localhost", "leaf", &sub2), sub2.cert_pem + open.cert_pem, "localhost");
}

// An intermediate whose basic constraints say CA:FALSE cannot issue certificates.
TEST_P(VerifyPolicy, IssuerWithoutCaBasicConstraintIsRefused) {
  policy_cert_spec not_ca = policy_ca_spec("not a CA");
  not_ca.basic_constraints = "critical,CA:FALSE";
  auto fake = make_policy_cert(not_ca, &policy_test_pki().root);
  expect_refused(leaf("DNS:localhost", "leaf", &fake), fake.cert_pem, "localhost", verify_reason::invalid_ca);
}

INSTANTIATE_TEST_SUITE_P(Implementations, VerifyPolicy, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name());

}  // namespace
