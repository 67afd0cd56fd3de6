// commcat: netcat on comm, with TLS. See usage_text() in args.cpp.
#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>
#include <variant>

#include "commcat.hpp"

namespace commcat {

std::string one_line(std::string text) {
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace commcat

int main(int argc, char** argv) {
  // A peer that goes away must give an error from write, never kill us.
  ::signal(SIGPIPE, SIG_IGN);

  auto parsed = commcat::parse_args(argc, argv);
  if (auto* err = std::get_if<commcat::usage_error>(&parsed)) {
    std::fprintf(stderr, "commcat: %s (see commcat --help)\n", commcat::one_line(err->message).c_str());
    return 2;
  }
  const auto& cfg = std::get<commcat::config>(parsed);
  try {
    switch (cfg.cmd) {
      case commcat::command::help:
        std::fputs(commcat::usage_text(), stdout);
        return 0;
      case commcat::command::connect:
        return commcat::run_connect(cfg);
      case commcat::command::listen:
        return cfg.echo ? commcat::run_echo_server(cfg) : commcat::run_listen(cfg);
      case commcat::command::demo:
        return commcat::run_demo();
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "commcat: %s\n", commcat::one_line(e.what()).c_str());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "commcat: unknown error\n");
    return 1;
  }
  return 1;
}
