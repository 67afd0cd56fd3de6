// Helpers shared by the TLS tests (header-only, included by several *_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <string>

#include "comm/stream.hpp"
#include "comm/tls.hpp"
#include "peers/certificates.hpp"
#include "peers/engine_connection.hpp"
#include "peers/implementations.hpp"
#include "peers/process.hpp"

namespace comm_test {

// ssl_condition::code() is the ssl_code; the error_code is the system_error's.
inline std::error_code errc_of(const std::system_error& e) { return e.code(); }

inline comm::detail::engine_params client_params(const std::string& host = "localhost", const std::string& key = {}) {
  comm::detail::engine_params p;
  p.side = comm::ssl_side::client;
  p.sni = host;
  p.host_name = host;
  p.session_key = key;
  return p;
}

inline comm::detail::engine_params server_params() {
  comm::detail::engine_params p;
  p.side = comm::ssl_side::server;
  return p;
}

// A server of the context on the listener, serving one connection through the engine in a thread.
template <class F>
std::future<void> serve_one(loopback_listener& l, comm::ssl_abstract_context ctx, F serve) {
  return std::async(std::launch::async, [&l, ctx, serve]() mutable {
    engine_connection conn(l.accept_one(), ctx, server_params());
    serve(conn);
  });
}

// A client context of the implementation under test that trusts the test root.
// GCC 12 warns (-Wmissing-field-initializers) on partial designated initializers of
// ssl_context_options, so tests set options through a function instead.
using options_edit = std::function<void(comm::ssl_context_options&)>;
inline comm::ssl_context_options options(const options_edit& edit) {
  comm::ssl_context_options o;
  if (edit) edit(o);
  return o;
}

inline comm::ssl_abstract_context trusting_client(comm::ssl_implementation impl, const options_edit& edit = {}) {
  comm::ssl_context_options o = options(edit);
  o.implementation = impl;
  if (o.trusted_file.empty()) o.trusted_file = pki().ca_file;
  return comm::create_ssl_client_context(std::move(o));
}

inline comm::ssl_abstract_context server_with(comm::ssl_implementation impl, const credential& c,
                                              const options_edit& edit = {}) {
  comm::ssl_context_options o = options(edit);
  o.implementation = impl;
  o.cert_file = c.cert_file;
  o.key_file = c.key_file;
  return comm::create_ssl_server_context(std::move(o));
}

// s_server arguments for a credential, echoing lines reversed (-rev).
inline std::vector<std::string> s_server_args(const credential& c, std::vector<std::string> extra = {}) {
  std::vector<std::string> a{"-cert", c.cert_file, "-key", c.key_file, "-rev"};
  if (!c.chain_file.empty()) a.insert(a.end(), {"-cert_chain", c.chain_file});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// A TLS start_up_server on 127.0.0.1 echoing one line, presenting cert_pem (a chain) and key_pem
// with OpenSSL: the server side is not under test, the client's verification is. A client's
// refusal of the certificate reaches the server only as a failed handshake, which it ignores.
inline comm::server start_line_echo_server(const std::string& cert_pem, const std::string& key_pem) {
  comm::ssl_context_options so;
  so.implementation = comm::ssl_implementation::openssl;
  so.cert_pem = cert_pem;
  so.key_pem = key_pem;
  comm::server_options opts;
  opts.address = "127.0.0.1";
  opts.ssl_ctx = comm::create_ssl_server_context(std::move(so));
  opts.handshake_timeout = std::chrono::seconds(5);
  opts.tls_error_callback = [](const std::exception&) {};
  return comm::start_up_server(
      [](comm::socket_stream& s) {
        if (auto line = s.read_line()) {
          s.write_all(*line + "\n");
          s.flush();
        }
      },
      std::move(opts));
}

}  // namespace comm_test
