// The TLS engine of one implementation as one side (COMM_FUZZ_IMPL, COMM_FUZZ_SERVER), fed the
// fuzz input as everything the peer sends. No sockets: a memory transport under the engine.
//
// Input layout: byte 0 picks the read chunk size (1..256) and whether the input ends in an orderly
// EOF or in would_block; the rest is the peer's byte stream. The target drives handshake, then
// read / write / shutdown, until the engine needs input that will never come. Anything but a
// crash, a leak or a hang is fine: errors must come out as tls_status::error with an exception.
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>

#include "comm/tls.hpp"
#include "memory_transport.hpp"
#include "tls/engine.hpp"

namespace {

using comm::detail::tls_status;

comm::ssl_abstract_context make_context() {
  static const comm::demo_credentials creds = comm::make_demo_credentials("localhost");
  comm::ssl_context_options o;
  o.implementation = COMM_FUZZ_IMPL;
  o.name = "fuzz";
  if (COMM_FUZZ_SERVER) {
    o.cert_pem = creds.cert_pem;
    o.key_pem = creds.key_pem;
    return comm::create_ssl_server_context(std::move(o));
  }
  o.trusted_pem = creds.ca_cert_pem;
  o.tlsext_host_name = "localhost";
  o.session_resumption = false;  // no cache growing across inputs
  return comm::create_ssl_client_context(std::move(o));
}

const comm::ssl_abstract_context& context() {
  static const comm::ssl_abstract_context ctx = make_context();
  return ctx;
}

// An error status must carry an exception naming the operation.
void check_error(const comm::detail::tls_engine& engine) {
  std::exception_ptr e = engine.error("fuzz", "peer");
  if (!e) std::abort();
  try {
    std::rethrow_exception(e);
  } catch (const comm::socket_error&) {
  } catch (...) {
    std::abort();  // engines report socket_error subclasses only
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = static_cast<std::size_t>(data[0] & 0x7f) * 2 + 1;
  comm_fuzz::input_transport t(data + 1, size - 1, chunk);
  t.eof_at_end = (data[0] & 0x80) != 0;

  comm::detail::engine_params params;
  params.side = COMM_FUZZ_SERVER ? comm::ssl_side::server : comm::ssl_side::client;
  if (!COMM_FUZZ_SERVER) {
    params.sni = "localhost";
    params.host_name = "localhost";
  }
  std::unique_ptr<comm::detail::tls_engine> engine =
      comm::detail::make_engine(comm::ssl_ctx_spec(context()), params, t);

  // Bounded: every step either consumes input, produces output or ends the loop.
  int steps = 0;
  bool handshaken = false;
  while (steps++ < 10000) {
    auto r = engine->handshake();
    if (r.status == tls_status::want_output) continue;
    if (r.status == tls_status::error) {
      check_error(*engine);
      return 0;
    }
    if (r.status == tls_status::done) {
      handshaken = true;
      break;
    }
    if (r.status == tls_status::closed) return 0;
    if (t.exhausted()) return 0;  // want_input with nothing more to give
  }
  if (!handshaken) return 0;

  // Facts must be readable on any established connection.
  (void)engine->protocol_version();
  (void)engine->cipher();
  (void)engine->alpn_protocol();
  (void)engine->server_name();
  (void)engine->verify();
  (void)engine->peer_certificates_data();

  char buf[4096];
  static const char hello[] = "hello from the fuzzer\n";
  (void)engine->write(hello, sizeof hello - 1);
  while (steps++ < 20000) {
    auto r = engine->read(buf, sizeof buf);
    if (r.status == tls_status::done) {
      if (r.bytes == 0 || r.bytes > sizeof buf) std::abort();
      continue;
    }
    if (r.status == tls_status::want_output) continue;
    if (r.status == tls_status::error) {
      check_error(*engine);
      return 0;
    }
    if (r.status == tls_status::closed) break;
    if (t.exhausted()) break;
  }
  for (int i = 0; i < 4; ++i) {
    auto r = engine->shutdown();
    if (r.status != tls_status::want_output) break;
  }
  return 0;
}
