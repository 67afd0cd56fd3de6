// Test certificates, made once per test process with the OpenSSL API into a temporary folder
// (removed at exit). Keys are ECDSA P-256. The good chain is root CA -> intermediate -> leaf.
#pragma once

#include <string>

namespace comm_test {

struct credential {
  std::string cert_file;  // leaf first, then the intermediate (full chain as a server sends it)
  std::string key_file;
  std::string chain_file;  // the issuing chain alone (intermediate); empty when none
  std::string cert_pem;
  std::string key_pem;
};

struct test_pki {
  std::string dir;
  std::string ca_file;        // the trusted root
  std::string ca_pem;
  std::string other_ca_file;  // a root nobody trusts by default
  credential good;            // DNS localhost, IP 127.0.0.1 and ::1
  credential expired;
  credential not_yet_valid;
  credential wrong_host;      // DNS wrong.example.com only
  credential self_signed;     // DNS localhost, its own issuer
  credential untrusted;       // DNS localhost, issued by the other CA
  credential alt_host;        // DNS alt.example.com (SNI tests)
  credential client;          // client certificate from the trusted chain
  credential untrusted_client;
  std::string encrypted_key_file;  // good's key, encrypted with key_password
  std::string key_password = "correct horse battery";
};

const test_pki& pki();

}  // namespace comm_test
