// Users write partial designated initializers of the option structs
// (create_ssl_client_context({.verify = peer_verification::none})). Every field has a default
// member initializer, so GCC's -Wmissing-field-initializers (part of -Wextra, an error under
// -Werror) stays quiet. This file turns that warning into an error so a new field without an
// initializer fails the build here, not in users' code.
#pragma GCC diagnostic error "-Wmissing-field-initializers"
#pragma GCC diagnostic error "-Wextra"

#include <gtest/gtest.h>

#include "comm/tls.hpp"

namespace {

TEST(DesignatedInitializers, PartialOptionStructsCompileWithoutWarnings) {
  const comm::ssl_context_options context{.verify = comm::peer_verification::none};
  EXPECT_EQ(context.verify, comm::peer_verification::none);
  EXPECT_TRUE(context.check_host_name);
  EXPECT_TRUE(context.session_resumption);
  EXPECT_TRUE(context.ciphers.empty());
  EXPECT_EQ(context.protocol_version.min, comm::ssl_protocol_version::tls_v1_2);

  const comm::ssl_context_options alpn{.alpn_protocols = {"h2"}, .session_resumption = false};
  EXPECT_EQ(alpn.alpn_protocols, std::vector<std::string>{"h2"});
  EXPECT_FALSE(alpn.session_resumption);

  const comm::protocol_versions versions{.max = comm::ssl_protocol_version::tls_v1_3};
  EXPECT_EQ(versions.min, comm::ssl_protocol_version::tls_v1_2);
  EXPECT_EQ(versions.max, comm::ssl_protocol_version::tls_v1_3);

  const comm::attach_ssl_options attach{.ssl_side = comm::ssl_side::client, .host_name = "localhost"};
  EXPECT_EQ(attach.ssl_side, comm::ssl_side::client);
  EXPECT_EQ(attach.host_name, "localhost");
  EXPECT_FALSE(attach.defer_handshake);
  EXPECT_FALSE(attach.handshake_timeout.has_value());

  const comm::detach_ssl_options detach{.retry_count = std::nullopt};
  EXPECT_FALSE(detach.retry_count.has_value());
  EXPECT_EQ(detach.retry_timeout, comm::milliseconds(100));

  const comm::read_certificates_options read{.password = "secret"};
  EXPECT_EQ(read.password, "secret");
  EXPECT_TRUE(read.cert_file.empty());
}

TEST(DesignatedInitializers, CreateClientContextFromAPartialInitializer) {
  comm::ssl_abstract_context ctx = comm::create_ssl_client_context({.verify = comm::peer_verification::none});
  ASSERT_TRUE(ctx);
  EXPECT_EQ(ctx.side(), comm::ssl_side::client);
  EXPECT_EQ(ctx.options().verify, comm::peer_verification::none);
}

}  // namespace
