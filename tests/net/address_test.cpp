// Addresses, services and name resolution.
#include <gtest/gtest.h>

#include <stdexcept>

#include "comm/net.hpp"

using namespace comm;

TEST(IpAddress, ParsesAndPrintsIPv4) {
  auto a = ip_address::parse("192.168.10.7");
  EXPECT_TRUE(a.is_v4());
  EXPECT_EQ(a.to_v4(), 0xc0a80a07u);
  EXPECT_EQ(a.to_string(), "192.168.10.7");
  EXPECT_EQ(ip_address::v4(0x7f000001u), ip_address::loopback_v4());
  EXPECT_TRUE(ip_address::loopback_v4().is_loopback());
  EXPECT_TRUE(ip_address::parse("127.3.2.1").is_loopback());
  EXPECT_TRUE(ip_address::any_v4().is_unspecified());
  EXPECT_EQ(ip_address(), ip_address::any_v4());
}

TEST(IpAddress, ParsesAndPrintsIPv6WithScope) {
  auto a = ip_address::parse("2001:db8::1");
  EXPECT_TRUE(a.is_v6());
  EXPECT_EQ(a.bytes()[0], 0x20);
  EXPECT_EQ(a.bytes()[15], 1);
  EXPECT_EQ(a.to_string(), "2001:db8::1");
  auto s = ip_address::parse("fe80::1%3");
  EXPECT_EQ(s.scope_id(), 3u);
  EXPECT_EQ(s.to_string(), "fe80::1%3");
  auto lo = ip_address::parse("fe80::2%lo");
  EXPECT_NE(lo.scope_id(), 0u);  // interface names resolve to their index
  EXPECT_EQ(ip_address::parse("[::1]"), ip_address::loopback_v6());
  EXPECT_TRUE(ip_address::loopback_v6().is_loopback());
  EXPECT_TRUE(ip_address::any_v6().is_unspecified());
  EXPECT_NE(ip_address::any_v6(), ip_address::any_v4());
}

TEST(IpAddress, RejectsNonNumericTextNamingIt) {
  EXPECT_FALSE(ip_address::try_parse("localhost"));
  EXPECT_FALSE(ip_address::try_parse("1.2.3.256"));
  EXPECT_FALSE(ip_address::try_parse(""));
  EXPECT_FALSE(ip_address::try_parse("fe80::1%"));
  try {
    ip_address::parse("not-an-address");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not-an-address"), std::string::npos) << e.what();
  }
}

TEST(Endpoint, PrintsWithBracketsForIPv6) {
  EXPECT_EQ((endpoint{ip_address::loopback_v4(), 80}).to_string(), "127.0.0.1:80");
  EXPECT_EQ((endpoint{ip_address::loopback_v6(), 443}).to_string(), "[::1]:443");
}

TEST(Resolve, NumericAddressesAndPorts) {
  auto v4 = resolve("127.0.0.1", "8080");
  ASSERT_EQ(v4.size(), 1u);
  EXPECT_EQ(v4[0], (endpoint{ip_address::loopback_v4(), 8080}));
  auto v6 = resolve("::1", "443");
  ASSERT_EQ(v6.size(), 1u);
  EXPECT_EQ(v6[0], (endpoint{ip_address::loopback_v6(), 443}));
}

TEST(Resolve, ServiceNamesAndFamilies) {
  auto eps = resolve("localhost", "http", address_family::ipv4);
  ASSERT_FALSE(eps.empty());
  for (auto& ep : eps) {
    EXPECT_TRUE(ep.address.is_v4());
    EXPECT_TRUE(ep.address.is_loopback());
    EXPECT_EQ(ep.port, 80);
  }
  EXPECT_EQ(resolve_service("https"), 443);
  EXPECT_EQ(resolve_service("22"), 22);
  EXPECT_EQ(resolve_service(""), 0);
  EXPECT_THROW(resolve_service("99999"), socket_connect_error);
  try {
    resolve_service("no-such-service-name");
    FAIL() << "no exception";
  } catch (const socket_connect_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-service-name"), std::string::npos) << e.what();
  }
}

TEST(Resolve, EmptyHostIsLoopback) {
  auto eps = resolve("", "7");
  ASSERT_FALSE(eps.empty());
  for (auto& ep : eps) EXPECT_TRUE(ep.address.is_loopback()) << ep.to_string();
}

TEST(Resolve, UnknownHostNamesHostAndService) {
  try {
    resolve("nosuchhost.invalid", "80");
    FAIL() << "no exception";
  } catch (const socket_connect_error& e) {
    std::string what = e.what();
    EXPECT_EQ(what.rfind("resolve nosuchhost.invalid:80: ", 0), 0u) << what;
  }
  EXPECT_TRUE(get_host_addresses("nosuchhost.invalid").empty());
}

TEST(Resolve, HostAddresses) {
  auto all = get_host_addresses("localhost", address_family::ipv4);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all[0], ip_address::loopback_v4());
  auto six = get_host_addresses("::1");
  ASSERT_EQ(six.size(), 1u);
  EXPECT_EQ(six[0], ip_address::loopback_v6());
}

TEST(Errors, SslCategoryHasMessagesAndReasonsHaveNames) {
  EXPECT_STREQ(ssl_category().name(), "comm.ssl");
  std::error_code ec = ssl_errc::handshake_timeout;
  EXPECT_EQ(ec.category(), ssl_category());
  EXPECT_EQ(ec.message(), "TLS handshake timed out");
  EXPECT_FALSE(std::error_code(ssl_errc::truncated).message().empty());
  EXPECT_EQ(to_string(verify_reason::expired), "certificate has expired");
  EXPECT_EQ(to_string(verify_reason::host_name_mismatch), "host name mismatch");
}
