// An asynchronous echo server: one event loop serves every client by callbacks, optionally with
// TLS. Stop it with Ctrl-C.
//
//   example_async_echo [PORT]                    plain TCP
//   example_async_echo PORT CERT.pem KEY.pem     TLS (the certificate file holds the full chain)
//
// Try it with `commcat connect localhost PORT` or `openssl s_client -connect localhost:PORT`.
#include <csignal>
#include <cstdio>
#include <string>

#include "comm/async.hpp"

namespace {

std::shared_ptr<comm::wait_state_collection> the_loop;

// Echo what arrives; at the end of the stream, finish writing, then close.
void echo(comm::async_io_state& state) {
  comm::async_io_state_read_with_checking(state, [](comm::async_io_state& s, std::span<const std::byte> data) {
    if (!data.empty()) comm::async_io_state_write_buffer(s, std::vector<std::byte>(data.begin(), data.end()), {});
    if (s.read_status() == comm::io_status::ok) {
      comm::async_io_state_discard(s, data.size());
      return;
    }
    comm::async_io_state_shutdown(s, comm::direction::output, false,
                                  [](comm::async_io_state& st, std::error_code) { comm::close_async_io_state(st); });
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string port = argc > 1 ? argv[1] : "7007";
  comm::accept_options options;
  options.queue_output = true;  // echo writes may overlap
  options.read_timeout = std::chrono::minutes(5);
  if (argc > 3) {
    comm::ssl_context_options tls;
    tls.cert_file = argv[2];
    tls.key_file = argv[3];
    options.ssl_ctx = comm::create_ssl_server_context(std::move(tls));
    options.ssl_error_callback = [](std::exception_ptr e, std::optional<comm::endpoint> peer) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::fprintf(stderr, "%s: %s\n", peer ? peer->to_string().c_str() : "?", x.what());
      }
    };
  }
  the_loop = comm::make_wait_state_collection("echo");
  auto acceptor = comm::accept_tcp_connections_creating_async_io_states(
      *the_loop, port, [](comm::accepting_handle&, comm::async_io_state& state) { echo(state); }, std::move(options));
  std::printf("echo server on port %u%s\n", acceptor->local_port(), argc > 3 ? " (TLS)" : "");
  std::fflush(stdout);
  std::signal(SIGINT, [](int) { comm::wait_state_collection_stop_loop(*the_loop); });
  comm::loop_processing_wait_state_collection(*the_loop);
  return 0;
}
