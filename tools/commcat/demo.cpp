// commcat demo: a TLS server and client in one process, on a throwaway CA and a localhost
// certificate made in memory, for every pair of available implementations.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <variant>

#include "commcat.hpp"

namespace commcat {
namespace {

using namespace std::chrono_literals;
using comm::ssl_implementation;

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;  // C++20 deduces it; clang 14 still needs the guide

// The model's typecase on the native reference.
std::string native_type(const comm::ssl_ref& ref) {
  return std::visit(overloaded{
                        [](const comm::ssl_pointer& p) { return std::string("SSL* (OpenSSL)") + (p.ptr ? "" : " null"); },
                        [](const comm::gnutls_session_ref& s) {
                          return std::string("gnutls_session_t (GnuTLS)") + (s.ptr ? "" : " null");
                        },
                        [](const comm::ssl_context_ref&) { return std::string("SSLContextRef (Apple)"); },
                    },
                    ref);
}

// What one side negotiated, as one line; each fact on its own so one failure does not hide the rest.
std::string describe(const comm::socket_stream& s) {
  auto fact = [](auto&& get) -> std::string {
    try {
      return get();
    } catch (const std::exception& e) {
      return std::string("(") + one_line(e.what()) + ")";
    }
  };
  std::string out;
  out += "implementation " + fact([&] { return std::string(comm::to_string(comm::ssl_connection_implementation(s))); });
  out += ", " + fact([&] { return std::string(comm::to_string(comm::ssl_connection_protocol_version(s))); });
  out += ", cipher " + fact([&] { return comm::ssl_connection_cipher(s); });
  out += ", peer verification " + fact([&] {
           auto v = comm::ssl_connection_verify(s);
           if (v.ok) return std::string("ok");
           std::string reason(comm::to_string(v.reason));
           return v.message.empty() || v.message == reason ? reason : reason + ": " + v.message;
         });
  out += ", ALPN " + fact([&] {
           auto a = comm::ssl_connection_alpn_protocol(s);
           return a.empty() ? std::string("none") : a;
         });
  out += ", native " + fact([&] { return native_type(comm::ssl_connection_ssl_ref(s)); });
  return out;
}

const std::string request = "hello from the client";
const std::string reply_prefix = "server got: ";

struct server_side {
  std::string facts;
  std::string error;
  std::string received;
  bool verified = false;
};

// Runs one pair; prints its lines and returns whether it verified and exchanged data correctly.
bool run_pair(ssl_implementation client_impl, ssl_implementation server_impl, const comm::demo_credentials& creds) {
  std::printf("%s client -> %s server\n", std::string(comm::to_string(client_impl)).c_str(),
              std::string(comm::to_string(server_impl)).c_str());

  comm::ssl_context_options so;
  so.name = "demo server";
  so.implementation = server_impl;
  so.cert_pem = creds.cert_pem;
  so.key_pem = creds.key_pem;
  so.alpn_protocols = {"comm-demo"};
  // Mutual TLS: the localhost certificate serves as the client's too, so both sides verify.
  so.trusted_pem = creds.ca_cert_pem;
  so.verify = comm::peer_verification::required;
  auto server_ctx = comm::create_ssl_server_context(std::move(so));

  comm::ssl_context_options co;
  co.name = "demo client";
  co.implementation = client_impl;
  co.trusted_pem = creds.ca_cert_pem;
  co.use_system_trusted = false;
  co.alpn_protocols = {"comm-demo"};
  co.cert_pem = creds.cert_pem;
  co.key_pem = creds.key_pem;
  auto client_ctx = comm::create_ssl_client_context(std::move(co));

  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  const auto port = std::to_string(listener.local_port());

  std::atomic<bool> client_done{false};
  server_side server;
  std::thread server_thread([&] {
    try {
      // Poll accept in short steps so that a client that never connects ends this thread too.
      std::optional<comm::socket_handle> socket;
      for (int i = 0; i < 100 && !socket && !client_done; ++i) socket = listener.accept(100ms);
      if (!socket) throw std::runtime_error("no client connected");
      comm::attach_ssl_options a;
      a.ssl_ctx = server_ctx;
      a.ssl_side = comm::ssl_side::server;
      a.handshake_timeout = 10s;
      comm::socket_stream s(std::move(*socket), {.read_timeout = 10s, .write_timeout = 10s}, std::move(a));
      server.facts = describe(s);
      server.verified = comm::ssl_connection_verify(s).ok;
      auto line = s.read_line();
      server.received = line.value_or("");
      s.write_all(reply_prefix + server.received + "\n");
      s.flush();
      // Wait for the client's close_notify, then answer it.
      char rest[64];
      while (s.read_some(rest, sizeof rest) != 0) {
      }
      comm::socket_stream_shutdown(s, comm::direction::output);
    } catch (const std::exception& e) {
      server.error = one_line(e.what());
    }
  });

  std::string client_facts, client_error, reply;
  bool client_verified = false;
  try {
    comm::connect_options c;
    c.timeout = 10s;
    comm::attach_ssl_options a;
    a.ssl_ctx = client_ctx;
    a.ssl_side = comm::ssl_side::client;
    a.handshake_timeout = 10s;
    a.tlsext_host_name = "localhost";
    a.host_name = "localhost";
    comm::socket_stream s(comm::connect_to_tcp_server("127.0.0.1", port, c),
                          {.read_timeout = 10s, .write_timeout = 10s}, std::move(a));
    client_facts = describe(s);
    client_verified = comm::ssl_connection_verify(s).ok;
    s.write_all(request + "\n");
    s.flush();
    reply = s.read_line().value_or("");
    comm::socket_stream_shutdown(s, comm::direction::output);  // close_notify
    char rest[64];
    while (s.read_some(rest, sizeof rest) != 0) {
    }
  } catch (const std::exception& e) {
    client_error = one_line(e.what());
  }
  client_done = true;
  server_thread.join();

  std::printf("  server: %s\n", server.error.empty() ? server.facts.c_str() : ("failed: " + server.error).c_str());
  std::printf("  client: %s\n", client_error.empty() ? client_facts.c_str() : ("failed: " + client_error).c_str());
  const bool data_ok = server.received == request && reply == reply_prefix + request;
  const bool ok = server.error.empty() && client_error.empty() && data_ok && server.verified && client_verified;
  if (client_error.empty() && server.error.empty())
    std::printf("  data: client sent \"%s\", server replied \"%s\": %s\n", server.received.c_str(), reply.c_str(),
                data_ok ? "ok" : "MISMATCH");
  std::printf("  %s\n", ok ? "ok" : "FAILED");
  return ok;
}

}  // namespace

int run_demo() {
  const ssl_implementation pairs[][2] = {
      {ssl_implementation::openssl, ssl_implementation::openssl},
      {ssl_implementation::gnutls, ssl_implementation::gnutls},
      {ssl_implementation::openssl, ssl_implementation::gnutls},
      {ssl_implementation::gnutls, ssl_implementation::openssl},
  };

  std::optional<comm::demo_credentials> creds;
  try {
    creds = comm::make_demo_credentials("localhost");
    std::printf("made a throwaway CA and a certificate for localhost in memory\n\n");
  } catch (const std::exception& e) {
    std::printf("making the demo certificate failed: %s\n\n", one_line(e.what()).c_str());
  }

  int run = 0, passed = 0;
  for (auto& [client, server] : pairs) {
    for (auto impl : {client, server}) {
      if (!comm::ssl_implementation_available(impl)) {
        std::printf("%s client -> %s server: skipped, %s is not available in this build\n\n",
                    std::string(comm::to_string(client)).c_str(), std::string(comm::to_string(server)).c_str(),
                    std::string(comm::to_string(impl)).c_str());
        goto next_pair;
      }
    }
    ++run;
    if (!creds) {
      std::printf("%s client -> %s server\n  FAILED: no demo certificate\n\n", std::string(comm::to_string(client)).c_str(),
                  std::string(comm::to_string(server)).c_str());
      continue;
    }
    try {
      if (run_pair(client, server, *creds)) ++passed;
    } catch (const std::exception& e) {
      std::printf("  FAILED: %s\n", one_line(e.what()).c_str());
    }
    std::printf("\n");
  next_pair:;
  }
  std::printf("%d of %d implementation pairs verified and exchanged data\n", passed, run);
  std::fflush(stdout);
  return run > 0 && passed == run ? 0 : 1;
}

}  // namespace commcat
