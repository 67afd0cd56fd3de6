// commcat's argument parser: arbitrary argv (the input split on NUL bytes) must give a config or a
// one-line usage_error naming the problem, never a crash or an exception (parse_args is noexcept).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "args.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> words{"commcat"};
  std::string cur;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      words.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  if (!cur.empty()) words.push_back(cur);
  std::vector<const char*> argv;
  for (const auto& w : words) argv.push_back(w.c_str());
  argv.push_back(nullptr);
  auto r = commcat::parse_args(static_cast<int>(words.size()), argv.data());
  if (auto* e = std::get_if<commcat::usage_error>(&r)) {
    if (e->message.empty() || e->message.find('\n') != std::string::npos) std::abort();
  } else {
    const auto& c = std::get<commcat::config>(r);
    if ((c.cmd == commcat::command::connect) && (c.host.empty() || c.port.empty())) std::abort();
    if (c.loops < 1) std::abort();
  }
  return 0;
}
