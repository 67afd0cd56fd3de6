// A comm client against openssl s_server with each test certificate: only the good chain passes,
// every failure is ssl_verification_failure naming its reason.
#include <cstdlib>
#include <filesystem>

#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using comm::verify_reason;

class Verification : public ::testing::TestWithParam<comm::ssl_implementation> {};

TEST_P(Verification, GoodChainVerifiesAndCarriesData) {
  openssl_server server(s_server_args(pki().good));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params());
  c.handshake();
  auto v = comm::ssl_connection_verify(c);
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.reason, verify_reason::ok);
  EXPECT_EQ(comm::ssl_connection_implementation(c), GetParam());
  c.write_all("hello\n");
  EXPECT_EQ(c.read_exact(6), "olleh\n");
}

TEST_P(Verification, IpAddressSanVerifies) {
  openssl_server server(s_server_args(pki().good));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params("127.0.0.1"));
  c.handshake();
  EXPECT_TRUE(comm::ssl_connection_verify(c).ok);
}

struct bad_case {
  const char* name;
  const credential& (*cred)();
  verify_reason reason;
};

void expect_reason(comm::ssl_implementation impl, const credential& cred, verify_reason reason) {
  openssl_server server(s_server_args(cred));
  engine_connection c(connect_loopback(server.port), trusting_client(impl), client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded; expected " << comm::to_string(reason);
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), reason) << e.what();
    EXPECT_EQ(errc_of(e), comm::ssl_errc::verification_failure);
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::verification);
    EXPECT_NE(std::string(e.what()).find("certificate verify failed"), std::string::npos) << e.what();
  }
}

TEST_P(Verification, ExpiredIsRefused) { expect_reason(GetParam(), pki().expired, verify_reason::expired); }
TEST_P(Verification, NotYetValidIsRefused) {
  expect_reason(GetParam(), pki().not_yet_valid, verify_reason::not_yet_valid);
}
TEST_P(Verification, WrongHostIsRefused) {
  expect_reason(GetParam(), pki().wrong_host, verify_reason::host_name_mismatch);
}
TEST_P(Verification, SelfSignedIsRefused) { expect_reason(GetParam(), pki().self_signed, verify_reason::self_signed); }
TEST_P(Verification, UntrustedIssuerIsRefused) {
  expect_reason(GetParam(), pki().untrusted, verify_reason::unknown_issuer);
}

TEST_P(Verification, WrongIpAddressIsRefused) {
  openssl_server server(s_server_args(pki().wrong_host));
  engine_connection c(connect_loopback(server.port), trusting_client(GetParam()), client_params("127.0.0.1"));
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), verify_reason::host_name_mismatch) << e.what();
  }
}

TEST_P(Verification, InsecureClientConnectsAndStillReportsTheReason) {
  openssl_server server(s_server_args(pki().expired));
  engine_connection c(connect_loopback(server.port),
                      trusting_client(GetParam(), [](auto& o) { o.verify = comm::peer_verification::none; }), client_params());
  c.handshake();
  auto v = comm::ssl_connection_verify(c);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, verify_reason::expired);
  c.write_all("abc\n");
  EXPECT_EQ(c.read_exact(4), "cba\n");
}

TEST_P(Verification, AcceptingVerifyCallbackOverridesAndSeesTheReason) {
  openssl_server server(s_server_args(pki().self_signed));
  int calls = 0;
  verify_reason seen = verify_reason::ok;
  comm::ssl_connection* seen_conn = nullptr;
  auto ctx = trusting_client(GetParam(), [&](auto& o) { o.verify_callback = [&](comm::ssl_connection& conn, const comm::verify_result& r) {
                                            ++calls;
                                            seen = r.reason;
                                            seen_conn = &conn;
                                            return true;
                                          }; });
  engine_connection c(connect_loopback(server.port), ctx, client_params());
  c.handshake();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, verify_reason::self_signed);
  EXPECT_EQ(seen_conn, &c);
}

TEST_P(Verification, RejectingVerifyCallbackFailsTheHandshake) {
  openssl_server server(s_server_args(pki().good));
  auto ctx = trusting_client(GetParam(), [](auto& o) { o.verify_callback = [](comm::ssl_connection&, const comm::verify_result& r) {
                                            EXPECT_TRUE(r.ok);
                                            return false;
                                          }; });
  engine_connection c(connect_loopback(server.port), ctx, client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), verify_reason::rejected_by_callback) << e.what();
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::verify_callback);
  }
}

// trusted_directory: a folder of trusted certificates in OpenSSL's hashed layout (as `openssl
// rehash` makes it, which GnuTLS reads too). The good chain verifies by the root found there; a
// folder that holds only another root refuses it as an unknown issuer.
TEST_P(Verification, TrustedDirectoryIsSearchedForTheRoot) {
  namespace fs = std::filesystem;
  const std::string impl(comm::to_string(GetParam()));
  const fs::path with_root = fs::path(pki().dir) / ("trusted-dir-" + impl);
  const fs::path without = fs::path(pki().dir) / ("untrusted-dir-" + impl);
  for (const auto& [dir, cert] : {std::pair{with_root, pki().ca_file}, std::pair{without, pki().other_ca_file}}) {
    fs::create_directories(dir);
    fs::copy_file(cert, dir / "root.pem", fs::copy_options::overwrite_existing);
  }
  ASSERT_EQ(std::system(("openssl rehash '" + with_root.string() + "' '" + without.string() + "'").c_str()), 0);
  auto client = [&](const fs::path& dir) {
    comm::ssl_context_options o;
    o.implementation = GetParam();
    o.trusted_directory = dir.string();
    return comm::create_ssl_client_context(std::move(o));
  };
  {
    openssl_server server(s_server_args(pki().good));
    engine_connection c(connect_loopback(server.port), client(with_root), client_params());
    c.handshake();
    EXPECT_TRUE(comm::ssl_connection_verify(c).ok);
    c.write_all("dir\n");
    EXPECT_EQ(c.read_exact(4), "rid\n");
  }
  openssl_server server(s_server_args(pki().good));
  engine_connection c(connect_loopback(server.port), client(without), client_params());
  try {
    c.handshake();
    FAIL() << "handshake succeeded";
  } catch (const comm::ssl_verification_failure& e) {
    EXPECT_EQ(e.reason(), verify_reason::unknown_issuer) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Implementations, Verification, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

}  // namespace
}  // namespace comm_test
