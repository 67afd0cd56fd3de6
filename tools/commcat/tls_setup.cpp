// Maps commcat's TLS options onto the library's context options.
#include "commcat.hpp"

namespace commcat {
namespace {

comm::ssl_context_options common_options(const tls_config& tls) {
  comm::ssl_context_options o;
  o.name = "commcat";
  o.implementation = tls.implementation;
  o.cert_file = tls.cert_file;
  o.key_file = tls.key_file;
  o.password = tls.key_password;
  o.trusted_file = tls.ca_file;
  o.trusted_directory = tls.ca_dir;
  if (tls.min_version) o.protocol_version.min = *tls.min_version;
  o.protocol_version.max = tls.max_version;
  o.alpn_protocols = tls.alpn;
  o.ciphers = tls.ciphers;
  return o;
}

}  // namespace

comm::ssl_abstract_context make_client_context(const tls_config& tls) {
  auto o = common_options(tls);
  if (tls.insecure) {
    o.verify = comm::peer_verification::none;
    o.check_host_name = false;
  }
  return comm::create_ssl_client_context(std::move(o));
}

comm::ssl_abstract_context make_server_context(const tls_config& tls) {
  auto o = common_options(tls);
  o.verify = tls.verify_client;
  return comm::create_ssl_server_context(std::move(o));
}

}  // namespace commcat
