// The TLS implementations every parameterised TLS test runs against.
#pragma once

#include <string>
#include <vector>

#include "comm/tls.hpp"

namespace comm_test {

std::vector<comm::ssl_implementation> tested_implementations();
// For INSTANTIATE_TEST_SUITE_P names: "openssl", "gnutls".
struct implementation_name {
  template <class ParamInfo>
  std::string operator()(const ParamInfo& info) const {
    return std::string(comm::to_string(info.param));
  }
};

}  // namespace comm_test
