// A line client: connect, send a line, print the reply.  Usage: example_client HOST PORT
#include <comm/comm.hpp>
#include <iostream>

int main(int argc, char** argv) try {
  if (argc != 3) return std::cerr << "usage: example_client HOST PORT\n", 2;
  comm::socket_stream s = comm::open_tcp_stream(argv[1], argv[2], {.timeout = std::chrono::seconds(5)});
  s << "hello, comm" << std::endl;  // std::endl flushes
  std::string reply;
  std::getline(s, reply);
  std::cout << "reply: " << reply << '\n';
} catch (const comm::socket_error& e) {
  std::cerr << e.what() << '\n';  // "connect to HOST:PORT: Connection refused"
  return 1;
}
