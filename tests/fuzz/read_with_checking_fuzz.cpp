// async read_with_checking parsing a line protocol over arbitrary chunking of arbitrary bytes. The
// peer end of a socketpair holds the whole input and is shut for writing; the state reads it with
// a per-round max_read taken from the input (1..256 bytes, changed in every callback), so lines
// are split at every possible point. The callback consumes each complete line with discard and
// leaves the partial one; at eof the remainder comes once more. The lines must equal a reference
// split of the input, and the max_buffer bound must fire exactly when a line reaches it.
//
// Input: byte 0 = max_buffer (8..263), bytes 1..8 = the cycle of max_read sizes (1..256, at most
// max_buffer), then the payload.
#include <sys/socket.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "comm/async.hpp"

namespace {

comm::wait_state_collection& collection() {
  static auto c = comm::make_wait_state_collection("fuzz", [](std::exception_ptr) { std::abort(); });
  return *c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 9 || size > 9 + 16384) return 0;
  const std::size_t max_buffer = 8 + data[0];
  std::vector<std::size_t> reads;
  // max_read stays within max_buffer (as with the defaults, 64 KiB and 1 MiB): when the buffer is
  // empty a round reads up to max_read bytes outside the max_buffer check, so a larger max_read
  // lets a line longer than max_buffer through when it arrives in one piece (reported separately).
  for (int i = 1; i <= 8; ++i) reads.push_back(std::min<std::size_t>(1 + data[i], max_buffer));
  const std::string payload(reinterpret_cast<const char*>(data + 9), size - 9);

  // Reference: segments between newlines; any segment of max_buffer bytes or more is an error.
  std::vector<std::string> want;
  bool want_error = false;
  for (std::size_t pos = 0; pos < payload.size();) {
    std::size_t nl = payload.find('\n', pos);
    std::size_t end = nl == std::string::npos ? payload.size() : nl;
    if (end - pos >= max_buffer) {
      want_error = true;
      break;
    }
    want.push_back(payload.substr(pos, end - pos));
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) std::abort();
  comm::socket_handle peer(sv[1]);
  int sndbuf = 1 << 20;
  setsockopt(peer.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (!payload.empty() && ::send(peer.get(), payload.data(), payload.size(), MSG_NOSIGNAL) !=
                              static_cast<ssize_t>(payload.size()))
    std::abort();
  ::shutdown(peer.get(), SHUT_WR);

  auto& coll = collection();
  comm::async_io_state_options so;
  so.max_buffer = max_buffer;
  so.max_read = reads[0];
  auto state = comm::create_async_io_state(coll, comm::socket_handle(sv[0]), so);

  std::vector<std::string> got;
  bool ended = false, got_error = false;
  std::size_t round = 0;
  auto take_lines = [&](comm::async_io_state& s, std::span<const std::byte> d) {
    const char* p = reinterpret_cast<const char*>(d.data());
    std::size_t consumed = 0;
    while (!d.empty()) {
      const void* nl = std::memchr(p + consumed, '\n', d.size() - consumed);
      if (nl == nullptr) break;
      std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - p);
      got.emplace_back(p + consumed, end - consumed);
      consumed = end + 1;
    }
    if (consumed > 0) comm::async_io_state_discard(s, consumed);
    s.set_max_read(reads[++round % reads.size()]);
  };
  comm::read_with_checking_options ro;
  ro.error_callback = [&](comm::async_io_state& s, std::span<const std::byte> d) {
    if (s.read_status() == comm::io_status::eof) {
      take_lines(s, d);
      if (!d.empty() && d.back() != std::byte('\n')) {
        // The remainder after the last newline is the final line.
        const char* p = reinterpret_cast<const char*>(d.data());
        const char* last = static_cast<const char*>(memrchr(p, '\n', d.size()));
        std::size_t from = last ? static_cast<std::size_t>(last - p) + 1 : 0;
        got.emplace_back(p + from, d.size() - from);
      }
    } else if (s.read_status() == comm::io_status::error) {
      try {
        std::rethrow_exception(s.read_error());
      } catch (const comm::socket_io_error& e) {
        if (e.code() != std::make_error_code(std::errc::message_size)) std::abort();
      }
      got_error = true;
    } else {
      std::abort();  // no timeout was set
    }
    ended = true;
    comm::wait_state_collection_stop_loop(*s.collection());
  };
  comm::async_io_state_read_with_checking(*state, take_lines, std::move(ro));
  auto guard = comm::wait_state_collection_schedule_timer(coll, std::chrono::seconds(10), [] { std::abort(); });
  comm::loop_processing_wait_state_collection(coll);
  comm::wait_state_collection_cancel_timer(coll, guard);
  comm::close_async_io_state(*state);

  if (!ended) std::abort();
  if (got_error != want_error) std::abort();
  if (got_error) {
    if (got.size() != want.size()) std::abort();  // every line before the long one came out
  }
  if (got != want) std::abort();
  return 0;
}
