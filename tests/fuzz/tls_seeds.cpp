// Writes seed inputs for the TLS engine fuzz targets: a real handshake plus a little data between a
// client engine and a server engine in memory, for each pair of implementations and for TLS 1.2 and
// 1.3. What the client sent seeds the server targets and the reverse; and PEM loading seeds. Certificates are made fresh in
// memory each run; transcripts hold no keys. Usage: fuzz_tls_seeds OUTDIR
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "comm/tls.hpp"
#include "fuzz_input.hpp"
#include "tls/engine.hpp"

namespace {

using comm::detail::tls_status;

// One direction of a memory pipe: what one side writes, the other reads.
struct pipe_end final : comm::detail::transport {
  std::string* in = nullptr;
  std::string* out = nullptr;
  std::string* log = nullptr;
  comm::detail::io_result read(void* data, std::size_t size) override {
    if (in->empty()) return {0, EAGAIN};
    const std::size_t n = std::min(size, in->size());
    std::memcpy(data, in->data(), n);
    in->erase(0, n);
    return {n, 0};
  }
  comm::detail::io_result write(const void* data, std::size_t size) override {
    out->append(static_cast<const char*>(data), size);
    log->append(static_cast<const char*>(data), size);
    return {size, 0};
  }
};

void save(const std::filesystem::path& dir, const std::string& name, unsigned char first, const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary);
  f.put(static_cast<char>(first));
  f << bytes;
}

bool run(const std::filesystem::path& out, const comm::demo_credentials& creds, comm::ssl_implementation ci,
         comm::ssl_implementation si, comm::ssl_protocol_version version) {
  comm::ssl_context_options so;
  so.implementation = si;
  so.cert_pem = creds.cert_pem;
  so.key_pem = creds.key_pem;
  so.protocol_version.max = version;
  auto server_ctx = comm::create_ssl_server_context(so);
  comm::ssl_context_options co;
  co.implementation = ci;
  co.trusted_pem = creds.ca_cert_pem;
  co.protocol_version.max = version;
  co.session_resumption = false;
  auto client_ctx = comm::create_ssl_client_context(co);

  std::string c2s, s2c, client_log, server_log;
  pipe_end ct, st;
  ct.in = &s2c, ct.out = &c2s, ct.log = &client_log;
  st.in = &c2s, st.out = &s2c, st.log = &server_log;
  comm::detail::engine_params cp;
  cp.side = comm::ssl_side::client;
  cp.sni = cp.host_name = "localhost";
  comm::detail::engine_params sp;
  sp.side = comm::ssl_side::server;
  auto client = comm::detail::make_engine(comm::ssl_ctx_spec(client_ctx), cp, ct);
  auto server = comm::detail::make_engine(comm::ssl_ctx_spec(server_ctx), sp, st);
  for (int i = 0; i < 100 && !(client->handshake_done() && server->handshake_done()); ++i) {
    auto a = client->handshake();
    auto b = server->handshake();
    if (a.status == tls_status::error || b.status == tls_status::error) {
      std::fprintf(stderr, "seed handshake failed\n");
      return false;
    }
  }
  const std::string msg = "GET / HTTP/1.0\r\n\r\n";
  client->write(msg.data(), msg.size());
  char buf[256];
  server->read(buf, sizeof buf);
  server->write(msg.data(), msg.size());
  client->read(buf, sizeof buf);
  client->shutdown();
  server->read(buf, sizeof buf);
  server->shutdown();
  const std::string tag = std::string(comm::to_string(ci)) + "_to_" + std::string(comm::to_string(si)) + "_" +
                          (version == comm::ssl_protocol_version::tls_v1_2 ? "tls12" : "tls13");
  // First byte: large chunks with would_block at the end; then 1-byte chunks with EOF at the end.
  for (unsigned char first : {0x7f, 0x80}) {
    const std::string suffix = tag + (first == 0x80 ? "_bytewise_eof" : "");
    save(out / ("tls_" + std::string(comm::to_string(si)) + "_server"), "seed_" + suffix, first, client_log);
    save(out / ("tls_" + std::string(comm::to_string(ci)) + "_client"), "seed_" + suffix, first, server_log);
  }
  return true;
}

// The key encrypted as PKCS#8 with AES-256-CBC (what `openssl pkey -aes256` writes).
std::string encrypt_key(const std::string& key_pem, const std::string& password) {
  BIO* in = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_PKCS8PrivateKey(out, key, EVP_aes_256_cbc(), password.data(), static_cast<int>(password.size()),
                                nullptr, nullptr);
  char* p = nullptr;
  long n = BIO_get_mem_data(out, &p);
  std::string s(p, static_cast<std::size_t>(n));
  BIO_free(out);
  EVP_PKEY_free(key);
  return s;
}

// Seeds for pem_loading (they hold a throwaway key, so they are made at run time, never kept).
void pem_seeds(const std::filesystem::path& out, const comm::demo_credentials& creds) {
  using comm_fuzz::fields;
  const auto dir = out / "pem_loading";
  const std::string enc = encrypt_key(creds.key_pem, "secret-pass");
  for (unsigned char impl : {0, 1}) {
    const std::string n = impl ? "gnutls" : "openssl";
    auto put = [&](const std::string& name, unsigned char flags, const std::string& cert, const std::string& key,
                   const std::string& trusted, const std::string& password) {
      std::string s = fields::field(cert) + fields::field(key) + fields::field(trusted) + fields::field(password);
      save(dir, name + "_" + n, static_cast<unsigned char>(flags | impl), s);
    };
    put("server_plain_key", 0, creds.cert_pem, creds.key_pem, "", "");
    put("server_encrypted_key", 0, creds.cert_pem, enc, "", "secret-pass");
    put("server_encrypted_key_wrong_password", 0, creds.cert_pem, enc, "", "wrong-password");
    put("server_encrypted_key_callback", 4, creds.cert_pem, enc, "", "secret-pass");
    put("server_chain", 0, creds.cert_pem + creds.ca_cert_pem, creds.key_pem, "", "");
    put("client_trust", 2, "", "", creds.ca_cert_pem, "");
    put("client_certificate", 2, creds.cert_pem, creds.key_pem, creds.ca_cert_pem, "");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_tls_seeds OUTDIR\n");
    return 2;
  }
  const auto creds = comm::make_demo_credentials("localhost");
  pem_seeds(argv[1], creds);
  bool ok = true;
  for (auto ci : {comm::ssl_implementation::openssl, comm::ssl_implementation::gnutls})
    for (auto si : {comm::ssl_implementation::openssl, comm::ssl_implementation::gnutls})
      for (auto v : {comm::ssl_protocol_version::tls_v1_2, comm::ssl_protocol_version::tls_v1_3})
        if (comm::ssl_implementation_available(ci) && comm::ssl_implementation_available(si))
          ok = run(argv[1], creds, ci, si, v) && ok;
  return ok ? 0 : 1;
}
