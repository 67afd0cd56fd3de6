// PEM certificate, key and trust loading through the public context constructors, for both
// implementations: arbitrary cert_pem / key_pem / trusted_pem / password (encrypted keys with wrong
// passwords included). A bad input must be a comm error (ssl_condition or std::invalid_argument),
// never a crash; and no error message may contain the password.
//
// Input: byte 0 = flags (bit 0: GnuTLS, bit 1: client context, bit 2: password through the
// callback), then the fields cert, key, trusted, password (see fuzz_input.hpp).
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "comm/tls.hpp"
#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  comm_fuzz::fields in(data, size);
  const std::uint8_t flags = in.byte();
  comm::ssl_context_options o;
  o.implementation = (flags & 1) ? comm::ssl_implementation::gnutls : comm::ssl_implementation::openssl;
  o.cert_pem = in.next();
  o.key_pem = in.next();
  o.trusted_pem = in.next();
  const std::string password = in.next();
  if (flags & 4)
    o.password_callback = [password] { return password; };
  else
    o.password = password;
  o.use_system_trusted = false;
  try {
    comm::ssl_abstract_context ctx =
        (flags & 2) ? comm::create_ssl_client_context(std::move(o)) : comm::create_ssl_server_context(std::move(o));
    reset_ssl_abstract_context(ctx);
  } catch (const comm::socket_error& e) {
    // Secret hygiene: a password of some length must never be echoed back in an error.
    if (password.size() >= 6 && std::string(e.what()).find(password) != std::string::npos) std::abort();
  } catch (const std::invalid_argument& e) {
    if (password.size() >= 6 && std::string(e.what()).find(password) != std::string::npos) std::abort();
  }
  return 0;
}
