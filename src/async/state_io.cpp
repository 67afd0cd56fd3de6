// async_io_state: moving bytes. drive() runs the active operations until they would block;
// callbacks run from here (the loop), never inside the call that started an operation.
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "async/state.hpp"

namespace comm::detail {


io_step state_impl::read_some(std::byte* p, std::size_t n) {
  if (tls_ && tls_->engine) {
    for (int i = 0; i < fairness_rounds; ++i) {
      tls_->transport.blocked = false;
      auto r = tls_->engine->read(p, n);
      switch (r.status) {
        case tls_status::done: return {io_step::data, r.bytes, nullptr};
        case tls_status::want_input:
        case tls_status::want_output:
          if (tls_->transport.blocked) return {io_step::would_block, 0, nullptr};
          continue;  // the socket was not drained: an edge may never come, try again
        case tls_status::closed: return {io_step::eof, 0, nullptr};
        case tls_status::error: return {io_step::error, 0, tls_->engine->error("TLS read", peer_text())};
      }
    }
    schedule_drive();
    return {io_step::would_block, 0, nullptr};
  }
  io_result r = input_.recv(sock_.get(), p, n);
  if (r.error == 0) return r.bytes > 0 ? io_step{io_step::data, r.bytes, nullptr} : io_step{io_step::eof, 0, nullptr};
  if (r.would_block()) return {io_step::would_block, 0, nullptr};
  return {io_step::error, 0, io_error({r.error, std::generic_category()}, "read from " + peer_text(), this)};
}

io_step state_impl::write_some(const std::byte* p, std::size_t n, bool hold) {
  if (tls_ && tls_->engine) {
    // Record after record into the transport's cork, then one send for all of them. With `hold`
    // the records stay for the next write's (see step_write).
    auto& t = tls_->transport;
    if (hold || record_cork::worth_corking(n) || t.pending_output() > 0) t.cork();
    std::size_t total = 0;
    bool blocked = false;
    std::exception_ptr failure;
    for (int i = 0; i < fairness_rounds && total < n && !t.cork_full(); ++i) {
      t.blocked = false;
      auto r = tls_->engine->write(p + total, n - total);
      if (r.status == tls_status::done) {
        total += r.bytes;
      } else if (r.status == tls_status::want_input || r.status == tls_status::want_output) {
        if ((blocked = t.blocked)) break;
      } else {
        failure = tls_->engine->error("TLS write", peer_text());
        break;
      }
    }
    if (!failure && hold && total == n && !t.cork_full()) {
      t.hold();
      return {io_step::data, total, nullptr};
    }
    io_result sent = t.uncork();
    if (failure) return {io_step::error, 0, failure};
    if (sent.error != 0 && !sent.would_block())
      return {io_step::error, 0, transport_failure(sent.error, describe_operation("TLS write", peer_text()), this)};
    if (total > 0) return {io_step::data, total, nullptr};
    if (!blocked && !sent.would_block()) schedule_drive();  // the rounds ran out: after the others
    return {io_step::would_block, 0, nullptr};
  }
  for (;;) {
    ssize_t r = ::send(sock_.get(), p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r >= 0) return {io_step::data, static_cast<std::size_t>(r), nullptr};
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) return {io_step::would_block, 0, nullptr};
    return {io_step::error, 0, io_error({e, std::generic_category()}, "write to " + peer_text(), this)};
  }
}

void state_impl::drive() {
  drive_scheduled_ = false;
  if (coll_ == nullptr) return;
  auto keep = self();
  bool progress = true;
  for (int i = 0; i < 4 && progress && coll_ != nullptr; ++i) {
    progress = false;
    if (ssl_) {
      progress = step_ssl();
    } else {
      if (read_) progress |= step_read();
      if (coll_ != nullptr && write_ && !ssl_) progress |= step_write();
      else if (coll_ != nullptr && !ssl_) send_owed();  // an edge: room for what done writes left
    }
  }
  // Still moving after the rounds: continue after the other connections had their turn.
  if (progress && coll_ != nullptr && (ssl_ || read_ || write_)) schedule_drive();
  // No write will carry what is owed (a handshake's last flight): it goes before the loop waits.
  if (coll_ != nullptr && !ssl_ && !write_) send_owed();
  maybe_run_shutdown();
}

// ---- reading

void state_impl::complete_read(io_status status, std::exception_ptr error) {
  auto op = std::move(read_);
  coll_->cancel_timer(op->timer);
  read_status_ = status;
  read_error_ = std::move(error);
  auto& cb = (status != io_status::ok && op->buffer_err) ? op->buffer_err : op->buffer_cb;
  if (cb) coll_->guarded([&] { cb(*this, op->target, op->filled); });
  release_buffer_if_empty();
  maybe_run_shutdown();
}

// Shows data to a read_with_checking callback and applies its discard / finish. True when the
// operation has ended.
bool state_impl::deliver_checking(std::span<const std::byte> data, bool from_scratch, io_status status,
                                  std::exception_ptr error) {
  auto op = std::move(read_);  // empty while the callback runs: a new read may start after finish
  collection_impl* c = coll_;
  read_status_ = status;
  read_error_ = std::move(error);
  op->finished = false;
  op->discarded = 0;
  op->shown = data.size();
  calling_ = op.get();
  const bool had_tls = tls_ != nullptr;
  auto& cb = (status != io_status::ok && op->checking_err) ? op->checking_err : op->checking_cb;
  if (cb) c->guarded([&] { cb(*this, data); });
  calling_ = nullptr;
  std::size_t consumed = std::min(op->discarded, data.size());
  if (from_scratch)
    append_buffered(data.data() + consumed, data.size() - consumed);
  else
    buf_begin_ += consumed;
  old_length_ = data.size() - consumed;
  if (!had_tls && tls_) hand_buffered_to_tls();  // TLS attached by the callback (STARTTLS)
  release_buffer_if_empty();
  bool ended = op->finished || status != io_status::ok || coll_ == nullptr;
  if (ended) {
    if (coll_ != nullptr) coll_->cancel_timer(op->timer);
    old_length_ = 0;
    maybe_run_shutdown();
    return true;
  }
  if (read_timeout_) op->deadline = loop_clock::now() + *read_timeout_;
  read_ = std::move(op);
  return false;
}

bool state_impl::step_read() {
  read_op& op = *read_;
  bool progress = false;
  if (!op.checking) {
    if (buffered() > 0 && op.filled < op.target.size()) {
      std::size_t n = std::min(buffered(), op.target.size() - op.filled);
      std::memcpy(op.target.data() + op.filled, buf_.get() + buf_begin_, n);
      buf_begin_ += n;
      op.filled += n;
      release_buffer_if_empty();
      progress = true;
    }
    for (int round = 0; op.filled < op.target.size(); ++round) {
      if (round == fairness_rounds) {
        schedule_drive();
        return progress;
      }
      auto r = read_some(op.target.data() + op.filled, op.target.size() - op.filled);
      switch (r.kind) {
        case io_step::data:
          op.filled += r.n;
          progress = true;
          if (read_timeout_) op.deadline = loop_clock::now() + *read_timeout_;
          break;
        case io_step::would_block: return progress;
        case io_step::eof: complete_read(io_status::eof, nullptr); return true;
        case io_step::error: complete_read(io_status::error, r.err); return true;
      }
    }
    complete_read(io_status::ok, nullptr);
    return true;
  }

  if (!op.shown_buffered) {
    op.shown_buffered = true;
    if (buffered() > 0) {
      if (deliver_checking({buf_.get() + buf_begin_, buffered()}, false, io_status::ok, nullptr)) return true;
      progress = true;
    }
  }
  for (int round = 0;; ++round) {
    if (round == fairness_rounds) {
      schedule_drive();
      return progress;
    }
    if (buffered() >= max_buffer_) {
      auto err = io_error(std::make_error_code(std::errc::message_size),
                          "read from " + peer_text() + ": more than " + std::to_string(max_buffer_) +
                              " unconsumed bytes (read_with_checking buffer limit)",
                          this);
      deliver_checking({buf_.get() + buf_begin_, buffered()}, false, io_status::error, err);
      return true;
    }
    io_step r;
    bool scratch = buffered() == 0;
    std::byte* target;
    if (scratch) {
      // Never more than max_buffer at once either: the bound on what the callback may be shown
      // unconsumed must not depend on how the peer's bytes happen to be chunked.
      auto& s = coll_->scratch();
      target = s.data();
      r = read_some(target, std::min({max_read_, max_buffer_, s.size()}));
    } else {
      std::size_t want = std::min(max_read_, max_buffer_ - buffered());
      if (buf_end_ + want > buf_cap_) {
        // Grow (or compact) so that `want` more bytes fit after the data.
        std::size_t used = buffered();
        if (used + want <= buf_cap_) {
          std::memmove(buf_.get(), buf_.get() + buf_begin_, used);
        } else {
          std::size_t cap = std::max(used + want, buf_cap_ * 2);
          auto nb = std::make_unique_for_overwrite<std::byte[]>(cap);
          std::memcpy(nb.get(), buf_.get() + buf_begin_, used);
          buf_ = std::move(nb);
          buf_cap_ = cap;
        }
        buf_begin_ = 0;
        buf_end_ = used;
      }
      target = buf_.get() + buf_end_;
      r = read_some(target, want);
    }
    switch (r.kind) {
      case io_step::data:
        progress = true;
        if (scratch) {
          if (deliver_checking({target, r.n}, true, io_status::ok, nullptr)) return true;
        } else {
          buf_end_ += r.n;
          if (deliver_checking({buf_.get() + buf_begin_, buffered()}, false, io_status::ok, nullptr)) return true;
        }
        break;
      case io_step::would_block: return progress;
      case io_step::eof:
      case io_step::error: {
        io_status st = r.kind == io_step::eof ? io_status::eof : io_status::error;
        std::span<const std::byte> rest;
        if (buffered() > 0) rest = {buf_.get() + buf_begin_, buffered()};
        deliver_checking(rest, false, st, r.err);
        return true;
      }
    }
  }
}

void state_impl::arm_read_timer() {
  if (!read_timeout_) return;
  read_->deadline = loop_clock::now() + *read_timeout_;
  read_->timer = coll_->add_timer(read_->deadline, [this] { read_timer_fired(); });
}

void state_impl::read_timer_fired() {
  if (!read_ || coll_ == nullptr) return;
  auto keep = self();
  read_->timer = coll_->no_timer();  // it has just been removed from the map
  if (loop_clock::now() < read_->deadline) {  // progress since: wait for the new deadline
    read_->timer = coll_->add_timer(read_->deadline, [this] { read_timer_fired(); });
    return;
  }
  auto ms = read_timeout_ ? read_timeout_->count() : 0;
  auto err = io_error(std::make_error_code(std::errc::timed_out),
                      "read from " + peer_text() + ": timed out after " + std::to_string(ms) + " ms", this);
  if (read_->checking) {
    std::span<const std::byte> rest;
    if (buffered() > 0) rest = {buf_.get() + buf_begin_, buffered()};
    deliver_checking(rest, false, io_status::timeout, err);
  } else {
    complete_read(io_status::timeout, err);
  }
}

// ---- writing

// Under TLS a write of write_behind_min bytes or more is done once its records are made, while the
// socket has room: the records of a chain of writes (each started by the previous one's callback)
// or of writes queued together collect in the transport's cork and leave together, up to its
// 64 KiB limit, and in any case before the loop waits again. Once a send finds no room, the writes
// behind it are done only when their records have left. Records of done writes that the socket
// has not taken yet are owed: they go before anything written later, an edge sends them (drive),
// and close() waits for them (linger).
// Not once the socket has no room, nor once epoll reported the peer's end or an error (a send would
// fail at once: the write reports that itself).
bool state_impl::behind_allowed(const write_op& op) const noexcept {
  return op.data.size() >= write_behind_min && !tls_->transport.stalled() && !input_.eof_seen;
}

bool state_impl::may_write_behind() const noexcept {
  if (!tls_ || !tls_->engine || !write_ || write_->ops.empty()) return false;
  const write_op& last = write_->ops.back();
  return last.done == last.data.size() && behind_allowed(last);
}

bool state_impl::step_write() {
  bool progress = false;
  int round = 0;
  if (owed_error_ && write_) {
    fail_writes(io_status::error, owed_error_);
    return true;
  }
  while (write_ && !write_->ops.empty()) {
    // 1. Write what is not written yet, in order, each write's records held in the cork for the
    //    next write's while there is room (see above).
    const bool tls = tls_ && tls_->engine;
    auto& ops = write_->ops;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      write_op& op = ops[i];
      if (op.done == op.data.size()) continue;  // written; under TLS maybe still in the cork
      const bool last = i + 1 == ops.size();
      const bool hold = tls && (!last || behind_allowed(op));
      while (op.done < op.data.size()) {
        if (round++ == fairness_rounds) {
          if (tls) (void)tls_->transport.flush();  // what is sealed goes now; the rest after the others
          schedule_drive();
          return progress;
        }
        auto r = write_some(op.data.data() + op.done, op.data.size() - op.done, hold);
        if (r.kind == io_step::would_block) return progress;
        if (r.kind != io_step::data) {
          fail_writes(io_status::error, r.err);
          return true;
        }
        op.done += r.n;
        write_->queued_bytes -= r.n;
        progress = true;
        if (write_timeout_) write_->deadline = loop_clock::now() + *write_timeout_;
      }
      if (!hold || tls_->transport.cork_full()) break;
    }
    // 2. Records the engine has made but the socket has not taken yet: unless they may stay
    //    (write-behind), none of the writes they carry is done before they left.
    const bool behind = may_write_behind();
    if (tls && !behind && tls_->transport.pending_output() > 0) {
      io_result f = tls_->transport.flush();
      if (f.would_block()) return progress;
      if (f.error != 0) {
        fail_writes(io_status::error, transport_failure(f.error, describe_operation("TLS write", peer_text()), this));
        return true;
      }
    }
    // 3. The written operations complete in order. A callback may start writes (behind these),
    //    abort or close; an operation counts only while it is written and nothing is pending
    //    (or what is pending may stay).
    while (write_ && !write_->ops.empty()) {
      write_op& front = write_->ops.front();
      if (front.done < front.data.size() || (!behind && tls_ && tls_->transport.pending_output() > 0)) break;
      write_op done = std::move(front);
      write_->ops.pop_front();
      if (write_->ops.empty()) {
        coll_->cancel_timer(write_->timer);
        recycle_write_queue(std::move(write_));  // a callback may start the next write
      }
      write_status_ = io_status::ok;
      write_error_ = nullptr;
      progress = true;
      if (done.cb) coll_->guarded([&] { done.cb(*this, done.done); });
      if (coll_ == nullptr) return true;
    }
  }
  // The chain ended: what done writes left in the cork goes before the loop waits.
  if (coll_ != nullptr && !write_) send_owed();
  maybe_run_shutdown();
  return progress;
}

// Sends the records of done writes (see step_write). When that fails they can never leave: the
// failure becomes the state's write status and error, and every later write fails with it.
void state_impl::send_owed() noexcept {
  if (!tls_ || !tls_->engine || tls_->transport.pending_output() == 0) return;
  io_result f = tls_->transport.flush();
  if (f.error == 0 || f.would_block()) return;
  tls_->transport.discard_output();
  write_status_ = io_status::error;
  try {
    owed_error_ = transport_failure(f.error, describe_operation("TLS write", peer_text()), this);
  } catch (...) {
    owed_error_ = std::current_exception();
  }
  write_error_ = owed_error_;
}

void state_impl::fail_writes(io_status status, std::exception_ptr error) {
  auto q = std::move(write_);
  coll_->cancel_timer(q->timer);
  write_status_ = status;
  write_error_ = error;
  for (auto& op : q->ops) {
    if (coll_ == nullptr) break;  // closed by a callback: no more callbacks
    auto& cb = op.err ? op.err : op.cb;
    if (cb) coll_->guarded([&] { cb(*this, op.done); });
  }
  maybe_run_shutdown();
}

void state_impl::arm_write_timer() {
  if (!write_timeout_) return;
  write_->deadline = loop_clock::now() + *write_timeout_;
  write_->timer = coll_->add_timer(write_->deadline, [this] { write_timer_fired(); });
}

void state_impl::write_timer_fired() {
  if (!write_ || coll_ == nullptr) return;
  auto keep = self();
  write_->timer = coll_->no_timer();
  if (loop_clock::now() < write_->deadline) {
    write_->timer = coll_->add_timer(write_->deadline, [this] { write_timer_fired(); });
    return;
  }
  auto ms = write_timeout_ ? write_timeout_->count() : 0;
  fail_writes(io_status::timeout,
              io_error(std::make_error_code(std::errc::timed_out),
                       "write to " + peer_text() + ": timed out after " + std::to_string(ms) + " ms", this));
}

}  // namespace comm::detail
