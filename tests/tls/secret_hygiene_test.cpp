// Passwords never reach error messages: a wrong password (given directly or by the callback) for
// an encrypted key fails context creation with a message naming the key file, not the password.
// The realised (native) contexts keep no key password, password callback or key PEM once the key
// is loaded; the abstract context keeps them for reset_ssl_abstract_context, which reads the key
// again from them.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "comm/tls.hpp"
#include "peers/certificates.hpp"
#include "peers/implementations.hpp"
#include "tls/engine.hpp"
#include "tls/engine_pair.hpp"
#include "tls/gnutls/common.hpp"
#include "tls/openssl/common.hpp"

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

std::string encrypted_key_pem() {
  std::ifstream in(pki().encrypted_key_file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The options the implementation's realised context keeps, and the realisation itself (so a
// later one can be told apart).
struct realised {
  std::shared_ptr<comm::detail::backend_context> context;
  const comm::ssl_context_options* options = nullptr;
};
realised realised_of(const comm::ssl_abstract_context& ctx) {
  realised r;
  r.context = ctx.impl()->realized();
  if (auto* o = dynamic_cast<comm::detail::ossl::openssl_context*>(r.context.get())) r.options = &o->options;
  if (auto* g = dynamic_cast<comm::detail::gtls::gnutls_context*>(r.context.get())) r.options = &g->options;
  return r;
}

void expect_no_secrets(const realised& r) {
  ASSERT_NE(r.options, nullptr) << "not an OpenSSL or GnuTLS realisation";
  EXPECT_TRUE(r.options->password.empty());
  EXPECT_TRUE(r.options->key_pem.empty());
  EXPECT_FALSE(r.options->password_callback);
  EXPECT_EQ(r.options->cert_pem, pki().good.cert_pem);  // the rest of the copy is kept
}

// A handshake with the server context proves its key was loaded (and decrypted).
bool serves(const comm::ssl_abstract_context& server_ctx) {
  comm::ssl_context_options co;
  co.implementation = server_ctx.implementation();
  co.trusted_pem = pki().ca_pem;
  co.use_system_trusted = false;
  comm_test::engine_pair p(comm::create_ssl_client_context(std::move(co)), server_ctx);
  return p.handshake();
}

TEST_P(SecretHygiene, RealisedContextKeepsNoPasswordOrKeyPem) {
  auto ctx = comm::create_ssl_server_context({.implementation = GetParam(),
                                              .cert_pem = pki().good.cert_pem,
                                              .key_pem = encrypted_key_pem(),
                                              .password = pki().key_password});
  const realised first = realised_of(ctx);
  expect_no_secrets(first);
  // The abstract context keeps them: a reset reads the key again from there.
  EXPECT_EQ(ctx.options().password, pki().key_password);
  EXPECT_NE(ctx.options().key_pem.find("ENCRYPTED"), std::string::npos);
  EXPECT_TRUE(serves(ctx));

  comm::reset_ssl_abstract_context(ctx);
  const realised second = realised_of(ctx);
  EXPECT_NE(second.context, first.context) << "reset did not realise the context again";
  expect_no_secrets(second);
  EXPECT_TRUE(serves(ctx)) << "the key could not be read again after a reset";
}

TEST_P(SecretHygiene, RealisedContextKeepsNoPasswordCallback) {
  int asked = 0;
  auto ctx = comm::create_ssl_server_context({.implementation = GetParam(),
                                              .cert_file = pki().good.cert_file,
                                              .key_file = pki().encrypted_key_file,
                                              .password_callback = [&asked] {
                                                ++asked;
                                                return pki().key_password;
                                              }});
  EXPECT_EQ(asked, 1);
  ASSERT_NE(realised_of(ctx).options, nullptr);
  EXPECT_FALSE(realised_of(ctx).options->password_callback);
  EXPECT_TRUE(ctx.options().password_callback);
  comm::reset_ssl_abstract_context(ctx);
  EXPECT_FALSE(realised_of(ctx).options->password_callback);
  EXPECT_EQ(asked, 2) << "the reset must ask the abstract context's callback again";
  EXPECT_TRUE(serves(ctx));
}

// Certificate as text, encrypted key from a file (GnuTLS reads the file itself for this mix).
TEST_P(SecretHygiene, KeyFileBesideCertPemIsLoadedAndNotKept) {
  comm::ssl_context_options o;
  o.implementation = GetParam();
  o.key_file = pki().encrypted_key_file;
  o.cert_pem = pki().good.cert_pem;
  o.password = pki().key_password;
  auto ctx = comm::create_ssl_server_context(std::move(o));
  expect_no_secrets(realised_of(ctx));
  EXPECT_TRUE(serves(ctx));
}

INSTANTIATE_TEST_SUITE_P(Implementations, SecretHygiene, ::testing::ValuesIn(comm_test::tested_implementations()),
                         comm_test::implementation_name{});

}  // namespace
