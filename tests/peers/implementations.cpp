#include "peers/implementations.hpp"

namespace comm_test {

std::vector<comm::ssl_implementation> tested_implementations() {
  return {comm::ssl_implementation::openssl, comm::ssl_implementation::gnutls};
}

}  // namespace comm_test
