#include "peers/implementations.hpp"

namespace comm_test {

std::vector<comm::ssl_implementation> tested_implementations() {
  return {comm::ssl_implementation::openssl};
}

}  // namespace comm_test
