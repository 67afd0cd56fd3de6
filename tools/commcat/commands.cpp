// commcat connect / listen (one client). listen --echo is in echo_server.cpp.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "commcat.hpp"

namespace commcat {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// SNI must be a host name, never an IP literal; the certificate is still checked against it.
comm::attach_ssl_options client_attach_options(const config& cfg, comm::ssl_abstract_context ctx) {
  comm::attach_ssl_options a;
  a.ssl_ctx = std::move(ctx);
  a.ssl_side = comm::ssl_side::client;
  const std::string& name = cfg.tls.servername.empty() ? cfg.host : cfg.tls.servername;
  if (!comm::ip_address::try_parse(name)) a.tlsext_host_name = name;
  a.host_name = name;
  return a;
}

comm::attach_ssl_options server_attach_options(const config& cfg, comm::ssl_abstract_context ctx) {
  comm::attach_ssl_options a;
  a.ssl_ctx = std::move(ctx);
  a.ssl_side = comm::ssl_side::server;
  a.handshake_timeout = cfg.timeout;
  return a;
}

void announce(std::uint16_t port) {
  // stderr is unbuffered; a script (or a test) reads the port from this line.
  std::fprintf(stderr, "listening on %u\n", static_cast<unsigned>(port));
}

}  // namespace

int run_connect(const config& cfg) {
  // The timeout covers connect plus handshake: the handshake gets what connecting left over.
  const auto start = clock::now();
  comm::connect_options co;
  co.timeout = cfg.timeout;
  auto socket = comm::connect_to_tcp_server(cfg.host, cfg.port, co);

  comm::socket_stream stream;
  if (!cfg.tls.enabled) {
    stream = comm::socket_stream(std::move(socket));
  } else {
    auto attach = client_attach_options(cfg, make_client_context(cfg.tls));
    if (cfg.timeout) {
      auto left = *cfg.timeout - std::chrono::duration_cast<milliseconds>(clock::now() - start);
      attach.handshake_timeout = std::max(left, milliseconds(1));
    }
    stream = comm::socket_stream(std::move(socket), {}, std::move(attach));
  }
  return relay(stream);
}

int run_listen(const config& cfg) {
  comm::ssl_abstract_context ctx;
  if (cfg.tls.enabled) ctx = make_server_context(cfg.tls);  // fail on bad files before listening
  auto listener = comm::tcp_listener::open(cfg.port);
  announce(listener.local_port());
  auto socket = listener.accept();
  listener.close();  // a single client, as netcat without -k
  if (!socket) throw std::runtime_error("accept on port " + cfg.port + ": no connection");
  comm::socket_stream stream = cfg.tls.enabled
                                   ? comm::socket_stream(std::move(*socket), {}, server_attach_options(cfg, ctx))
                                   : comm::socket_stream(std::move(*socket));
  return relay(stream);
}

}  // namespace commcat
