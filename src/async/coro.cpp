// The coroutine awaitables of async.hpp, built on the callback operations: the coroutine is
// resumed from the operation's callback, in the loop thread.
#include <cstring>

#include "async/state.hpp"
#include "comm/async.hpp"

namespace comm {

// A state closed or aborted under a suspended awaiter resumes it with the error
// (operation_canceled), where a callback operation would just end silently.
void async_io_state::read_some_awaitable::await_suspend(std::coroutine_handle<> h) {
  auto& s = detail::impl_of(state_);
  s.coll("co_await read_some");
  auto op = std::make_unique<detail::read_op>();
  op->checking = true;
  op->checking_cb = [this, h](async_io_state& st, std::span<const std::byte> data) {
    std::size_t n = std::min(data.size(), buffer_.size());
    if (n > 0) {
      // Data first, even when the operation also ended (the error shows on the next read).
      std::memcpy(buffer_.data(), data.data(), n);
      n_ = n;
      async_io_state_finish(st, n);
    } else {
      if (st.read_status() != io_status::ok && st.read_status() != io_status::eof) error_ = st.read_error();
      async_io_state_finish(st, 0);
    }
    h.resume();  // `this` lives in the coroutine frame: not touched after this
  };
  op->abandoned = [this, h](std::exception_ptr e) {
    error_ = std::move(e);
    h.resume();
  };
  s.start_read(std::move(op));
}

std::size_t async_io_state::read_some_awaitable::await_resume() {
  if (error_) std::rethrow_exception(error_);
  return n_;
}

void async_io_state::write_awaitable::await_suspend(std::coroutine_handle<> h) {
  auto& s = detail::impl_of(state_);
  s.coll("co_await write");
  detail::write_op op;
  op.data = data_;
  op.cb = [this, h](async_io_state& st, std::size_t) {
    if (st.write_status() != io_status::ok) error_ = st.write_error();
    h.resume();
  };
  op.abandoned = [this, h](std::exception_ptr e) {
    error_ = std::move(e);
    h.resume();
  };
  s.start_write(std::move(op), std::nullopt);
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
