// The commands of commcat. Each returns the process exit status; failures are thrown and turned
// into one "commcat: <reason>" line by main.
#pragma once

#include <string>

#include "args.hpp"
#include "comm/stream.hpp"

namespace commcat {

int run_connect(const config& cfg);
int run_listen(const config& cfg);
int run_echo_server(const config& cfg);
int run_demo();

// TLS contexts built from the command line (tls_setup.cpp).
comm::ssl_abstract_context make_client_context(const tls_config& tls);
comm::ssl_abstract_context make_server_context(const tls_config& tls);

// Netcat's loop: stdin to the stream, the stream to stdout (relay.cpp). Returns 0 when the peer
// ends cleanly; throws on errors, truncation included (after writing out what arrived).
int relay(comm::socket_stream& stream);

// One line (newlines folded) for stderr.
std::string one_line(std::string text);

}  // namespace commcat
