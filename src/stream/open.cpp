// open_tcp_stream: connect, wrap in a socket_stream, and with a TLS context attach as a client.
#include "stream/stream_core.hpp"

namespace comm {

socket_stream open_tcp_stream(std::string_view host, std::string_view service, open_tcp_stream_options options) {
  connect_options co;
  co.timeout = options.timeout;
  co.attempt_delay = options.attempt_delay;
  co.local_address = options.local_address;
  co.local_port = options.local_port;
  co.nodelay = options.nodelay;
  co.keepalive = options.keepalive;
  co.family = options.family;
  socket_handle socket = connect_to_tcp_server(host, service, co);

  stream_options so;
  so.read_timeout = options.read_timeout;
  so.write_timeout = options.write_timeout;
  so.buffer_size = options.buffer_size;
  socket_stream stream(std::move(socket), so);

  if (!std::holds_alternative<std::monostate>(options.ssl_ctx)) {
    attach_ssl_options tls;
    tls.ssl_ctx = std::visit([](auto&& spec) -> ssl_ctx_spec { return std::move(spec); }, std::move(options.ssl_ctx));
    tls.ssl_side = ssl_side::client;
    tls.ctx_configure_callback = std::move(options.ctx_configure_callback);
    tls.ssl_configure_callback = std::move(options.ssl_configure_callback);
    tls.handshake_timeout = options.handshake_timeout;
    std::string h(host);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    tls.host_name = h;
    tls.tlsext_host_name = !options.tlsext_host_name.empty() ? options.tlsext_host_name
                           : ip_address::try_parse(h)    ? std::string()
                                                         : h;
    tls.session_key = detail::host_port_text(host, service);
    attach_ssl(stream, std::move(tls));  // on failure `stream` closes the socket
  }
  return stream;
}

outcome<socket_stream> try_open_tcp_stream(std::string_view host, std::string_view service,
                                           open_tcp_stream_options options) noexcept {
  try {
    return open_tcp_stream(host, service, std::move(options));
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace comm
