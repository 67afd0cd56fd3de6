// The TLS implementations every parameterised TLS test runs against.
#pragma once

#include <string>
#include <vector>

#include "comm/tls.hpp"

namespace comm_test {

std::vector<comm::ssl_implementation> tested_implementations();

// The library's demo credentials (comm::make_demo_credentials) for a host name, made once per
// host and kept for the process.
inline const comm::demo_credentials& demo_credentials_for_loopback() {
  static const comm::demo_credentials c = comm::make_demo_credentials("127.0.0.1");
  return c;
}
inline const comm::demo_credentials& demo_credentials_for_localhost() {
  static const comm::demo_credentials c = comm::make_demo_credentials("localhost");
  return c;
}
// For INSTANTIATE_TEST_SUITE_P names: "openssl", "gnutls".
struct implementation_name {
  template <class ParamInfo>
  std::string operator()(const ParamInfo& info) const {
    return std::string(comm::to_string(info.param));
  }
};

}  // namespace comm_test
