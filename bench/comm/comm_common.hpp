// comm side of the benchmarks: contexts built through the public API with the same settings as
// the Asio side (TLS 1.3 only, TLS_AES_128_GCM_SHA256, X25519, ECDSA P-256 certificate; the client
// verifies the chain and the address 127.0.0.1). --impl=openssl|gnutls picks the implementation.
#pragma once

#include <comm/comm.hpp>
#include <cstdio>
#include <string>

#include "../common/bench_common.hpp"

namespace bench_comm {

inline comm::ssl_implementation implementation(const bench::args& a) {
  const auto name = a.str("impl", "openssl");
  if (name == "gnutls") return comm::ssl_implementation::gnutls;
  if (name == "openssl") return comm::ssl_implementation::openssl;
  throw std::invalid_argument("--impl: openssl or gnutls, not " + name);
}

inline comm::ssl_context_options pinned(const bench::args& a) {
  comm::ssl_context_options o;
  o.implementation = implementation(a);
  o.protocol_version = {comm::ssl_protocol_version::tls_v1_3, comm::ssl_protocol_version::tls_v1_3};
  o.ciphersuites = "TLS_AES_128_GCM_SHA256";
  o.groups = "X25519";
  return o;
}

inline comm::ssl_abstract_context server_context(const bench::args& a) {
  auto o = pinned(a);
  o.cert_file = a.require("cert");
  o.key_file = a.require("key");
  o.session_resumption = true;  // tickets, as OpenSSL (and so Asio) issues by default
  return comm::create_ssl_server_context(std::move(o));
}

// resume: the client caches sessions per host:port (comm's default); off for full handshakes.
inline comm::ssl_abstract_context client_context(const bench::args& a, bool resume = false) {
  auto o = pinned(a);
  o.trusted_file = a.require("ca");
  o.session_resumption = resume;
  // --chain-cache=0 measures a client that verifies every chain in full (the default keeps them 60 s).
  o.verified_chain_cache = std::chrono::seconds(a.num("chain-cache", 60));
  return comm::create_ssl_client_context(std::move(o));
}

inline std::string port_arg(const bench::args& a) { return std::to_string(a.num("port", 0)); }

inline std::span<const std::byte> bytes(const std::vector<char>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size()};
}
inline std::span<std::byte> bytes(std::vector<char>& v) { return {reinterpret_cast<std::byte*>(v.data()), v.size()}; }

// A blocking comm server (start_up_server) that announces its port and runs until stdin closes.
inline int run_blocking_server(const bench::args& a, comm::connection_handler handler) {
  comm::server_options so;
  so.address = "127.0.0.1";
  so.max_threads = 32;
  if (a.flag("tls")) so.ssl_ctx = server_context(a);
  so.handler_error_callback = [](std::exception_ptr) {};
  so.tls_error_callback = [](const std::exception&) {};
  auto srv = comm::start_up_server(std::move(handler), std::move(so));
  bench::announce_port(srv.local_port());
  bench::wait_stdin_eof();
  comm::server_terminate(srv);
  bench::json_line().add("cpu_s", bench::cpu_seconds()).add("rss_kib", static_cast<double>(bench::rss_kib())).print();
  return 0;
}

inline comm::socket_stream connect(const bench::args& a, const comm::ssl_abstract_context& ctx) {
  comm::open_tcp_stream_options o;
  if (ctx) o.ssl_ctx = ctx;
  o.buffer_size = static_cast<std::size_t>(a.num("buffer", 16 * 1024));
  return comm::open_tcp_stream("127.0.0.1", port_arg(a), std::move(o));
}

}  // namespace bench_comm
