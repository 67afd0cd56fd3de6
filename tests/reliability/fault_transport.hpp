// A deterministic fault transport for TLS engines talking to each other through memory: the peer's
// bytes arrive in every chunking (1 byte at a time or random splits from a seeded RNG), reads and
// writes return EAGAIN at random points, writes are short, and a direction can be cut (orderly EOF
// or ECONNRESET) after a chosen number of bytes. Same seed, same run.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "tls/engine.hpp"

namespace comm_reliability {

// One direction of the connection: bytes written by one side, not yet read by the other.
struct byte_pipe {
  std::string bytes;
  std::size_t delivered = 0;  // bytes handed to the reader so far (for cut points)
};

struct fault_plan {
  bool bytewise = false;            // reads hand over exactly 1 byte
  unsigned eagain_percent = 30;     // chance that a read or write says EAGAIN instead
  unsigned short_write_percent = 50;  // chance that a write takes only part of the buffer
  std::size_t max_split = 700;      // random reads hand over 1..max_split bytes
  bool write_faults = true;         // false: writes are taken whole, never EAGAIN
  // Cut the reading direction once this many bytes were delivered: EOF or ECONNRESET after.
  std::size_t cut_after = std::numeric_limits<std::size_t>::max();
  int cut_error = 0;  // 0 = orderly EOF (TCP FIN without close_notify), else an errno
};

class fault_transport final : public comm::detail::transport {
 public:
  fault_transport(byte_pipe& in, byte_pipe& out, fault_plan plan, std::uint64_t seed)
      : in_(in), out_(out), plan_(plan), rng_(seed) {}

  comm::detail::io_result read(void* data, std::size_t size) override {
    ++reads;
    if (in_.delivered >= plan_.cut_after) return {0, plan_.cut_error};
    if (chance(plan_.eagain_percent) || in_.bytes.empty()) return {0, EAGAIN};
    std::size_t n = plan_.bytewise ? 1 : 1 + pick(plan_.max_split);
    n = std::min({n, size, in_.bytes.size(), plan_.cut_after - in_.delivered});
    std::memcpy(data, in_.bytes.data(), n);
    in_.bytes.erase(0, n);
    in_.delivered += n;
    return {n, 0};
  }

  comm::detail::io_result write(const void* data, std::size_t size) override {
    ++writes;
    if (closed_for_writing) return {0, EPIPE};
    if (size == 0) return {0, 0};
    if (plan_.write_faults && chance(plan_.eagain_percent)) return {0, EAGAIN};
    std::size_t n = size;
    if (plan_.write_faults && chance(plan_.short_write_percent)) n = 1 + pick(size);
    n = std::min(n, size);
    out_.bytes.append(static_cast<const char*>(data), n);
    return {n, 0};
  }

  void set_plan(const fault_plan& p) { plan_ = p; }
  const fault_plan& plan() const { return plan_; }
  std::size_t delivered() const { return in_.delivered; }

  bool closed_for_writing = false;
  std::size_t reads = 0, writes = 0;

 private:
  bool chance(unsigned percent) { return percent > 0 && std::uniform_int_distribution<unsigned>(0, 99)(rng_) < percent; }
  std::size_t pick(std::size_t bound) {  // 0 .. bound-1
    return bound <= 1 ? 0 : std::uniform_int_distribution<std::size_t>(0, bound - 1)(rng_);
  }

  byte_pipe& in_;
  byte_pipe& out_;
  fault_plan plan_;
  std::mt19937_64 rng_;
};

}  // namespace comm_reliability
