// async_io_state's implementation. Kept small while idle: operations, the read buffer, the write
// queue and TLS each live behind a pointer that is empty when unused.
//
// Readiness: each connection is registered once, edge-triggered, for input and output. Every
// operation tries its syscall (or engine call) as soon as it starts (from the loop, never inside
// the starting call), and after EAGAIN / want_input / want_output waits for the next edge; an
// edge retries every active operation, so an engine that reads while writing (or the reverse)
// never strands the other operation.
#pragma once

#include <deque>
#include <variant>

#include "async/collection.hpp"
#include "async/loop_transport.hpp"

namespace comm::detail {

struct accept_core;

// Reads or writes per operation per drive before yielding to other connections.
constexpr int fairness_rounds = 16;
// Under TLS, writes of at least this size may be done before their records leave (write-behind,
// see step_write); smaller ones gain little from it (a request / reply is one send either way).
constexpr std::size_t write_behind_min = 4 * 1024;

struct read_op {
  bool checking = false;
  std::span<std::byte> target;  // read_buffer
  std::size_t filled = 0;
  read_buffer_callback buffer_cb, buffer_err;
  read_checking_callback checking_cb, checking_err;
  bool shown_buffered = false;  // read_with_checking: buffered data shown once at the start
  // Inside a read_with_checking callback.
  bool finished = false;
  std::size_t discarded = 0;
  std::size_t shown = 0;
  loop_clock::time_point deadline{};
  timer_token timer;
  // Coroutine awaiters only: called (deferred) with the error when close or abort drops the
  // operation, where a callback operation just ends without its callback.
  std::function<void(std::exception_ptr)> abandoned;
};

struct write_op {
  std::span<const std::byte> data;
  std::variant<std::monostate, std::string, std::vector<std::byte>> owned;
  std::size_t done = 0;
  write_callback cb, err;
  std::function<void(std::exception_ptr)> abandoned;  // as read_op::abandoned
  // Points data at the owned copy again: a moved std::string may have moved its bytes (SSO).
  void rebind() noexcept {
    if (auto* s = std::get_if<std::string>(&owned)) data = std::as_bytes(std::span<const char>(s->data(), s->size()));
    if (auto* v = std::get_if<std::vector<std::byte>>(&owned)) data = std::span<const std::byte>(v->data(), v->size());
  }
};
struct write_queue {
  std::deque<write_op> ops;
  std::size_t queued_bytes = 0;
  loop_clock::time_point deadline{};
  timer_token timer;
};
// Empty write queues are kept (a few per thread) for the next write: a deque allocates as it is
// made, and a request/reply connection starts a queue for each reply.
std::unique_ptr<write_queue> take_write_queue();
void recycle_write_queue(std::unique_ptr<write_queue> queue) noexcept;

enum class ssl_op_kind { handshake, detach };
struct ssl_op {
  ssl_op_kind kind = ssl_op_kind::handshake;
  ssl_callback cb;
  std::optional<milliseconds> timeout;
  bool shutdown_sent = false;
  timer_token timer;
};

struct tls_part {
  tls_part(int fd, input_readiness& input) : transport(fd, input) {}
  loop_transport transport;  // the engine keeps a reference: declared first, destroyed last
  std::unique_ptr<tls_engine> engine;
  bool registered = false;
};

struct pending_shutdown {
  direction dir = direction::io;
  shutdown_callback cb;
  // With TLS and output: the close_notify is being sent (it must leave before the FIN).
  bool notifying = false;
  timer_token timer;
};

// Result of moving bytes once.
struct io_step {
  enum kind_t { data, would_block, eof, error } kind = would_block;
  std::size_t n = 0;
  std::exception_ptr err;
};

class state_impl final : public async_io_state, public loop_member {
 public:
  state_impl(collection_impl& c, socket_handle s, async_io_state_options o);
  ~state_impl() override;

  static std::shared_ptr<state_impl> create(collection_impl& c, socket_handle s, async_io_state_options o);
  // For a socket that comm opened non-blocking and whose peer it knows (an accepted or connected
  // one): no fcntl, no getpeername. With a `replacing` member (the connector), the state takes
  // over its epoll registration of the socket in one EPOLL_CTL_MOD.
  static std::shared_ptr<state_impl> create_nonblocking(collection_impl& c, socket_handle s, async_io_state_options o,
                                                        std::optional<endpoint> peer,
                                                        loop_member* replacing = nullptr);
  std::shared_ptr<state_impl> self() { return std::static_pointer_cast<state_impl>(shared_from_this()); }

  void on_events(std::uint32_t events) override;
  void deferred_drive() override { drive(); }
  // The collection is closing everything: nothing lingers.
  void close_quietly() noexcept override {
    if (lingering_) end_linger();
    else close(false, false);
  }
  std::size_t close(bool keep_alive, bool may_linger = true) noexcept;
  bool open() const noexcept { return coll_ != nullptr; }
  collection_impl& coll(const char* operation);  // throws std::logic_error when closed / wrong thread

  void schedule_drive();
  void drive();
  std::string peer_text() const;

  // Operations (started by the public functions).
  void start_read(std::unique_ptr<read_op> op);
  void start_write(write_op op, std::optional<milliseconds> timeout);
  void abort(direction dir) noexcept;
  // Hands the awaiters of dropped operations their error (operation_canceled), in the loop.
  void abandon_read(const char* why) noexcept;
  void abandon_writes(const char* why) noexcept;
  std::optional<std::error_code> shutdown(direction dir, bool abort, shutdown_callback cb);
  void start_ssl(ssl_op_kind kind, ssl_callback cb, std::optional<milliseconds> timeout);
  void check_no_ssl_op(const char* operation) const;
  void check_idle(const char* operation) const;

  // Reading helpers.
  std::size_t buffered() const noexcept { return buf_end_ - buf_begin_; }
  void append_buffered(const std::byte* p, std::size_t n);
  void release_buffer_if_empty() noexcept;

  // Fields (public inside src/async).
  collection_impl* coll_ = nullptr;
  socket_handle sock_;
  std::string name_;
  std::optional<endpoint> peer_;  // read once at creation: error messages still name it after a reset
  std::any user_info_;
  std::optional<milliseconds> read_timeout_, write_timeout_;
  std::size_t max_read_, max_buffer_, max_queued_;
  bool queue_output_ = false;
  bool drive_scheduled_ = false;
  input_readiness input_;

  std::unique_ptr<std::byte[]> buf_;
  std::size_t buf_cap_ = 0, buf_begin_ = 0, buf_end_ = 0;
  std::size_t old_length_ = 0;

  io_status read_status_ = io_status::ok, write_status_ = io_status::ok;
  std::exception_ptr read_error_, write_error_;

  std::unique_ptr<read_op> read_;
  read_op* calling_ = nullptr;  // the read_with_checking op whose callback runs now
  std::unique_ptr<write_queue> write_;
  std::unique_ptr<tls_part> tls_;
  std::unique_ptr<ssl_op> ssl_;
  std::unique_ptr<pending_shutdown> shutdown_;
  std::shared_ptr<accept_core> acceptor_;  // for the acceptor's connection count

  tls_engine* tls_engine_() const noexcept override { return tls_ ? tls_->engine.get() : nullptr; }

  // TLS (tls.cpp).
  void attach_engine(std::unique_ptr<tls_engine> engine);
  void drop_tls() noexcept;
  void hand_buffered_to_tls();
  bool step_ssl();
  void finish_ssl(std::exception_ptr error);
  void ssl_timed_out();

 private:
  io_step read_some(std::byte* p, std::size_t n);
  io_step write_some(const std::byte* p, std::size_t n, bool hold = false);
  bool behind_allowed(const write_op& op) const noexcept;
  bool may_write_behind() const noexcept;
  void send_owed() noexcept;
  // close() while done writes' records still wait for room: the socket stays registered (closed
  // for the user) until they left, an error, or the write timeout (10 s without one). Meanwhile
  // what arrives is dropped: a peer that writes before it reads would otherwise never read.
  // Then, while bytes are not all transmitted, more may still come: a TLS 1.3 server's session
  // tickets to a client, or more from a peer that was seen writing (TLS or plain: it sent what the
  // user did not read); meeting a closed socket it would draw a reset that throws away the unsent
  // bytes: the socket stays registered, dropping what arrives, until all is transmitted (see
  // wait_until_sent), within the same bound.
  bool start_linger(collection_impl& c) noexcept;
  bool begin_linger(collection_impl& c, bool owed) noexcept;
  bool tickets_may_come() const noexcept;
  bool begin_unsent_wait() noexcept;
  bool arm_linger_timer() noexcept;
  void linger_timer_fired() noexcept;
  void linger_step() noexcept;
  void end_linger() noexcept;
  void send_owed_now() noexcept;
  // How long output that must still leave (a close_notify, records of done writes) may wait for
  // room: the write timeout, 10 s without one.
  milliseconds output_bound() const noexcept { return write_timeout_ ? *write_timeout_ : milliseconds(10'000); }
  void close_socket() noexcept;
  std::exception_ptr owed_error_;  // sending what done writes left failed: every later write fails
  bool lingering_ = false;
  bool linger_tickets_ = false;  // tickets_may_come() when the linger began
  bool linger_input_ = false;    // something arrived (and was dropped) while lingering
  bool linger_unsent_ = false;   // waiting for the unsent bytes (begin_unsent_wait)
  collection_impl* linger_coll_ = nullptr;
  timer_token linger_timer_{};
  loop_clock::time_point linger_deadline_{};
  bool step_read();
  bool step_write();
  void complete_read(io_status status, std::exception_ptr error);
  bool deliver_checking(std::span<const std::byte> data, bool from_scratch, io_status status,
                        std::exception_ptr error);
  void fail_writes(io_status status, std::exception_ptr error);
  void arm_read_timer();
  void arm_write_timer();
  void read_timer_fired();
  void write_timer_fired();
  std::optional<std::error_code> maybe_run_shutdown(bool now = false);
  void start_shutdown(direction dir, shutdown_callback cb);
  bool send_close_notify() noexcept;
  void close_notify_timed_out();
};

inline state_impl& impl_of(async_io_state& s) noexcept { return static_cast<state_impl&>(s); }
inline const state_impl& impl_of(const async_io_state& s) noexcept { return static_cast<const state_impl&>(s); }

std::exception_ptr io_error(std::error_code ec, const std::string& what, const ssl_connection* conn);

}  // namespace comm::detail
