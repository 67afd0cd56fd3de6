// An echo server: every client gets back what it sends, one thread per client (bounded pool).
// Usage: example_server [PORT]   (default 0 = any free port, printed at start)
#include <comm/comm.hpp>
#include <iostream>

int main(int argc, char** argv) {
  comm::server srv = comm::start_up_server(
      [](comm::socket_stream& s) {
        while (auto line = s.read_line()) s << *line << std::endl;  // std::endl flushes
      },
      {.service = argc > 1 ? argv[1] : "0"});  // every other option keeps its default
  std::cout << "echo server on port " << srv.local_port() << "; Enter stops it" << std::endl;
  std::cin.get();
  comm::server_terminate(srv);
}
