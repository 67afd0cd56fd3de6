// Certificates for the verification policy tests, made in memory with the OpenSSL API: any subject,
// SANs, validity window, basic constraints (CA flag, path length) and issuer. Keys are ECDSA P-256.
#pragma once

#include <memory>
#include <string>

namespace comm_test {

struct policy_cert_spec {
  std::string cn = "comm policy test";
  std::string san;  // "DNS:a.example.com,IP:127.0.0.1"; empty = no subjectAltName at all
  // "critical,CA:TRUE,pathlen:0", "critical,CA:FALSE"; empty = no basicConstraints extension.
  std::string basic_constraints = "critical,CA:FALSE";
  std::string key_usage = "critical,digitalSignature";  // empty = none
  std::string eku = "serverAuth";                       // empty = none
  long not_before = -3600;                              // seconds from now
  long not_after = 7 * 24 * 3600;
};

struct policy_cert {
  std::string cert_pem;
  std::string key_pem;
  struct native;  // the OpenSSL objects, kept to sign with
  std::shared_ptr<native> impl;
};

// A CA spec (CA:TRUE, keyCertSign) with an optional path length (-1 = none).
policy_cert_spec policy_ca_spec(const std::string& cn, int pathlen = -1);
// Signs with issuer (nullptr = self-signed).
policy_cert make_policy_cert(const policy_cert_spec& spec, const policy_cert* issuer);

}  // namespace comm_test
