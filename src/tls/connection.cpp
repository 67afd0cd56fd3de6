// The model's ssl-connection-* functions: each forwards to the connection's engine.
#include "tls/engine.hpp"

namespace comm {
namespace {

detail::tls_engine& engine_of(const ssl_connection& conn, const char* function) {
  detail::tls_engine* e = conn.tls_engine_();
  if (e == nullptr)
    throw ssl_failure(ssl_errc::not_ssl, std::string(function) + ": the connection has no TLS attached", {}, &conn);
  return *e;
}

}  // namespace

ssl_ref ssl_connection_ssl_ref(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_ssl_ref").native();
}
ssl_ctx_ref ssl_connection_ctx_ref(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_ctx_ref").native_context();
}
ssl_implementation ssl_connection_implementation(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_implementation").implementation();
}
ssl_protocol_version ssl_connection_protocol_version(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_protocol_version").protocol_version();
}
std::string ssl_connection_cipher(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_cipher").cipher();
}
std::string ssl_connection_alpn_protocol(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_alpn_protocol").alpn_protocol();
}
std::string ssl_connection_server_name(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_server_name").server_name();
}
bool ssl_connection_session_reused(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_session_reused").session_reused();
}
verify_result ssl_connection_verify(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_verify").verify();
}
std::vector<certificate_data> ssl_connection_get_peer_certificates_data(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_get_peer_certificates_data").peer_certificates_data();
}
std::vector<native_certificate> ssl_connection_copy_peer_certificates(const ssl_connection& conn) {
  return engine_of(conn, "ssl_connection_copy_peer_certificates").copy_peer_certificates();
}
void ssl_connection_read_certificates(ssl_connection& conn, const std::string& key_file,
                                      const read_certificates_options& options) {
  engine_of(conn, "ssl_connection_read_certificates").read_certificates(key_file, options);
}

std::string_view to_string(ssl_protocol_version v) noexcept {
  switch (v) {
    case ssl_protocol_version::unknown: return "unknown";
    case ssl_protocol_version::v3: return "SSLv3";
    case ssl_protocol_version::tls_v1: return "TLSv1";
    case ssl_protocol_version::tls_v1_1: return "TLSv1.1";
    case ssl_protocol_version::tls_v1_2: return "TLSv1.2";
    case ssl_protocol_version::tls_v1_3: return "TLSv1.3";
  }
  return "unknown";
}

}  // namespace comm
