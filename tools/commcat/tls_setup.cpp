// Maps commcat's TLS options onto the library's context options.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "commcat.hpp"

namespace commcat {
namespace {

// SSLKEYLOGFILE, as browsers and curl read it: when set, the NSS key log lines of every TLS
// connection are appended to that file, for Wireshark. One file for the whole process, opened once
// (append, owner-only permissions since it lets anyone decrypt the traffic); lines from
// concurrent connections are written whole under a mutex.
class keylog_sink {
 public:
  // nullptr when the variable is unset or empty, or the file cannot be opened (said on stderr).
  static std::shared_ptr<keylog_sink> from_environment() {
    static const std::shared_ptr<keylog_sink> sink = open_from_environment();
    return sink;
  }
  void write(std::string_view line) {
    std::lock_guard lock(mutex_);
    std::fwrite(line.data(), 1, line.size(), file_.get());
    std::fputc('\n', file_.get());
    std::fflush(file_.get());
  }

 private:
  struct closer {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };
  static std::shared_ptr<keylog_sink> open_from_environment() {
    const char* path = std::getenv("SSLKEYLOGFILE");
    if (path == nullptr || *path == '\0') return nullptr;
    int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    std::FILE* f = fd < 0 ? nullptr : ::fdopen(fd, "a");
    if (f == nullptr) {
      const int e = errno;
      if (fd >= 0) ::close(fd);
      std::fprintf(stderr, "commcat: SSLKEYLOGFILE: cannot open %s: %s; key logging is off\n", path, std::strerror(e));
      return nullptr;
    }
    auto sink = std::make_shared<keylog_sink>();
    sink->file_.reset(f);
    std::fprintf(stderr, "commcat: logging TLS keys to %s (SSLKEYLOGFILE): anyone with it can decrypt the traffic\n",
                 path);
    return sink;
  }
  std::mutex mutex_;
  std::unique_ptr<std::FILE, closer> file_;
};

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
  if (auto sink = keylog_sink::from_environment())
    o.keylog_callback = [sink](const comm::ssl_connection&, std::string_view line) { sink->write(line); };
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
