// A client and a server TLS engine joined by memory buffers: engine-level tests without sockets.
// Contexts are passed in, so several pairs can share one (a client session cache, a server's
// ticket key).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "comm/tls.hpp"
#include "tls/engine.hpp"

namespace comm_test {

struct memory_end final : comm::detail::transport {
  std::string* in;
  std::string* out;
  memory_end(std::string* i, std::string* o) : in(i), out(o) {}
  comm::detail::io_result read(void* d, std::size_t n) override {
    if (in->empty()) return {0, EAGAIN};
    n = std::min(n, in->size());
    std::memcpy(d, in->data(), n);
    in->erase(0, n);
    return {n, 0};
  }
  comm::detail::io_result write(const void* d, std::size_t n) override {
    out->append(static_cast<const char*>(d), n);
    return {n, 0};
  }
};

struct engine_pair {
  std::string c2s, s2c;
  memory_end client_end{&s2c, &c2s}, server_end{&c2s, &s2c};
  std::unique_ptr<comm::detail::tls_engine> client, server;

  engine_pair(const comm::ssl_abstract_context& client_ctx, const comm::ssl_abstract_context& server_ctx,
              const std::string& session_key = {}) {
    comm::detail::engine_params cp;
    cp.side = comm::ssl_side::client;
    cp.sni = cp.host_name = "localhost";
    cp.session_key = session_key;
    comm::detail::engine_params sp;
    sp.side = comm::ssl_side::server;
    client = comm::detail::make_engine(comm::ssl_ctx_spec(client_ctx), cp, client_end);
    server = comm::detail::make_engine(comm::ssl_ctx_spec(server_ctx), sp, server_end);
  }

  // Both handshakes to completion (bounded); false on an error.
  bool handshake() {
    using comm::detail::tls_status;
    for (int i = 0; i < 50 && !(client->handshake_done() && server->handshake_done()); ++i) {
      if (client->handshake().status == tls_status::error || server->handshake().status == tls_status::error)
        return false;
    }
    return client->handshake_done() && server->handshake_done();
  }

  // The server sends `text`; the client reads it (and with it any session tickets sent before).
  std::string server_to_client(const std::string& text) {
    using comm::detail::tls_status;
    std::size_t sent = 0;
    for (int i = 0; i < 50 && sent < text.size(); ++i) {
      auto r = server->write(text.data() + sent, text.size() - sent);
      if (r.status == tls_status::error) return {};
      if (r.status == tls_status::done) sent += r.bytes;
    }
    std::string got;
    char buf[4096];
    for (int i = 0; i < 50 && got.size() < text.size(); ++i) {
      auto r = client->read(buf, sizeof buf);
      if (r.status == tls_status::error || r.status == tls_status::closed) break;
      if (r.status == tls_status::done) got.append(buf, r.bytes);
    }
    return got;
  }
};

}  // namespace comm_test
