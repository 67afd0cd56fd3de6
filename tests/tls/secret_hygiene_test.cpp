// Passwords never reach error messages: a wrong password (given directly or by the callback) for
// an encrypted key fails context creation with a message naming the key file, not the password.
#include <gtest/gtest.h>

#include <string>

#include "comm/tls.hpp"
#include "peers/certificates.hpp"
#include "peers/implementations.hpp"

namespace {

using comm_test::pki;

class SecretHygiene : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  // The message of the ssl_error a server context with the encrypted key and `options` fails with.
  std::string failure(comm::ssl_context_options o) {
    o.implementation = GetParam();
    o.cert_file = pki().good.cert_file;
    o.key_file = pki().encrypted_key_file;
    try {
      comm::create_ssl_server_context(std::move(o));
    } catch (const comm::ssl_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "a wrong password was accepted";
    return {};
  }
};

TEST_P(SecretHygiene, WrongPasswordIsNotInTheMessage) {
  const std::string wrong = "Wrong-Passw0rd-Xyzzy";
  std::string what = failure({.password = wrong});
  EXPECT_NE(what.find(pki().encrypted_key_file), std::string::npos) << what;
  EXPECT_EQ(what.find(wrong), std::string::npos) << what;
}

TEST_P(SecretHygiene, WrongPasswordFromTheCallbackIsNotInTheMessage) {
  const std::string wrong = "Callback-Passw0rd-Plugh";
  std::string what = failure({.password_callback = [wrong] { return wrong; }});
  EXPECT_NE(what.find(pki().encrypted_key_file), std::string::npos) << what;
  EXPECT_EQ(what.find(wrong), std::string::npos) << what;
}

TEST_P(SecretHygiene, ContextWithPasswordAndKeyPemIsDestroyedCleanly) {
  // The destructor wipes password and key_pem before they are freed (checked under ASan for
  // out-of-bounds writes: the wipe covers the strings' whole capacity, no more).
  auto ctx = comm::create_ssl_server_context({.implementation = GetParam(),
                                              .cert_pem = pki().good.cert_pem,
                                              .key_pem = pki().good.key_pem,
                                              .password = "unused by an unencrypted key"});
  EXPECT_EQ(ctx.options().password, "unused by an unencrypted key");
  ctx = comm::ssl_abstract_context{};
  EXPECT_FALSE(ctx);
}

INSTANTIATE_TEST_SUITE_P(Implementations, SecretHygiene, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

}  // namespace
