// TLS on a live socket_stream: attach_ssl, detach_ssl, socket_stream_handshake.
// The engine (src/tls) knows no sockets; here it is driven with poll() and the stream's timeouts.
#include <poll.h>

#include <array>

#include "stream/stream_core.hpp"

namespace comm {

using detail::core_of;
using detail::stream_core;
using detail::tls_result;
using detail::tls_status;

namespace {

bool is_ip_literal(const std::string& s) { return ip_address::try_parse(s).has_value(); }

std::string ms_text(std::optional<milliseconds> t) { return std::to_string(t ? t->count() : 0) + " ms"; }

// Runs the handshake until done. Returns false on timeout or a clean close by the peer when
// `report_false` is set; otherwise those throw too.
bool run_handshake(socket_stream& stream, stream_core& core, std::optional<milliseconds> timeout, bool report_false) {
  stream_core::tls_user_scope use(core, "TLS handshake with");
  detail::tls_engine& engine = *core.engine;
  const auto deadline = detail::deadline_after(timeout);
  std::uint64_t mark = ~std::uint64_t{0};
  auto timed_out = [&] {
    if (report_false) return false;
    throw ssl_handshake_timeout(ssl_errc::handshake_timeout,
                                "TLS handshake with " + core.peer() + " timed out after " + ms_text(timeout),
                                {ssl_code_kind::handshake_timeout, 0}, &stream);
  };
  for (;;) {
    tls_result r;
    {
      // Corked: what one step makes (a flight, a server's session tickets) leaves in one send.
      stream_core::corked_scope corked(core);
      r = engine.handshake();
      core.transport.cork.uncork();
      if (r.status == tls_status::error || r.status == tls_status::closed) {
        core.transport.flush();  // the alert, best effort: the engine's outcome is the one to report
      } else if (!core.flush_transport(deadline, "TLS handshake with")) {
        return timed_out();
      }
    }
    switch (r.status) {
      case tls_status::done:
        return true;
      case tls_status::closed:
        if (report_false) return false;
        throw ssl_closed(ssl_errc::closed, "TLS handshake with " + core.peer() + ": the peer closed the connection",
                         {ssl_code_kind::closed, 0}, &stream);
      case tls_status::error:
        if (report_false) {
          try {
            std::rethrow_exception(engine.error("TLS handshake", core.peer()));
          } catch (const ssl_closed&) {
            return false;
          }
        }
        std::rethrow_exception(engine.error("TLS handshake", core.peer()));
      case tls_status::want_input:
      case tls_status::want_output: {
        if (r.status == tls_status::want_input && core.retry_from_read_ahead(mark)) break;
        int ev = detail::poll_one(core.fd(), r.status == tls_status::want_input ? POLLIN : POLLOUT, deadline);
        if (ev < 0) core.throw_io(errno, "TLS handshake with");
        if (ev == 0) return timed_out();
        break;
      }
    }
  }
}

}  // namespace

ssl_ref attach_ssl(socket_stream& stream, attach_ssl_options options) {
  stream_core& core = core_of(stream, "attach_ssl");
  if (core.engine)
    throw ssl_failure(ssl_errc::invalid_argument, "attach_ssl on " + core.peer() + ": TLS is already attached", {},
                      &stream);
  core.flush_output();
  // Plain bytes already read belong to the TLS stream now (e.g. the start of a ClientHello).
  core.move_input_to_prefix();

  detail::engine_params params;
  params.side = options.ssl_side;
  if (!is_ip_literal(options.tlsext_host_name)) params.sni = options.tlsext_host_name;
  params.host_name = options.host_name.empty() ? options.tlsext_host_name : options.host_name;
  params.session_key = options.session_key;
  params.ctx_configure = std::move(options.ctx_configure_callback);
  params.ssl_configure = std::move(options.ssl_configure_callback);
  params.owner = &stream;

  try {
    core.engine = detail::make_engine(std::move(options.ssl_ctx), params, core.transport);
    core.engine->owner = &stream;
    detail::register_connection(core.engine->native(), &stream);
    if (!options.defer_handshake && options.ssl_side != ssl_side::both)
      run_handshake(stream, core, options.handshake_timeout, false);
  } catch (...) {
    core.drop_engine();  // frees adopted handles; the stream stays plain
    throw;
  }
  return core.engine->native();
}

void detach_ssl(socket_stream& stream, const detach_ssl_options& options) {
  stream_core* c = stream.core_();
  if (c == nullptr || !c->engine) return;
  stream_core& core = *c;
  stream_core::tls_user_scope use(core, "detach_ssl from");
  core.flush_output();
  // Detach first: whatever happens below, the stream is plain afterwards (as in the model).
  std::unique_ptr<detail::tls_engine> engine = core.take_engine();
  struct cleanup {
    stream_core& core;
    std::unique_ptr<detail::tls_engine>& engine;
    ~cleanup() {
      detail::unregister_connection(engine->native());
      engine.reset();
      core.transport.cork.discard();  // a close_notify that could not leave
      core.restore_prefix();
    }
  } guard{core, engine};

  const std::string& peer = core.peer();
  std::uint64_t mark = ~std::uint64_t{0};
  auto wait_or = [&](tls_status st, const std::optional<detail::clock::time_point>& deadline) {
    if (st == tls_status::want_input && core.retry_from_read_ahead(mark)) return true;
    int ev = detail::poll_one(core.fd(), st == tls_status::want_input ? POLLIN : POLLOUT, deadline);
    if (ev < 0) core.throw_io(errno, "detach_ssl from");
    return ev != 0;
  };

  // 1. Our close_notify.
  if (!engine->close_notify_sent()) {
    const auto deadline = detail::deadline_after(core.options.write_timeout);
    for (;;) {
      tls_result r = engine->shutdown();
      if (r.status == tls_status::done || r.status == tls_status::closed) break;
      if (r.status == tls_status::error) std::rethrow_exception(engine->error("detach_ssl", peer));
      if (!wait_or(r.status, deadline))
        throw socket_timeout_error(std::make_error_code(std::errc::timed_out),
                                   "detach_ssl from " + peer + ": sending close_notify timed out after " +
                                       ms_text(core.options.write_timeout),
                                   &stream);
    }
  }
  if (!options.retry_count) return;

  // 2. The peer's close_notify; application data still in flight is discarded.
  const int attempts = 2 + *options.retry_count;
  std::array<char, 16 * 1024> scratch{};
  int tried = 0;
  bool clean = engine->close_notify_received();
  while (!clean && tried < attempts) {
    tls_result r = engine->read(scratch.data(), scratch.size());
    switch (r.status) {
      case tls_status::closed:
        clean = true;
        break;
      case tls_status::done:
        if (r.bytes == 0) ++tried;
        break;
      case tls_status::error:
        std::rethrow_exception(engine->error("detach_ssl", peer));
      case tls_status::want_input:
      case tls_status::want_output:
        if (!wait_or(r.status, detail::deadline_after(options.retry_timeout))) ++tried;
        break;
    }
  }
  if (!clean)
    throw ssl_failure(ssl_errc::failure,
                      "detach_ssl: no close_notify from " + peer + " after " + std::to_string(attempts) +
                          " attempts " + std::to_string(options.retry_timeout.count()) + " ms apart",
                      {}, &stream);
}

bool socket_stream_handshake(socket_stream& stream, std::optional<milliseconds> timeout) {
  stream_core& core = core_of(stream, "socket_stream_handshake");
  if (!core.engine)
    throw ssl_failure(ssl_errc::not_ssl, "socket_stream_handshake on " + core.peer() + ": no TLS attached", {},
                      &stream);
  if (core.engine->handshake_done()) return true;
  return run_handshake(stream, core, timeout, true);
}

}  // namespace comm
