// A transport over memory for the TLS fuzz targets: reads come from the fuzz input in chunks, then
// would_block once the input is used up; writes are accepted whole and kept (or counted).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "tls/engine.hpp"

namespace comm_fuzz {

class input_transport final : public comm::detail::transport {
 public:
  // chunk: the most bytes one read() hands over (>= 1).
  input_transport(const std::uint8_t* data, std::size_t size, std::size_t chunk)
      : data_(data), size_(size), chunk_(std::max<std::size_t>(chunk, 1)) {}

  comm::detail::io_result read(void* out, std::size_t size) override {
    if (pos_ == size_) return {0, eof_at_end ? 0 : EAGAIN};
    const std::size_t n = std::min({size, chunk_, size_ - pos_});
    std::memcpy(out, data_ + pos_, n);
    pos_ += n;
    return {n, 0};
  }
  comm::detail::io_result write(const void* data, std::size_t size) override {
    if (keep_output) written.append(static_cast<const char*>(data), size);
    written_bytes += size;
    return {size, 0};
  }
  bool exhausted() const noexcept { return pos_ == size_; }

  bool eof_at_end = false;  // true: orderly EOF after the input instead of would_block
  bool keep_output = false;
  std::string written;
  std::size_t written_bytes = 0;

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t chunk_;
  std::size_t pos_ = 0;
};

}  // namespace comm_fuzz
