// Dispatching on a connection's native TLS handle, the way Lisp code uses typecase.
//
// Starts a local TLS server on throwaway in-memory credentials, connects to it with each available
// implementation, and asks the connection's own library for the negotiated cipher through
// ssl_connection_ssl_ref + std::visit. Examples may include the native headers; comm's do not.
#include <gnutls/gnutls.h>
#include <openssl/ssl.h>

#include <comm/comm.hpp>
#include <iostream>
#include <string>
#include <variant>

namespace {

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;  // C++20 deduces it; clang 14 still needs the guide

// What the implementation itself says about the cipher in use.
std::string native_cipher(const comm::ssl_ref& ref) {
  return std::visit(overloaded{
                        [](comm::ssl_pointer p) -> std::string {
                          return std::string("OpenSSL SSL*: ") + SSL_get_cipher_name(p.ptr);
                        },
                        [](comm::gnutls_session_ref s) -> std::string {
                          const char* name = gnutls_cipher_get_name(gnutls_cipher_get(s.ptr));
                          return std::string("GnuTLS gnutls_session_t: ") + (name ? name : "?");
                        },
                        [](comm::ssl_context_ref) -> std::string { return "Apple SSLContextRef (not on this platform)"; },
                    },
                    ref);
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  const comm::demo_credentials creds = comm::make_demo_credentials("localhost");

  comm::ssl_context_options server_options;
  server_options.cert_pem = creds.cert_pem;
  server_options.key_pem = creds.key_pem;
  comm::server_options so;
  so.address = "127.0.0.1";
  so.ssl_ctx = comm::create_ssl_server_context(server_options);
  comm::server server = comm::start_up_server(
      [](comm::socket_stream& s) {
        while (auto line = s.read_line()) {
          s << *line << '\n' << std::flush;
        }
      },
      so);

  for (auto impl : {comm::ssl_implementation::openssl, comm::ssl_implementation::gnutls}) {
    if (!comm::ssl_implementation_available(impl)) continue;
    comm::ssl_context_options client_options;
    client_options.implementation = impl;
    client_options.trusted_pem = creds.ca_cert_pem;
    comm::open_tcp_stream_options o;
    o.ssl_ctx = comm::create_ssl_client_context(client_options);
    o.handshake_timeout = 5s;
    o.read_timeout = 5s;
    try {
      comm::socket_stream s = comm::open_tcp_stream("localhost", std::to_string(server.local_port()), o);
      s << "ping\n" << std::flush;
      std::cout << comm::to_string(impl) << " client: echo '" << s.read_line().value_or("") << "', comm says "
                << comm::ssl_connection_cipher(s) << ", " << native_cipher(comm::ssl_connection_ssl_ref(s)) << '\n';
    } catch (const comm::socket_error& e) {
      std::cerr << comm::to_string(impl) << " client failed: " << e.what() << '\n';
      return 1;
    }
  }
  comm::server_terminate(server);
  return 0;
}
