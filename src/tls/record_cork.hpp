// Write coalescing under a TLS engine. Both engines hand the transport one record per write (16 KiB
// of data at most), so a large write or a handshake flight followed by session tickets costs a
// send per record. Between cork() and flush() the transport keeps the records here instead (up to
// `limit` bytes) and they leave in one send. What the socket does not take stays pending and goes
// before anything written later; the driver flushes until nothing is pending before it reports a
// write or a handshake done, except where it owes them (async_io_state: a write-behind, the last
// flight of a handshake). The buffer exists only while it holds bytes.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>

#include "tls/engine.hpp"

namespace comm::detail {

class record_cork {
 public:
  static constexpr std::size_t limit = 64 * 1024;
  // Room for one more record past the limit (a record is at most 16 KiB of data plus 256 bytes).
  static constexpr std::size_t capacity = limit + 17 * 1024;

  // A write of at most one record's data gains nothing from a cork but a copy.
  static constexpr bool worth_corking(std::size_t plaintext) noexcept { return plaintext > 16 * 1024; }

  void cork() noexcept { corked_ = true; }
  void uncork() noexcept { corked_ = false; }
  bool corked() const noexcept { return corked_; }
  bool full() const noexcept { return end_ >= limit; }
  std::size_t pending() const noexcept { return end_ - pos_; }
  std::size_t buffer_size() const noexcept { return cap_; }  // what it holds allocated (0: none)

  // The transport's write. send(data, size) -> io_result is one non-blocking send.
  template <class Send>
  io_result write(const void* data, std::size_t size, Send&& send) {
    if (corked_) {
      if (size > room()) {
        if (io_result r = flush(send); r.error != 0) return r;  // full: make room first
        if (size > room()) return send(data, size);                // larger than any record
      }
      reserve(end_ + size);
      std::memcpy(buf_.get() + end_, data, size);
      end_ += size;
      return {size, 0};
    }
    if (pending() > 0)  // earlier records first: nothing may overtake them
      if (io_result r = flush(send); r.error != 0) return r;
    return send(data, size);
  }

  // Forgets what is pending (an abort, or TLS taken off after a failure).
  void discard() noexcept {
    buf_.reset();
    cap_ = pos_ = end_ = 0;
  }

  // Sends what is pending: {0, 0} once all has left, else the send's error (EAGAIN: some remains).
  template <class Send>
  io_result flush(Send&& send) {
    while (pending() > 0) {
      io_result r = send(buf_.get() + pos_, pending());
      if (r.error != 0) return r;
      pos_ += r.bytes;
    }
    buf_.reset();
    cap_ = pos_ = end_ = 0;
    return {0, 0};
  }

 private:
  std::size_t room() noexcept {
    if (pos_ > 0 && buf_) {  // compact what a short send left
      std::memmove(buf_.get(), buf_.get() + pos_, pending());
      end_ -= pos_;
      pos_ = 0;
    }
    return capacity - end_;
  }
  // Handshake flights and small records take a small buffer (a TLS 1.3 server's session tickets
  // are a few hundred bytes); full records take the whole capacity at once, so that a burst of
  // them is never copied to grow it.
  void reserve(std::size_t need) {
    if (need <= cap_) return;
    std::size_t cap = need > small ? capacity : small;
    auto b = std::make_unique_for_overwrite<std::byte[]>(cap);
    if (end_ > pos_) std::memcpy(b.get(), buf_.get() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
    buf_ = std::move(b);
    cap_ = cap;
  }
  static constexpr std::size_t small = 4 * 1024;

  std::unique_ptr<std::byte[]> buf_;  // the records not yet sent: [pos_, end_)
  std::size_t cap_ = 0, pos_ = 0, end_ = 0;  // cap_: the buffer's size (0: none)
  bool corked_ = false;
};

}  // namespace comm::detail
