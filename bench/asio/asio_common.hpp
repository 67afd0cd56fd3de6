// Asio side of the benchmarks: TLS contexts configured exactly like comm's (TLS 1.3 only,
// TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 certificate, client verifies chain and address),
// and a small helper to stop an io_context when the runner closes stdin.
#pragma once

#ifndef ASIO_STANDALONE
#define ASIO_STANDALONE
#endif
#include <openssl/ssl.h>

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <string>
#include <thread>

#include "../common/bench_common.hpp"

namespace bench_asio {

using asio::ip::tcp;
using ssl_socket = asio::ssl::stream<tcp::socket>;

inline void pin_tls13(asio::ssl::context& ctx) {
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(native, "TLS_AES_128_GCM_SHA256");
  SSL_CTX_set1_groups_list(native, "X25519");
}

inline asio::ssl::context server_context(const bench::args& a) {
  asio::ssl::context ctx(asio::ssl::context::tls_server);
  pin_tls13(ctx);
  ctx.use_certificate_chain_file(a.require("cert"));
  ctx.use_private_key_file(a.require("key"), asio::ssl::context::pem);
  return ctx;
}

inline asio::ssl::context client_context(const bench::args& a) {
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  pin_tls13(ctx);
  ctx.load_verify_file(a.require("ca"));
  ctx.set_verify_mode(asio::ssl::verify_peer);
  ctx.set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
  return ctx;
}

// The runner stops a server by closing its stdin.
inline std::thread stop_on_stdin_eof(asio::io_context& io) {
  return std::thread([&io] {
    bench::wait_stdin_eof();
    io.stop();
  });
}

inline tcp::endpoint loopback(unsigned short port) {
  return tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);
}

}  // namespace bench_asio
