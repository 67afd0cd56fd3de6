// The coroutine awaitables of async.hpp, built on the callback operations: the coroutine is
// resumed from the operation's callback, in the loop thread.
#include <cstring>

#include "comm/async.hpp"

namespace comm {

void async_io_state::read_some_awaitable::await_suspend(std::coroutine_handle<> h) {
  async_io_state_read_with_checking(state_, [this, h](async_io_state& s, std::span<const std::byte> data) {
    std::size_t n = std::min(data.size(), buffer_.size());
    if (n > 0) {
      // Data first, even when the operation also ended (the error shows on the next read).
      std::memcpy(buffer_.data(), data.data(), n);
      n_ = n;
      async_io_state_finish(s, n);
    } else {
      if (s.read_status() != io_status::ok && s.read_status() != io_status::eof) error_ = s.read_error();
      async_io_state_finish(s, 0);
    }
    h.resume();  // `this` lives in the coroutine frame: not touched after this
  });
}

std::size_t async_io_state::read_some_awaitable::await_resume() {
  if (error_) std::rethrow_exception(error_);
  return n_;
}

void async_io_state::write_awaitable::await_suspend(std::coroutine_handle<> h) {
  async_io_state_write_buffer(state_, data_, [this, h](async_io_state& s, std::size_t) {
    if (s.write_status() != io_status::ok) error_ = s.write_error();
    h.resume();
  });
}

void async_io_state::write_awaitable::await_resume() {
  if (error_) std::rethrow_exception(error_);
}

void connect_awaitable::await_suspend(std::coroutine_handle<> h) {
  state* st = s_.get();
  create_async_io_state_and_connected_tcp_socket(
      *st->collection, st->host, st->service,
      [st, h](async_io_state* s, std::exception_ptr err) {
        if (s) st->result = s->shared_from_this();
        st->error = std::move(err);
        h.resume();
      },
      std::move(st->options));
}

std::shared_ptr<async_io_state> connect_awaitable::await_resume() {
  if (s_->error) std::rethrow_exception(s_->error);
  return std::move(s_->result);
}

}  // namespace comm
