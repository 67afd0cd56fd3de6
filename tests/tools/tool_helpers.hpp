// Shared by the commcat tests: the binary under test and an openssl s_server to talk to.
#pragma once

#include <string>

#include "peers/certificates.hpp"
#include "process.hpp"

#ifndef COMMCAT_PATH
#error "COMMCAT_PATH must name the built commcat binary"
#endif

namespace commcat_test {

inline const std::string commcat = COMMCAT_PATH;

// openssl s_server on a free port for one connection; it prints "ACCEPT 127.0.0.1:PORT" once it
// listens. The certificate file holds the full chain (leaf first), sent whole through -cert_chain.
struct s_server {
  explicit s_server(const comm_test::credential& c)
      : p({"openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-cert", c.cert_file, "-cert_chain",
           c.cert_file, "-key", c.key_file}) {
    port = p.stdout_value("ACCEPT 127.0.0.1:", 10s).value_or("");
  }
  process p;
  std::string port;
};

}  // namespace commcat_test
