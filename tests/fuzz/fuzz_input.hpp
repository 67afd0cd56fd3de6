// Splitting a fuzz input into fields: each field is a 16-bit little-endian length then its bytes;
// a short or missing field is taken as what is left (so every input means something).
#pragma once

#include <cstdint>
#include <string>

namespace comm_fuzz {

class fields {
 public:
  fields(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string next() {
    std::size_t n = byte();
    n |= static_cast<std::size_t>(byte()) << 8;
    n = std::min(n, size_ - pos_);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  // The inverse, for seed writers.
  static std::string field(const std::string& s) {
    std::string out;
    out.push_back(static_cast<char>(s.size() & 0xff));
    out.push_back(static_cast<char>((s.size() >> 8) & 0xff));
    return out + s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace comm_fuzz
