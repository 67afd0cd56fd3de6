// read_line framing over arbitrary chunking of arbitrary bytes, through the public API: a
// socket_stream over a socketpair, the peer end written chunk by chunk. After each chunk the
// stream reads lines until a zero read timeout says it needs more (the partial line must survive
// the timeout), and at the end the peer closes. The lines must equal what a reference splitter
// makes of the whole input; a line over max_line_length must be an error, never a silent cut.
//
// Input: byte 0 = buffer size (16..271), byte 1 = max_line_length (1..256), then chunks, each a
// length byte followed by that many bytes. Total payload is bounded so a socketpair holds it.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "comm/stream.hpp"

namespace {

struct expected_lines {
  std::vector<std::string> lines;
  bool too_long = false;  // the stream must throw message_size at lines.size()
};

expected_lines reference(const std::string& all, std::size_t max) {
  expected_lines e;
  std::size_t pos = 0;
  while (pos < all.size()) {
    std::size_t nl = all.find('\n', pos);
    std::string line = all.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    if (nl != std::string::npos && !line.empty() && line.back() == '\r') line.pop_back();
    if (line.size() > max) {
      e.too_long = true;
      return e;
    }
    e.lines.push_back(line);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2 || size > 8192) return 0;
  comm::stream_options options;
  options.buffer_size = 16 + data[0];
  options.max_line_length = 1 + data[1];
  options.read_timeout = std::chrono::milliseconds(0);

  std::vector<std::string> chunks;
  std::string all;
  for (std::size_t i = 2; i < size;) {
    const std::size_t n = std::min<std::size_t>(data[i], size - i - 1);
    chunks.emplace_back(reinterpret_cast<const char*>(data + i + 1), n);
    all += chunks.back();
    i += 1 + n;
  }
  const expected_lines want = reference(all, options.max_line_length);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) std::abort();
  comm::socket_stream stream{comm::socket_handle(sv[0]), options};
  comm::socket_handle peer(sv[1]);

  std::vector<std::string> got;
  bool too_long = false, ended = false;
  auto drain = [&](bool final_round) {
    while (!too_long && !ended) {
      try {
        std::optional<std::string> line = stream.read_line();
        if (!line) {
          ended = true;
          return;
        }
        got.push_back(std::move(*line));
      } catch (const comm::socket_timeout_error&) {
        if (final_round) std::abort();  // after the peer closed, a read never has to wait
        return;
      } catch (const comm::socket_io_error& e) {
        if (e.code() != std::make_error_code(std::errc::message_size)) std::abort();
        too_long = true;
      }
    }
  };
  for (const auto& c : chunks) {
    // After a line too long the stream reads no more, and the socketpair holds far fewer bytes
    // than its size when they come in many small sends (each costs a buffer of its own): a send
    // would then block or fall short.
    if (too_long) break;
    if (!c.empty() && ::send(peer.get(), c.data(), c.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(c.size()))
      std::abort();
    drain(false);
  }
  ::shutdown(peer.get(), SHUT_WR);
  drain(true);

  if (too_long != want.too_long) std::abort();
  if (too_long) {
    // Lines before the long one must all have come out intact.
    if (got.size() != want.lines.size()) std::abort();
  }
  if (got != want.lines) std::abort();
  return 0;
}
