// comm — socket streams (layer `stream`): a connected socket as a buffered, bidirectional byte
// stream and a std::iostream; TLS is a property of the live connection (attach_ssl / detach_ssl).
#pragma once

#include <cstddef>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "comm/errors.hpp"
#include "comm/net.hpp"
#include "comm/tls.hpp"

namespace comm {

namespace detail {
class stream_core;
}

enum class direction { input, output, io };

struct stream_options {
  std::optional<milliseconds> read_timeout{};   // none = may block forever
  std::optional<milliseconds> write_timeout{};
  std::size_t buffer_size = 16 * 1024;        // each of the input and output buffers
  std::size_t max_line_length = 64 * 1024;    // read_line refuses longer lines
};

// A connected TCP socket as a buffered byte stream. Move-only; the stream owns its socket and
// closes it (and frees TLS objects it owns) on close() or destruction.
// Errors: socket_io_error (socket_timeout_error for timeouts: the stream stays usable),
// ssl_condition subclasses while TLS is attached. The iostream interface reports errors by
// setting badbit (and rethrows if exceptions() asks for it); the direct calls throw.
// Threads: one at a time per stream. Without TLS one thread may read (read_some, read_exact,
// read_line) while another writes (write_all, flush), as with the socket itself; with TLS not,
// since a read may also write (a key update, an alert) and neither OpenSSL's nor GnuTLS's session
// takes concurrent calls: a call that would reach the TLS session while another thread is inside
// one (a read waiting for data, say) throws socket_io_error (std::errc::device_or_resource_busy)
// before it changes anything (a refused write took no byte); writes that only fill the output
// buffer are not refused.
// For full-duplex TLS from several threads, use an async_io_state.
class socket_stream : public std::iostream, public ssl_connection {
 public:
  socket_stream();  // not open
  explicit socket_stream(socket_handle socket, stream_options options = {});
  // The model's make-instance with :ssl-ctx: attaches TLS before returning. The socket is owned
  // (and closed on failure, as are adopted native handles in options.ssl_ctx).
  socket_stream(socket_handle socket, stream_options options, attach_ssl_options tls);
  socket_stream(socket_stream&& other) noexcept;
  socket_stream& operator=(socket_stream&& other) noexcept;
  ~socket_stream() override;

  bool is_open() const noexcept;
  int native_handle() const noexcept;  // -1 when closed

  // Reads up to buf.size() bytes, blocking until at least one is available; 0 = end of stream
  // (orderly close; with TLS only after close_notify — a truncation throws).
  std::size_t read_some(std::span<std::byte> buf);
  std::size_t read_some(void* data, std::size_t size) {
    return read_some(std::span<std::byte>(static_cast<std::byte*>(data), size));
  }
  // Reads exactly buf.size() bytes; end of stream before that throws socket_io_error.
  void read_exact(std::span<std::byte> buf);
  void read_exact(void* data, std::size_t size) {
    read_exact(std::span<std::byte>(static_cast<std::byte*>(data), size));
  }
  // A line without its LF or CRLF; nullopt at end of stream with nothing read. A final line
  // without newline is returned as is. Longer than max_line_length: socket_io_error
  // (std::errc::message_size), and the stream is left at an unspecified position in that line.
  std::optional<std::string> read_line();
  // Writes everything (buffered; flushed when the buffer fills, on flush() and on close()).
  // With TLS, the records made from a full buffer or a large write are held until 64 KiB of them
  // are ready, and sent on flush(), on close() or as soon as a read (or wait_for_input_streams)
  // would wait for the peer: bulk senders send 64 KiB at a time, and a request is never held
  // back while its reply is awaited. Call flush() when the bytes must leave now.
  void write_all(std::span<const std::byte> data);
  void write_all(std::string_view data) {
    write_all(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
  }
  void write_all(const void* data, std::size_t size) {
    write_all(std::span<const std::byte>(static_cast<const std::byte*>(data), size));
  }
  void flush();  // also std::ostream::flush()
  // Flushes (unless an error makes that impossible), detaches TLS without insisting on a clean
  // shutdown, and closes the socket. Idempotent. Bytes that arrived unread (a TLS 1.3 server's
  // session tickets, or data the user did not read, TLS or plain) are read and dropped first, all
  // of it (up to 16 MiB): Linux answers close() over unread data with a reset, which would throw
  // away what the send buffer still holds. More arriving after the close draws the same reset:
  // the tickets, if a TLS 1.3 client closes before they came (one round trip after the
  // handshake), or more from a peer that was seen writing. So in those two cases, while bytes are
  // still unsent, close() waits until they have been transmitted, dropping what arrives (bounded
  // by the write timeout, 10 s without one; the peer ending its side ends the wait too). With
  // everything transmitted it returns at once.
  void close();

  // Bytes readable without blocking: the stream's buffer plus TLS-decrypted pending bytes.
  std::size_t buffered_input() const noexcept;

  std::optional<milliseconds> read_timeout() const noexcept;
  std::optional<milliseconds> write_timeout() const noexcept;
  void set_read_timeout(std::optional<milliseconds> t) noexcept;
  void set_write_timeout(std::optional<milliseconds> t) noexcept;

  std::optional<endpoint> local_endpoint() const;
  std::optional<endpoint> peer_endpoint() const;

  detail::tls_engine* tls_engine_() const noexcept override;
  detail::stream_core* core_() const noexcept { return core_ptr_.get(); }

 private:
  std::unique_ptr<detail::stream_core> core_ptr_;
};

// Half or full shutdown(2). Without abort, pending output is flushed first (and with TLS a
// close_notify is sent for output/io) and buffered input stays readable; with abort, buffered
// input and output are thrown away. Does not close. Reading past the buffer after an input
// shutdown, or writing after an output shutdown, throws socket_io_error.
void socket_stream_shutdown(socket_stream& stream, direction dir, bool abort = false);
// Swaps the socket; returns the old one unclosed (the caller owns it). An empty handle lets the
// stream be closed while the descriptor lives on. Buffered data stays with the stream.
socket_handle replace_socket_stream_socket(socket_stream& stream, socket_handle socket);

// TLS on a live stream (STARTTLS). Returns the native reference of the new connection.
// With defer_handshake false (the default) the handshake runs now, bounded by handshake_timeout.
ssl_ref attach_ssl(socket_stream& stream, attach_ssl_options options);
// Sends close_notify and waits for the peer's (retrying as the model does), then leaves the plain
// connection usable. No TLS attached: returns at once.
void detach_ssl(socket_stream& stream, const detach_ssl_options& options = {});
// Runs (or finishes) the handshake. False on timeout or when the peer closed cleanly; other
// failures throw. The model's socket-stream-handshake.
bool socket_stream_handshake(socket_stream& stream, std::optional<milliseconds> timeout = std::nullopt);

// ---------------------------------------------------------------------------------------------
struct open_tcp_stream_options {
  std::optional<milliseconds> timeout{};        // connect timeout, the name's lookup included
  std::optional<milliseconds> attempt_delay = milliseconds(250);  // as connect_options (Happy Eyeballs)
  std::optional<milliseconds> read_timeout{};
  std::optional<milliseconds> write_timeout{};
  std::string local_address{};
  std::string local_port{};
  bool nodelay = true;
  bool keepalive = false;
  address_family family = address_family::any;
  std::size_t buffer_size = 16 * 1024;
  // TLS (client side). An adopted native handle is not accepted here (does not compile).
  client_ssl_ctx_spec ssl_ctx{};
  comm::ctx_configure_callback ctx_configure_callback{};
  comm::ssl_configure_callback ssl_configure_callback{};
  std::optional<milliseconds> handshake_timeout{};
  // SNI: empty = the host, when it is a name; the certificate is checked against the host.
  std::string tlsext_host_name{};
};

// Connects (and with ssl_ctx set, attaches TLS as a client). Throws socket_connect_error,
// socket_create_error or an ssl_condition.
socket_stream open_tcp_stream(std::string_view host, std::string_view service,
                              open_tcp_stream_options options = {});
// The model's errorp nil: the stream or the error, never throws a socket_error.
outcome<socket_stream> try_open_tcp_stream(std::string_view host, std::string_view service,
                                           open_tcp_stream_options options = {}) noexcept;

// ---------------------------------------------------------------------------------------------
// Servers: a handler per accepted connection, on a bounded pool of threads.
struct server_options {
  std::string service = "0";  // port; "0" = ephemeral (see announce / server::local_port)
  std::string address{};        // bind address; empty = all
  int backlog = 128;
  bool nodelay = true;
  bool keepalive = false;
  bool reuseport = false;
  address_family family = address_family::any;
  std::size_t max_threads = 64;       // handlers running at once; further clients wait in the backlog
  std::size_t max_connections = 1024; // accepted but not yet finished; beyond: closed at once
  stream_options stream{};
  // TLS (server side): each accepted stream attaches TLS before the handler runs; a client that
  // fails its handshake is closed and reported to tls_error_callback, never to the handler.
  ssl_abstract_context ssl_ctx{};
  std::optional<milliseconds> handshake_timeout = std::chrono::seconds(10);
  std::function<void(const std::exception&)> tls_error_callback{};
  // Called once the socket is listening, with its port; or with the start-up error (port 0).
  std::function<void(std::uint16_t port, std::exception_ptr error)> announce{};
  // An exception escaping a handler is passed here (and the server goes on).
  std::function<void(std::exception_ptr)> handler_error_callback{};
  std::string name = "comm server";
};

using connection_handler = std::function<void(socket_stream&)>;

class server;
// Starts a server thread. Start-up failures (port in use, ...) are thrown as socket_create_error
// after being passed to announce; nothing is lost.
server start_up_server(connection_handler handler, server_options options = {});
// Stops accepting, closes the listener, shuts down open connections, joins every thread.
// Returns true if the server was running. Idempotent; callable from inside a handler (then the
// stop completes when that handler returns).
bool server_terminate(server& s);

class server {
 public:
  server() = default;
  server(server&&) noexcept;
  server& operator=(server&&) noexcept;
  ~server();  // server_terminate
  std::uint16_t local_port() const noexcept;
  bool alive() const noexcept;
  struct impl;

 private:
  friend server start_up_server(connection_handler, server_options);
  friend bool server_terminate(server&);
  std::shared_ptr<impl> impl_;
};

// Which streams have input ready (buffered data, data on the socket, or end of stream), in
// argument order. Empty on timeout; timeout 0 polls.
std::vector<socket_stream*> wait_for_input_streams(const std::vector<socket_stream*>& streams,
                                                   std::optional<milliseconds> timeout = std::nullopt);

}  // namespace comm
