// A coroutine client and server on one wait_state_collection: the server echoes each line in
// upper case, the client sends three lines and prints the replies. Every co_await is an
// async_io_state callback underneath; nothing blocks the loop.
//
//   example_coroutine_client
#include <cctype>
#include <cstdio>
#include <string>

#include "comm/async.hpp"

namespace {

// Serves one client, then stops the loop (so that every coroutine has finished when main returns).
comm::task<void> serve(comm::wait_state_collection& loop, std::shared_ptr<comm::async_io_state> conn) {
  std::byte buf[4096];
  for (;;) {
    std::size_t n = co_await conn->read_some(buf);
    if (n == 0) break;  // the client closed
    std::string reply(reinterpret_cast<const char*>(buf), n);
    for (char& c : reply) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    co_await conn->write(std::as_bytes(std::span(reply)));
  }
  comm::close_async_io_state(*conn);
  comm::wait_state_collection_stop_loop(loop);
}

comm::task<void> talk(comm::wait_state_collection& loop, std::uint16_t port) {
  auto conn = co_await comm::connect(loop, "127.0.0.1", std::to_string(port));
  for (std::string line : {"hello\n", "from a\n", "coroutine\n"}) {
    co_await conn->write(std::as_bytes(std::span(line)));
    std::string reply;
    std::byte buf[256];
    while (reply.size() < line.size()) {
      std::size_t n = co_await conn->read_some(buf);
      if (n == 0) throw std::runtime_error("server closed early");
      reply.append(reinterpret_cast<const char*>(buf), n);
    }
    std::printf("sent %-10s got %s", line.substr(0, line.size() - 1).c_str(), reply.c_str());
  }
  comm::close_async_io_state(*conn);
}

comm::task<void> client(comm::wait_state_collection& loop, std::uint16_t port) {
  try {
    co_await talk(loop, port);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "client: %s\n", e.what());
    comm::wait_state_collection_stop_loop(loop);
  }
}

}  // namespace

int main() {
  auto loop = comm::make_wait_state_collection("example");
  auto acceptor = comm::accept_tcp_connections_creating_async_io_states(
      *loop, "0", [&](comm::accepting_handle&, comm::async_io_state& state) {
        comm::co_spawn(*loop, serve(*loop, state.shared_from_this()));
      });
  comm::co_spawn(*loop, client(*loop, acceptor->local_port()));
  comm::loop_processing_wait_state_collection(*loop);  // until the server has served the client
  return 0;
}
