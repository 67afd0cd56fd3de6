// The engine room of socket_stream: a std::streambuf that owns the socket, the input and output
// buffers, the timeouts, the shutdown state and (while TLS is attached) the TLS engine.
// socket_stream holds it by unique_ptr so that its address, which the engine's transport and the
// iostream's rdbuf point to, never changes when the stream is moved.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <streambuf>
#include <string>
#include <vector>

#include "comm/stream.hpp"
#include "net/sockaddr.hpp"
#include "tls/engine.hpp"
#include "tls/record_cork.hpp"

namespace comm::detail {

class stream_core;

// The engine's ciphertext transport: first the plain bytes the stream had already buffered when
// TLS was attached (a STARTTLS server may hold the start of the ClientHello), then the socket.
// Small reads go through a read-ahead in the same buffer: OpenSSL reads a 5-byte record header
// and then the body, and one recv of up to read_ahead_size bytes serves both (and often the next
// records). Bytes still there when TLS is detached are plain data that followed the TLS session:
// stream_core::restore_prefix gives them back to the stream's input buffer.
class stream_transport final : public transport {
 public:
  static constexpr std::size_t read_ahead_size = 16 * 1024;
  static constexpr std::size_t max_read_ahead_size = 64 * 1024;  // once a recv filled the buffer

  explicit stream_transport(stream_core& core) noexcept : core_(core) {}
  io_result read(void* data, std::size_t size) override;
  io_result write(const void* data, std::size_t size) override;
  io_result flush();  // sends what the cork holds; EAGAIN while some remains
  record_cork cork;   // corked by the stream around large writes and handshake steps
  std::vector<char> prefix;    // storage; the unread bytes are [prefix_pos, prefix_end)
  std::size_t prefix_pos = 0;
  std::size_t prefix_end = 0;
  std::size_t prefix_left() const noexcept { return prefix_end - prefix_pos; }
  void clear_prefix() noexcept { prefix_pos = prefix_end = 0; }
  std::uint64_t served = 0;  // bytes handed out from the buffer so far (a progress mark)
  std::size_t ahead_size = read_ahead_size;
  // Set while the stream drives one TLS operation without a timeout: the operation would wait
  // for the socket without a bound anyway, so a blocking recv (one system call) replaces
  // recv EAGAIN + poll + recv. Under a timeout (or outside the drive loop) reads never block.
  bool blocking = false;

 private:
  io_result recv_some(void* data, std::size_t size);
  io_result send_some(const void* data, std::size_t size);
  stream_core& core_;
};

class stream_core final : public std::streambuf {
 public:
  stream_core(socket_handle socket, const stream_options& options, socket_stream* owner);
  ~stream_core() override;
  stream_core(const stream_core&) = delete;
  stream_core& operator=(const stream_core&) = delete;

  int fd() const noexcept { return socket_.get(); }
  bool is_open() const noexcept { return socket_.is_open(); }
  const std::string& peer() const noexcept { return peer_text_; }
  socket_stream* owner() const noexcept { return owner_; }
  void set_owner(socket_stream* owner) noexcept;

  // One read (from the TLS engine when attached, else the socket), waiting up to the read timeout.
  // 0 = end of stream.
  std::size_t read_raw(char* data, std::size_t size);
  // One write (partial writes possible), waiting up to the write timeout; returns bytes taken (> 0).
  std::size_t write_raw(const char* data, std::size_t size);
  void write_all_raw(const char* data, std::size_t size);  // plain: each send as it comes
  // Sends what the transport's cork holds, waiting for the socket until the deadline; false on
  // timeout, throws on a socket error.
  bool flush_transport(const std::optional<clock::time_point>& deadline, const char* operation);
  // Corks the transport for one step (a handshake flight, a seal()); leaving uncorks, and what
  // the cork holds then goes first on the next write (or send_held()).
  struct corked_scope {
    stream_core& core;
    explicit corked_scope(stream_core& c) noexcept : core(c) { core.transport.cork.cork(); }
    ~corked_scope() { core.transport.cork.uncork(); }
    corked_scope(const corked_scope&) = delete;
    corked_scope& operator=(const corked_scope&) = delete;
  };

  // Under TLS one thread at a time may use the engine and the transport: neither OpenSSL's SSL nor
  // GnuTLS's session takes concurrent calls, and a read may write (a key update, an alert). Every
  // path that touches them holds this scope, so a second thread gets socket_io_error
  // (std::errc::device_or_resource_busy) naming the cause instead of undefined behaviour.
  // Re-entrant on one thread; one atomic exchange per operation. Plain streams never take it (one
  // reader and one writer may run at once there).
  class tls_user_scope {
   public:
    tls_user_scope(stream_core& core, const char* operation);
    ~tls_user_scope();
    tls_user_scope(const tls_user_scope&) = delete;
    tls_user_scope& operator=(const tls_user_scope&) = delete;

   private:
    stream_core& core_;
  };

  // Buffered API used by socket_stream.
  std::size_t read_some(char* data, std::size_t size);
  std::optional<std::string> read_line();
  void write(const char* data, std::size_t size);
  // Sends the output buffer and, under TLS, the held records (below); what the stream's flush()
  // and close() do.
  void flush_output();
  // Under TLS, records made from full buffers and large writes are held in the transport's cork
  // and leave 64 KiB or more at a time: a 16 KiB write is one record, and one send per record
  // costs the sender about a tenth of its throughput. They are sent when the cork is full, on
  // flush_output(), and before anything waits for input (a read, wait_for_input_streams), so a
  // request is never held while its reply is awaited. Throws socket_timeout_error after the
  // write timeout.
  void send_held();
  bool holding() const noexcept { return transport.cork.pending() > 0; }
  std::size_t buffered() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
  std::size_t buffered_input() const noexcept;
  void discard_buffers() noexcept;
  // Puts bytes back in front of the unread input (after a timeout in read_line, or a TLS prefix).
  void unread(const char* data, std::size_t size);

  // Waits for readiness until the deadline; throws socket_timeout_error naming `operation`.
  void wait(short events, const std::optional<clock::time_point>& deadline, std::optional<milliseconds> timeout,
            const char* operation);
  // Throws socket_timeout_error: "<operation> <peer>: timed out after <timeout> ms".
  [[noreturn]] void throw_timeout(const char* operation, std::optional<milliseconds> timeout) const;
  // Throws the socket_io_error for errno e during operation.
  [[noreturn]] void throw_io(int e, const std::string& operation) const;

  void shutdown(direction dir, bool abort);
  void close();  // idempotent; rethrows a flush error after closing
  socket_handle replace_socket(socket_handle s);

  // Runs an engine operation to completion: waits on want_input / want_output (each wait bounded by
  // timeout), rethrows the engine's error. Returns done or closed; on timeout throws
  // socket_timeout_error, or returns want_input when throw_on_timeout is false.
  tls_result drive_tls(const std::function<tls_result()>& op, const std::optional<milliseconds>& timeout,
                       const char* operation, bool throw_on_timeout = true);

  // TLS (see tls_stream.cpp).
  void drop_engine() noexcept;  // unregister, destroy, give unread prefix bytes back to the buffer
  std::unique_ptr<tls_engine> take_engine() noexcept;
  void restore_prefix() noexcept;
  // After want_input: true when the transport still holds read-ahead bytes and the engine has taken
  // some since the last such check (mark): no socket event will announce those bytes, so the engine
  // must be called again instead of waiting. (GnuTLS reports want_input after handling a record
  // that is not application data, e.g. a session ticket, with the next record already read.)
  bool retry_from_read_ahead(std::uint64_t& mark) const noexcept {
    if (transport.prefix_left() == 0 || transport.served == mark) return false;
    mark = transport.served;
    return true;
  }
  void move_input_to_prefix();

  stream_options options;
  bool input_shut = false;
  bool output_shut = false;
  stream_transport transport{*this};     // declared before engine: outlives it
  std::unique_ptr<tls_engine> engine;

 protected:
  int_type underflow() override;
  int_type overflow(int_type c) override;
  int sync() override;
  std::streamsize xsgetn(char_type* s, std::streamsize n) override;
  std::streamsize xsputn(const char_type* s, std::streamsize n) override;
  std::streamsize showmanyc() override;

 private:
  friend class stream_transport;
  void reset_peer_text();
  // TLS: seals data into records held in the cork, sending 64 KiB at a time; `done` counts the
  // bytes taken (also when it throws).
  void seal(const char* data, std::size_t size, std::size_t& done);
  void seal_output();  // the output buffer, likewise

  std::atomic<std::uintptr_t> tls_user_{0};  // the thread in a TLS path (tls_user_scope); 0 = none
  unsigned tls_depth_ = 0;                   // its nesting depth, touched only by that thread
  socket_handle socket_;
  socket_stream* owner_;
  std::string peer_text_;
  std::vector<char> in_;
  std::vector<char> out_;
};

// The core of a stream, or socket_io_error when the stream is not open.
stream_core& core_of(const socket_stream& s, const char* operation);

}  // namespace comm::detail
