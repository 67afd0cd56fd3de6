// comm — asynchronous I/O (layer `async`): an epoll event loop (wait_state_collection) driving
// connections by callbacks (async_io_state), with TLS driven without blocking, after the model's
// wait-state-collection / async-io-state.
//
// Threads. A collection's loop runs in one thread at a time (loop_processing_wait_state_collection
// throws std::logic_error if another loop already runs it). Every callback of its states, acceptors
// and timers runs in that thread. Functions on states, acceptors and timers must be called in the
// loop thread, or while no loop runs (set-up); from other threads use
// apply_in_wait_state_collection_process. Only wait_state_collection_stop_loop,
// apply_in_wait_state_collection_process and wait_state_collection_alive_p may be called from any
// thread at any time.
//
// Errors. Nothing is thrown into the loop from I/O: an operation ends with a status (ok, eof,
// timeout, error) and an error object (read_error() / write_error()), and its callback (or its
// error callback, when given and the status is not ok) runs. Connect, accept and TLS callbacks get
// a std::exception_ptr (null = success), decodable with ssl_failure_indicator. Programming errors
// (a second read while one is active, discard outside its callback, ...) throw std::logic_error at
// the call. An exception escaping a user callback is passed to the collection's handler and the
// loop goes on.
//
// Callbacks never run inside the call that starts an operation: they run later, from the loop.
//
// Ownership. Collections, states and accepting handles are held by std::shared_ptr. A collection
// keeps its open states and handles alive; closing one releases that reference, and a closed
// state is still a valid object (is_open() false, buffered data still readable).
#pragma once

#include <any>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comm/errors.hpp"
#include "comm/net.hpp"
#include "comm/stream.hpp"
#include "comm/tls.hpp"

namespace comm {

class wait_state_collection;
class async_io_state;
class accepting_handle;

// ---------------------------------------------------------------------------------------------
// wait_state_collection: the event loop.

// Receives exceptions that escaped user callbacks. Default: one line on stderr.
using collection_error_handler = std::function<void(std::exception_ptr)>;

class wait_state_collection : public std::enable_shared_from_this<wait_state_collection> {
 public:
  wait_state_collection(const wait_state_collection&) = delete;
  wait_state_collection& operator=(const wait_state_collection&) = delete;
  // Closes every state, acceptor and timer (no callbacks), then the epoll descriptors.
  virtual ~wait_state_collection() = default;
  const std::string& name() const noexcept;
  // Whether a loop runs this collection now.
  bool running() const noexcept;
  // Whether the calling thread is the one running the loop.
  bool in_loop_thread() const noexcept;

 protected:
  wait_state_collection() = default;
};

// A new, empty collection, not running. Throws socket_create_error if epoll cannot be set up.
std::shared_ptr<wait_state_collection> make_wait_state_collection(std::string name = {},
                                                                  collection_error_handler handler = {});
// Runs the loop in the calling thread until wait_state_collection_stop_loop. A stop requested
// before the loop starts makes it return at once. Throws std::logic_error if a loop already runs.
void loop_processing_wait_state_collection(wait_state_collection& collection);
// A collection whose loop runs in its own thread, named "comm loop <name>" (the kernel keeps 15
// characters). When the loop stops, the collection is closed and the thread ends. The thread holds
// a reference to the collection until then.
std::shared_ptr<wait_state_collection> create_and_run_wait_state_collection(std::string name,
                                                                           collection_error_handler handler = {});
// Makes the running loop return promptly (an eventfd wake-up); callable from any thread, and for
// a hand-driven collection from a signal handler. For a create_and_run collection called from
// another thread, it also waits until the loop thread has closed the collection and ended.
void wait_state_collection_stop_loop(wait_state_collection& collection);
// Runs function in the loop thread (thread-safe; functions run in the order posted).
void apply_in_wait_state_collection_process(wait_state_collection& collection, std::function<void()> function);
// Closes every state and accepting handle and cancels every timer and pending connect: no further
// callbacks, no descriptors left. The loop keeps running; new states may be added afterwards.
void close_wait_state_collection(wait_state_collection& collection);
// Whether the thread of a create_and_run collection is alive (false for hand-driven ones).
bool wait_state_collection_alive_p(const wait_state_collection& collection) noexcept;
// Passes an error to the collection's handler (what the loop does with escaping exceptions).
void wait_state_collection_report_error(wait_state_collection& collection, std::exception_ptr error) noexcept;

// One-shot timers, run in the loop thread. 0 is never a valid id.
using timer_id = std::uint64_t;
timer_id wait_state_collection_schedule_timer(wait_state_collection& collection, milliseconds delay,
                                              std::function<void()> function);
// True if the timer was pending and will not run.
bool wait_state_collection_cancel_timer(wait_state_collection& collection, timer_id id) noexcept;

// ---------------------------------------------------------------------------------------------
// async_io_state: one connection driven by callbacks.

enum class io_status { ok, eof, timeout, error };
std::string_view to_string(io_status s) noexcept;

struct async_io_state_options {
  std::optional<milliseconds> read_timeout;   // longest wait without progress; none = forever
  std::optional<milliseconds> write_timeout;
  std::any user_info;
  std::string name;
  bool queue_output = false;                      // false: a write while one is active is an error
  std::size_t max_read = 64 * 1024;               // bytes fetched per read_with_checking round
  std::size_t max_buffer = 1024 * 1024;           // read_with_checking's buffer limit (error beyond)
  std::size_t max_queued_output = 4 * 1024 * 1024; // queued write bytes limit (error beyond)
};

class async_io_state : public ssl_connection, public std::enable_shared_from_this<async_io_state> {
 public:
  // The collection, or nullptr once closed.
  wait_state_collection* collection() const noexcept;
  bool is_open() const noexcept;
  int native_handle() const noexcept;  // -1 once closed without keep_alive
  const std::string& name() const noexcept;
  void set_name(std::string name);
  std::any& user_info() noexcept;
  std::optional<milliseconds> read_timeout() const noexcept;
  std::optional<milliseconds> write_timeout() const noexcept;
  void set_read_timeout(std::optional<milliseconds> t) noexcept;
  void set_write_timeout(std::optional<milliseconds> t) noexcept;
  std::size_t max_read() const noexcept;
  void set_max_read(std::size_t n) noexcept;
  // Status of the last read / write operation, and its error (null unless status is error or
  // timeout, or eof on TLS truncation).
  io_status read_status() const noexcept;
  io_status write_status() const noexcept;
  std::exception_ptr read_error() const noexcept;
  std::exception_ptr write_error() const noexcept;
  // Bytes the previous read_with_checking callback of the current operation had already seen.
  std::size_t old_length() const noexcept;
  // Bytes read but not consumed (kept for the next read, or for get_buffered_data).
  std::size_t buffered_data_length() const noexcept;
  // Bytes queued for writing and not yet written.
  std::size_t queued_output() const noexcept;
  std::optional<endpoint> address() const;       // local
  std::optional<endpoint> peer_address() const;  // as read when the state was made

  // Coroutine forms (see the end of this header): co_await state.read_some(buf) returns the count
  // read (0 = end of stream) or throws; co_await state.write(data) writes it all or throws.
  class read_some_awaitable;
  class write_awaitable;
  read_some_awaitable read_some(std::span<std::byte> buffer);
  write_awaitable write(std::span<const std::byte> data);

 protected:
  async_io_state() = default;
};

// Takes ownership of a connected socket (made non-blocking). From a socket_stream: its pending
// output is flushed, its buffered input becomes the state's buffered data, and the stream is left
// closed; a stream with TLS attached is refused (std::invalid_argument: detach it first).
std::shared_ptr<async_io_state> create_async_io_state(wait_state_collection& collection, socket_handle socket,
                                                      async_io_state_options options = {});
std::shared_ptr<async_io_state> create_async_io_state(wait_state_collection& collection, socket_stream&& stream,
                                                      async_io_state_options options = {});

// read_buffer: fills the whole buffer, then callback(state, buffer, n) with n == buffer.size();
// on eof / timeout / error n is what arrived before. The buffer must stay valid until then.
using read_buffer_callback = std::function<void(async_io_state&, std::span<std::byte> buffer, std::size_t n)>;
struct read_buffer_options {
  std::optional<milliseconds> timeout;  // sets the state's read_timeout (persists)
  read_buffer_callback error_callback;  // called instead of callback when status is not ok
};
void async_io_state_read_buffer(async_io_state& state, std::span<std::byte> buffer, read_buffer_callback callback,
                                read_buffer_options options = {});

// read_with_checking: reads into an internal buffer and calls callback(state, data) with every
// unconsumed byte each time more arrives (data is valid only inside the callback). The callback
// consumes with async_io_state_discard (go on reading) or async_io_state_finish (stop; the rest
// stays buffered for the next read). At eof / timeout / error the callback (or error_callback)
// runs once more with what is left, and the operation ends. Buffered data from an earlier
// operation is shown first, before reading. More than max_buffer unconsumed bytes: error
// (socket_io_error, std::errc::message_size).
using read_checking_callback = std::function<void(async_io_state&, std::span<const std::byte> data)>;
struct read_with_checking_options {
  std::optional<milliseconds> timeout;  // persists on the state
  std::optional<std::size_t> max_read;  // persists on the state
  read_checking_callback error_callback;
};
void async_io_state_read_with_checking(async_io_state& state, read_checking_callback callback,
                                       read_with_checking_options options = {});
// Only inside a read_with_checking callback (else std::logic_error). Return the bytes remaining.
std::size_t async_io_state_discard(async_io_state& state, std::size_t n);
std::size_t async_io_state_finish(async_io_state& state, std::size_t discard = 0);

// write_buffer: writes everything, then callback(state, n). The span form borrows (the bytes must
// stay valid until the callback); the std::string / std::vector forms own their copy.
// Without queue_output a write while one is active throws std::logic_error; with it, writes are
// queued in order, and a write that would take the queue beyond max_queued_output fails (its
// callback, status error, std::errc::no_buffer_space) without disturbing the queued ones.
// A write is done (its callback runs) once the socket has taken all its bytes. Under TLS a write
// of 4 KiB or more may be done once it is encrypted, while the socket still has room (the last
// send did not find it full): its records wait for those of the writes that follow (a chain of
// writes, each started by the previous callback, or writes queued together) and leave with them
// in one send of up to 64 KiB, and in any case before the loop waits again. Like bytes in the
// kernel's send buffer, these can still fail to leave: the failure becomes the state's write status
// and error, and every later write fails with it. Once a send finds the socket full, the writes
// after it are done only when their records have left, so at most 64 KiB is ever owed this way.
using write_callback = std::function<void(async_io_state&, std::size_t n)>;
struct write_buffer_options {
  std::optional<milliseconds> timeout;  // persists on the state
  write_callback error_callback;
};
void async_io_state_write_buffer(async_io_state& state, std::span<const std::byte> data, write_callback callback,
                                 write_buffer_options options = {});
void async_io_state_write_buffer(async_io_state& state, std::string data, write_callback callback,
                                 write_buffer_options options = {});
void async_io_state_write_buffer(async_io_state& state, std::vector<std::byte> data, write_callback callback,
                                 write_buffer_options options = {});

// Stops the operations of a direction (input: the read; output: the writes; io: everything,
// TLS operations included); their callbacks will not run. abort_callback(state) runs afterwards
// from the loop.
void async_io_state_abort(async_io_state& state, std::function<void(async_io_state&)> abort_callback = {},
                          direction dir = direction::input);
// Aborts everything and closes; close_callback(state) runs from the loop once closed.
void async_io_state_abort_and_close(async_io_state& state, std::function<void(async_io_state&)> close_callback = {},
                                    bool keep_alive = false);
// Unregisters, drops pending operations (no callbacks), always detaches TLS (no close_notify),
// and closes the socket unless keep_alive (then take it with async_io_state_release_socket).
// Records of TLS writes already done (see write_buffer) still leave first: the loop keeps the
// socket until they have (or fail, or the write timeout passes; 10 s without one) and only then
// closes it, dropping what arrives meanwhile (a peer that writes before it reads would otherwise
// never read them); with keep_alive it waits for them here, bounded the same way. Bytes that
// arrived unread (session tickets, or data the user did not read, TLS or plain) are dropped
// before the socket closes, as socket_stream::close does, so that the close is not a reset that
// throws away what the send buffer holds; and a TLS 1.3 client (tickets may still come), or a
// state whose peer was seen writing (unread data at the close, or during that wait), keeps the
// socket open in the loop, dropping what arrives, until its bytes have been transmitted (same
// bound; see socket_stream::close).
// Returns the buffered unread byte count (fetch with async_io_state_get_buffered_data). Idempotent.
std::size_t close_async_io_state(async_io_state& state, bool keep_alive = false);
// Takes (and removes) the buffered unread bytes.
std::vector<std::byte> async_io_state_get_buffered_data(async_io_state& state);
// After close_async_io_state(state, true): the socket, now owned by the caller (blocking mode).
socket_handle async_io_state_release_socket(async_io_state& state);
// shutdown(2) of a direction. With TLS and output the close_notify goes first: the FIN follows
// once the socket has taken all of it (an orderly close the peer can tell from a truncation), and
// after the write timeout (10 s without one) it follows anyway, reported as timed_out.
// With no operation pending in that direction (and the close_notify taken at once) it runs now and
// returns the result (empty error code = success). Otherwise, with abort the pending operations
// are dropped first; it then waits (for them, or for room for the close_notify) and returns
// nullopt. callback(state, result), when given, runs from the loop in every case.
using shutdown_callback = std::function<void(async_io_state&, std::error_code)>;
std::optional<std::error_code> async_io_state_shutdown(async_io_state& state, direction dir, bool abort = false,
                                                       shutdown_callback callback = {});

// ---------------------------------------------------------------------------------------------
// Connecting. A host name is resolved on lookup threads shared by every collection (getaddrinfo
// may wait seconds on DNS), with an IPv4-only lookup beside it when it is slow, as connect_options
// says, so the loop goes on meanwhile; a numeric address is used at once. The connects are non-blocking, the
// addresses racing as attempt_delay says; connect_timeout covers the resolution and the connects.
// Then (with ssl_ctx) the TLS handshake runs on the loop. The callback runs from the loop with the
// open state and no error, or with nullptr and the error (socket_connect_error,
// socket_create_error, or an ssl_condition).
struct async_connect_options {
  std::optional<milliseconds> connect_timeout;
  std::optional<milliseconds> attempt_delay = milliseconds(250);  // as connect_options (Happy Eyeballs)
  std::optional<milliseconds> read_timeout;
  std::optional<milliseconds> write_timeout;
  std::string local_address;  // as connect_options: bind before connect, empty = OS chooses
  std::string local_port;
  bool nodelay = true;
  bool keepalive = false;
  address_family family = address_family::any;
  bool queue_output = false;
  std::any user_info;
  std::string name;
  // TLS (client side). Adopted native handles are not accepted here (they do not compile).
  client_ssl_ctx_spec ssl_ctx;
  comm::ctx_configure_callback ctx_configure_callback;
  comm::ssl_configure_callback ssl_configure_callback;
  std::optional<milliseconds> handshake_timeout;
  std::string tlsext_host_name;  // SNI; empty = the host, when it is a name
};
using connected_callback = std::function<void(async_io_state* state, std::exception_ptr error)>;
void create_async_io_state_and_connected_tcp_socket(wait_state_collection& collection, std::string_view host,
                                                    std::string_view service, connected_callback callback,
                                                    async_connect_options options = {});

// ---------------------------------------------------------------------------------------------
// Accepting. The model's create_state = false is the overload taking an accept_socket_callback:
// it receives the accepted socket (blocking mode, options applied) for use elsewhere.
struct accept_options {
  std::function<void(int listener_fd, std::uint16_t port)> init_function;  // after bind + listen
  int backlog = 128;
  std::string address;  // empty = all
  address_family family = address_family::any;
  bool nodelay = true;
  bool keepalive = false;
  bool reuseport = false;
  bool queue_output = false;
  std::optional<milliseconds> read_timeout;
  std::optional<milliseconds> write_timeout;
  std::any user_info;     // the handle's; each state gets a copy
  std::string name;       // handle name; states are named "<name> <peer>"
  // Open states made by this acceptor. Beyond it a newly accepted client is closed at
  // once. The default bounds memory and descriptors against a flood; 0 still means no limit.
  std::size_t max_connections = 16384;
  // TLS (server side): the handshake runs before the callback; a failing client is closed and
  // reported to ssl_error_callback, never to the callback.
  ssl_abstract_context ssl_ctx;
  comm::ctx_configure_callback ctx_configure_callback;
  comm::ssl_configure_callback ssl_configure_callback;
  std::optional<milliseconds> handshake_timeout = std::chrono::seconds(10);
  std::function<void(std::exception_ptr error, std::optional<endpoint> peer)> ssl_error_callback;
};

class accepting_handle : public std::enable_shared_from_this<accepting_handle> {
 public:
  accepting_handle(const accepting_handle&) = delete;
  accepting_handle& operator=(const accepting_handle&) = delete;
  virtual ~accepting_handle() = default;
  std::uint16_t local_port() const noexcept;
  const std::string& name() const noexcept;
  wait_state_collection* collection() const noexcept;  // nullptr once closed
  bool is_open() const noexcept;
  int native_handle() const noexcept;  // the listening socket; -1 once closed
  std::any& user_info() noexcept;
  std::size_t connections() const noexcept;  // open states made by this handle

 protected:
  accepting_handle() = default;
};

using accept_state_callback = std::function<void(accepting_handle&, async_io_state&)>;
using accept_socket_callback = std::function<void(accepting_handle&, socket_handle)>;
// Listens now (a failure throws socket_create_error) and accepts from the loop.
std::shared_ptr<accepting_handle> accept_tcp_connections_creating_async_io_states(
    wait_state_collection& collection, std::string_view service, accept_state_callback callback,
    accept_options options = {});
std::shared_ptr<accepting_handle> accept_tcp_connections_creating_async_io_states(
    wait_state_collection& collection, std::string_view service, accept_socket_callback callback,
    accept_options options = {});
// Closes the listening socket now (the port is free on return); states already made stay open.
// callback(collection) runs afterwards from the loop.
void close_accepting_handle(accepting_handle& handle, std::function<void(wait_state_collection&)> callback = {});

// ---------------------------------------------------------------------------------------------
// TLS on a state. Exclusive: no other operation may be active, and none may start before the
// callback. callback(state, error): error null = done.
using ssl_callback = std::function<void(async_io_state&, std::exception_ptr)>;
// Attaches and (unless options.defer_handshake) handshakes. On failure TLS is not attached (an
// adopted native handle is freed). Timeout: ssl_handshake_timeout and read_status timeout; clean
// close by the peer: ssl_closed and read_status eof.
// The handshake's last flight (a client's Finished, a server's session tickets) is owed when the
// callback runs, like the records of a done write (write_buffer): what the callback writes at once
// leaves with it in one send, and in any case it leaves before the loop waits again. The same
// holds for the handshake of accept and connect with an ssl_ctx, before their callbacks.
void async_io_state_attach_ssl(async_io_state& state, attach_ssl_options options, ssl_callback callback);
// Runs (or finishes) the handshake of an attached connection; on failure TLS is removed.
void async_io_state_handshake(async_io_state& state, ssl_callback callback,
                              std::optional<milliseconds> timeout = std::nullopt);
// Sends close_notify, waits for the peer's (bounded by the read timeout, else 10 s), then removes
// TLS: later traffic is plain. TLS is removed even when this fails. No TLS: calls back at once.
void async_io_state_detach_ssl(async_io_state& state, ssl_callback callback);

// The model's async-io-ssl-failure-indicator-from-failure-args.
enum class ssl_failure_kind {
  none,           // no error
  timeout,        // handshake timed out
  closed,         // orderly close by the peer during the handshake
  ssl_condition,  // any other TLS failure
  not_tls,        // not a TLS failure (connect, resolution, I/O ...)
};
ssl_failure_kind ssl_failure_indicator(std::exception_ptr error) noexcept;

// ---------------------------------------------------------------------------------------------
// Coroutines (beyond the model): awaitables over the same callbacks, resumed in the loop thread.
// A coroutine suspended in read_some or write on a state that is then closed or aborted resumes
// with socket_io_error (operation_canceled) naming it, in the loop thread (a callback operation
// just ends without its callback, as in the model). One whose collection is destroyed first is
// never resumed.

template <class T = void>
class task;

namespace detail {
struct task_promise_base {
  std::coroutine_handle<> continuation = std::noop_coroutine();
  std::exception_ptr error;
  std::suspend_always initial_suspend() noexcept { return {}; }
  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      return h.promise().continuation;
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};
template <class T>
struct task_promise : task_promise_base {
  std::optional<T> value;
  task<T> get_return_object() noexcept;
  void return_value(T v) { value.emplace(std::move(v)); }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};
template <>
struct task_promise<void> : task_promise_base {
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (error) std::rethrow_exception(error);
  }
};
}  // namespace detail

// A lazily started coroutine: runs when awaited (or when spawned with co_spawn).
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle = std::coroutine_handle<promise_type>;
  explicit task(handle h) noexcept : h_(h) {}
  task(task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  task& operator=(task&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_) h_.destroy();
  }
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    h_.promise().continuation = awaiting;
    return h_;
  }
  T await_resume() { return h_.promise().take(); }

 private:
  handle h_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}
struct detached_task {
  struct promise_type {
    detached_task get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};
inline detached_task run_detached(wait_state_collection& collection, task<void> t) {
  try {
    co_await std::move(t);
  } catch (...) {
    wait_state_collection_report_error(collection, std::current_exception());
  }
}
}  // namespace detail

// Starts a task in the loop thread (posted); an exception escaping it goes to the handler.
inline void co_spawn(wait_state_collection& collection, task<void> t) {
  auto holder = std::make_shared<task<void>>(std::move(t));
  apply_in_wait_state_collection_process(
      collection, [&collection, holder] { detail::run_detached(collection, std::move(*holder)); });
}

class async_io_state::read_some_awaitable {
 public:
  read_some_awaitable(async_io_state& s, std::span<std::byte> b) noexcept : state_(s), buffer_(b) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  // The count read; 0 at end of stream. Throws the state's error on error or timeout.
  std::size_t await_resume();

 private:
  async_io_state& state_;
  std::span<std::byte> buffer_;
  std::size_t n_ = 0;
  std::exception_ptr error_;
};

class async_io_state::write_awaitable {
 public:
  write_awaitable(async_io_state& s, std::span<const std::byte> d) noexcept : state_(s), data_(d) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  void await_resume();

 private:
  async_io_state& state_;
  std::span<const std::byte> data_;
  std::exception_ptr error_;
};

inline async_io_state::read_some_awaitable async_io_state::read_some(std::span<std::byte> buffer) {
  return {*this, buffer};
}
inline async_io_state::write_awaitable async_io_state::write(std::span<const std::byte> data) {
  return {*this, data};
}
inline auto read_some(async_io_state& state, std::span<std::byte> buffer) { return state.read_some(buffer); }
inline auto write(async_io_state& state, std::span<const std::byte> data) { return state.write(data); }

// co_await connect(collection, host, service, options): the connected state, or throws the error.
// The awaitable keeps its state on the heap: GCC 12 may move awaitables bitwise inside a
// coroutine frame, which is only safe for members like these.
class connect_awaitable {
 public:
  struct state {
    wait_state_collection* collection;
    std::string host, service;
    async_connect_options options;
    std::shared_ptr<async_io_state> result;
    std::exception_ptr error;
  };
  explicit connect_awaitable(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  std::shared_ptr<async_io_state> await_resume();

 private:
  std::unique_ptr<state> s_;
};
inline connect_awaitable connect(wait_state_collection& collection, std::string host, std::string service,
                                 async_connect_options options) {
  return connect_awaitable(std::unique_ptr<connect_awaitable::state>(new connect_awaitable::state{
      &collection, std::move(host), std::move(service), std::move(options), nullptr, nullptr}));
}
inline connect_awaitable connect(wait_state_collection& collection, std::string host, std::string service) {
  return connect(collection, std::move(host), std::move(service), async_connect_options{});
}

}  // namespace comm
