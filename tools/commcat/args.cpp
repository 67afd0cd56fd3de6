#include "args.hpp"

#include <charconv>
#include <cmath>
#include <string_view>

namespace commcat {
namespace {

using std::string_view;

struct parse_failure {
  std::string message;
};

// Usage errors quote what the user typed; keep them one printable line whatever that was
// (a newline or an escape sequence in an argument must not reach the terminal as such).
std::string printable(string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  return out;
}

std::optional<comm::ssl_protocol_version> parse_version(string_view v) {
  if (v == "1.2" || v == "TLSv1.2" || v == "tls1.2") return comm::ssl_protocol_version::tls_v1_2;
  if (v == "1.3" || v == "TLSv1.3" || v == "tls1.3") return comm::ssl_protocol_version::tls_v1_3;
  return std::nullopt;
}

std::vector<std::string> split_commas(string_view list) {
  std::vector<std::string> out;
  while (true) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

// Seconds as a decimal ("5", "0.25"), bounded to a day.
std::optional<std::chrono::milliseconds> parse_seconds(string_view text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (!std::isfinite(seconds) || seconds <= 0 || seconds > 86400) return std::nullopt;
  return std::chrono::milliseconds(static_cast<long long>(std::ceil(seconds * 1000)));
}

std::optional<int> parse_int(string_view text, int lo, int hi) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < lo || value > hi)
    return std::nullopt;
  return value;
}

// A port: a number 0-65535 or a service name (letters, digits, '-').
bool valid_port(string_view text) {
  if (text.empty() || text.size() > 64) return false;
  bool all_digits = true;
  for (char c : text) {
    bool digit = c >= '0' && c <= '9';
    bool name = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_';
    if (!digit && !name) return false;
    all_digits = all_digits && digit;
  }
  return !all_digits || parse_int(text, 0, 65535).has_value();
}

config parse(int argc, const char* const* argv) {
  std::vector<string_view> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i] ? argv[i] : "");

  config cfg;
  std::vector<string_view> positional;
  bool tls_option_seen = false;
  bool verify_client_seen = false;
  bool loops_seen = false;

  for (std::size_t i = 0; i < args.size(); ++i) {
    string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      cfg = config{};
      cfg.cmd = command::help;
      return cfg;
    }
    if (arg.size() < 2 || arg.substr(0, 2) != "--") {
      positional.push_back(arg);
      continue;
    }
    // --name=value or --name value
    string_view name = arg;
    std::optional<string_view> inline_value;
    if (auto eq = arg.find('='); eq != string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    auto value = [&]() -> string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw parse_failure{std::string(name) + " needs a value"};
      return args[++i];
    };
    auto flag = [&] {
      if (inline_value) throw parse_failure{std::string(name) + " takes no value"};
    };
    auto tls_text = [&](std::string& field) {
      field = std::string(value());
      if (field.empty()) throw parse_failure{std::string(name) + " needs a non-empty value"};
      tls_option_seen = true;
    };

    if (name == "--echo") {
      flag();
      cfg.echo = true;
    } else if (name == "--tls") {
      flag();
      cfg.tls.enabled = true;
    } else if (name == "--insecure") {
      flag();
      cfg.tls.insecure = true;
      tls_option_seen = true;
    } else if (name == "--cert") {
      tls_text(cfg.tls.cert_file);
    } else if (name == "--key") {
      tls_text(cfg.tls.key_file);
    } else if (name == "--key-password") {
      cfg.tls.key_password = std::string(value());
      tls_option_seen = true;
    } else if (name == "--ca-file") {
      tls_text(cfg.tls.ca_file);
    } else if (name == "--ca-dir") {
      tls_text(cfg.tls.ca_dir);
    } else if (name == "--servername") {
      tls_text(cfg.tls.servername);
    } else if (name == "--ciphers") {
      tls_text(cfg.tls.ciphers);
    } else if (name == "--alpn") {
      cfg.tls.alpn = split_commas(value());
      if (cfg.tls.alpn.empty()) throw parse_failure{"--alpn needs at least one protocol name"};
      for (auto& p : cfg.tls.alpn)
        if (p.size() > 255) throw parse_failure{"--alpn: a protocol name is longer than 255 bytes"};
      tls_option_seen = true;
    } else if (name == "--min-tls" || name == "--max-tls") {
      auto v = value();
      auto version = parse_version(v);
      if (!version) throw parse_failure{std::string(name) + ": expected 1.2 or 1.3, got '" + std::string(v) + "'"};
      (name == "--min-tls" ? cfg.tls.min_version : cfg.tls.max_version) = version;
      tls_option_seen = true;
    } else if (name == "--implementation") {
      auto v = value();
      if (v == "openssl") cfg.tls.implementation = comm::ssl_implementation::openssl;
      else if (v == "gnutls") cfg.tls.implementation = comm::ssl_implementation::gnutls;
      else throw parse_failure{"--implementation: expected openssl or gnutls, got '" + std::string(v) + "'"};
      tls_option_seen = true;
    } else if (name == "--verify-client") {
      auto v = value();
      if (v == "none") cfg.tls.verify_client = comm::peer_verification::none;
      else if (v == "optional") cfg.tls.verify_client = comm::peer_verification::optional;
      else if (v == "required") cfg.tls.verify_client = comm::peer_verification::required;
      else throw parse_failure{"--verify-client: expected none, optional or required, got '" + std::string(v) + "'"};
      verify_client_seen = true;
      tls_option_seen = true;
    } else if (name == "--timeout") {
      auto v = value();
      cfg.timeout = parse_seconds(v);
      if (!cfg.timeout) throw parse_failure{"--timeout: expected seconds (> 0), got '" + std::string(v) + "'"};
    } else if (name == "--loops") {
      auto v = value();
      auto n = parse_int(v, 1, 256);
      if (!n) throw parse_failure{"--loops: expected a number from 1 to 256, got '" + std::string(v) + "'"};
      cfg.loops = *n;
      loops_seen = true;
    } else {
      throw parse_failure{"unknown option " + std::string(name)};
    }
  }

  if (positional.empty()) throw parse_failure{"missing command (connect, listen or demo)"};
  string_view cmd = positional[0];
  auto expect_args = [&](std::size_t n, const char* usage) {
    if (positional.size() != n + 1)
      throw parse_failure{std::string(positional.size() < n + 1 ? "missing arguments" : "too many arguments") +
                          ": usage: commcat " + usage};
  };
  if (cmd == "connect") {
    cfg.cmd = command::connect;
    expect_args(2, "connect HOST PORT [options]");
    cfg.host = std::string(positional[1]);
    cfg.port = std::string(positional[2]);
    if (cfg.host.empty()) throw parse_failure{"connect: empty host"};
  } else if (cmd == "listen") {
    cfg.cmd = command::listen;
    expect_args(1, "listen PORT [options] [--echo]");
    cfg.port = std::string(positional[1]);
  } else if (cmd == "demo") {
    cfg.cmd = command::demo;
    expect_args(0, "demo");
    if (tls_option_seen || cfg.tls.enabled || cfg.echo || cfg.timeout || loops_seen)
      throw parse_failure{"demo takes no options"};
    return cfg;
  } else {
    throw parse_failure{"unknown command '" + std::string(cmd) + "' (expected connect, listen or demo)"};
  }
  if (!valid_port(cfg.port)) throw parse_failure{"invalid port '" + cfg.port + "'"};

  if (tls_option_seen) cfg.tls.enabled = true;
  auto& t = cfg.tls;
  if (cfg.cmd == command::connect) {
    if (cfg.echo) throw parse_failure{"--echo is for listen"};
    if (loops_seen) throw parse_failure{"--loops is for listen --echo"};
    if (verify_client_seen) throw parse_failure{"--verify-client is for listen"};
    if (t.key_file.empty() != t.cert_file.empty()) throw parse_failure{"--cert and --key go together"};
  } else {
    if (loops_seen && !cfg.echo) throw parse_failure{"--loops needs --echo"};
    if (!t.servername.empty()) throw parse_failure{"--servername is for connect"};
    if (t.insecure) throw parse_failure{"--insecure is for connect (a listener verifies clients only with --verify-client)"};
    if (t.enabled && (t.cert_file.empty() || t.key_file.empty()))
      throw parse_failure{"listen with TLS needs --cert and --key"};
    if (t.verify_client != comm::peer_verification::none && t.ca_file.empty() && t.ca_dir.empty())
      throw parse_failure{"--verify-client " + std::string(t.verify_client == comm::peer_verification::optional
                                                               ? "optional" : "required") +
                          " needs --ca-file or --ca-dir"};
  }
  if (!t.key_password.empty() && t.key_file.empty()) throw parse_failure{"--key-password needs --key"};
  if (t.min_version && t.max_version && *t.min_version > *t.max_version)
    throw parse_failure{"--min-tls is above --max-tls"};
  return cfg;
}

}  // namespace

std::variant<config, usage_error> parse_args(int argc, const char* const* argv) noexcept {
  try {
    return parse(argc, argv);
  } catch (const parse_failure& f) {
    return usage_error{printable(f.message)};
  } catch (const std::exception& e) {
    return usage_error{e.what()};
  } catch (...) {
    return usage_error{"invalid arguments"};
  }
}

const char* usage_text() noexcept {
  return R"(usage: commcat connect HOST PORT [TLS options]
       commcat listen PORT [TLS options] [--echo [--loops N]]
       commcat demo
       commcat --help

connect   connect to HOST:PORT; copy stdin to the connection and the connection to stdout.
          End of stdin half-closes (TLS: sends close_notify) and commcat keeps reading until
          the peer closes.
listen    accept one client on PORT (0 = any free port) and do the same; with --echo, serve
          any number of clients concurrently, echoing what they send, until SIGINT/SIGTERM.
          The bound port is printed to stderr as "listening on PORT".
demo      run a TLS server and client in this process on a throwaway CA and a localhost
          certificate made in memory, for every pair of available TLS implementations, and
          print what each side negotiated and which native handle type it got.

TLS options (any of them turns TLS on):
  --tls                     use TLS with the defaults (client: verify chain and host name)
  --cert FILE               own certificate chain (PEM, leaf first)
  --key FILE                own private key (PEM)
  --key-password TEXT       password of an encrypted key
  --ca-file FILE            trusted CA certificates (PEM) instead of the system store
  --ca-dir DIR              trusted CA directory (hashed names)
  --insecure                connect: do not verify the server's certificate
  --servername NAME         connect: SNI and the name the certificate must match
  --alpn P1,P2              ALPN protocols in preference order
  --min-tls 1.2|1.3         lowest protocol version (default 1.2)
  --max-tls 1.2|1.3         highest protocol version
  --ciphers LIST            TLS 1.2 cipher list
  --implementation openssl|gnutls
  --verify-client none|optional|required
                            listen: ask for client certificates (needs --ca-file or --ca-dir)
Other options:
  --timeout S               connect: connect plus handshake; listen: each client's handshake
  --loops N                 listen --echo: N event loops on N threads sharing the port

Exit status: 0 on success, 1 on any failure (one line on stderr), 2 on usage errors.
A TLS connection that ends without close_notify is reported as truncated (exit 1) after
everything received has been written out.
)";
}

}  // namespace commcat
