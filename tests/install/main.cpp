// Uses an installed comm: a loopback connection through the net and stream layers, and the TLS
// layer's list of implementations (which pulls in OpenSSL and GnuTLS at link time).
#include <comm/comm.hpp>

#include <iostream>

int main() try {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  auto client = comm::open_tcp_stream("127.0.0.1", std::to_string(listener.local_port()));
  auto accepted = listener.accept(std::chrono::seconds(5));
  if (!accepted) {
    std::cerr << "install check: accept timed out\n";
    return 1;
  }
  comm::socket_stream server(std::move(*accepted));
  client.write_all("ping\n");
  client.flush();
  auto line = server.read_line();
  if (line != "ping") {
    std::cerr << "install check: expected ping\n";
    return 1;
  }
  std::cout << "install check: comm works (default TLS implementation "
            << comm::to_string(comm::ssl_default_implementation()) << ")\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "install check: " << e.what() << '\n';
  return 1;
}
