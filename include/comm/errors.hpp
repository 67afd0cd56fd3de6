// comm — error classes, after the model's socket-error / ssl-condition hierarchy.
//
//   socket_error (std::system_error)
//     socket_create_error      local set-up: socket, bind, listen
//     socket_connect_error     resolution and connect
//     socket_io_error          I/O on a live connection
//       socket_timeout_error   a read/write timeout; the stream stays usable
//     ssl_condition            anything from the SSL layer, with an ssl_code
//       ssl_closed, ssl_failure, ssl_error, ssl_handshake_timeout,
//       ssl_verification_failure, ssl_x509_lookup
//
// Every message names the operation, the peer and the cause, e.g.
// "connect to 127.0.0.1:9: Connection refused".
#pragma once

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace comm {

class ssl_connection;  // a socket_stream or async_io_state (see tls.hpp)

// Error codes of the SSL layer (category "comm.ssl").
enum class ssl_errc {
  closed = 1,            // orderly close_notify where data or a handshake was expected
  failure,               // protocol failure (garbage, unexpected message, ...)
  library_error,         // the TLS library's own error (its error-queue text is in what())
  handshake_timeout,
  verification_failure,  // peer certificate unacceptable, or a verify callback rejected it
  x509_lookup,
  truncated,             // TCP closed or reset without close_notify while data was expected
  not_ssl,               // an SSL function on a connection without TLS
  unavailable,           // an implementation that this build or platform does not have
  invalid_argument,      // an option that cannot be used (names the option)
};
const std::error_category& ssl_category() noexcept;
inline std::error_code make_error_code(ssl_errc e) noexcept { return {static_cast<int>(e), ssl_category()}; }

class socket_error : public std::system_error {
 public:
  socket_error(std::error_code ec, const std::string& what, const ssl_connection* connection = nullptr)
      : std::system_error(ec, what), connection_(connection) {}
  // The connection the error happened on, or nullptr when none existed yet.
  // Valid only while that connection object is alive and not moved from.
  const ssl_connection* connection() const noexcept { return connection_; }

 private:
  const ssl_connection* connection_;
};

class socket_create_error : public socket_error { using socket_error::socket_error; };
class socket_connect_error : public socket_error { using socket_error::socket_error; };
class socket_io_error : public socket_error { using socket_error::socket_error; };
// A read or write timeout (code std::errc::timed_out). The stream is still usable.
class socket_timeout_error : public socket_io_error { using socket_io_error::socket_io_error; };

// Why a peer certificate was refused (the implementation-neutral reason).
enum class verify_reason {
  ok,
  expired,
  not_yet_valid,
  host_name_mismatch,
  unknown_issuer,        // chain does not end in a trusted certificate
  self_signed,           // the leaf itself is self-signed and not trusted
  self_signed_in_chain,
  revoked,
  invalid_ca,            // basic constraints / key usage of an issuer forbid it
  path_length_exceeded,
  invalid_purpose,
  signature_failure,
  no_certificate,        // the peer sent none (and one was required)
  rejected_by_callback,  // the user's verify callback said no
  other,
};
std::string_view to_string(verify_reason r) noexcept;

// The model's ssl-condition-ssl-code: a keyword, a library number, or (:verification more-info).
enum class ssl_code_kind {
  none,
  closed,
  verify_callback,
  client_hello_callback,
  cert_request_callback,
  min_proto_version,
  x509_lookup,
  certificate_key_file,
  library,       // value = ERR_get_error() (OpenSSL) or the negative gnutls error code
  verification,  // value = the implementation's verify code (X509_V_ERR_* / gnutls status bits)
  handshake_timeout,
  truncated,
};
struct ssl_code {
  ssl_code_kind kind = ssl_code_kind::none;
  long value = 0;
  friend bool operator==(const ssl_code&, const ssl_code&) = default;
};

class ssl_condition : public socket_error {
 public:
  ssl_condition(ssl_errc e, const std::string& what, ssl_code code = {}, const ssl_connection* conn = nullptr)
      : socket_error(make_error_code(e), what, conn), code_(code) {}
  const ssl_code& code() const noexcept { return code_; }

 private:
  ssl_code code_;
};
class ssl_closed : public ssl_condition { using ssl_condition::ssl_condition; };
class ssl_failure : public ssl_condition { using ssl_condition::ssl_condition; };
class ssl_error : public ssl_condition { using ssl_condition::ssl_condition; };
class ssl_handshake_timeout : public ssl_condition { using ssl_condition::ssl_condition; };
class ssl_x509_lookup : public ssl_condition { using ssl_condition::ssl_condition; };
class ssl_verification_failure : public ssl_condition {
 public:
  ssl_verification_failure(verify_reason reason, const std::string& what, ssl_code code = {},
                           const ssl_connection* conn = nullptr)
      : ssl_condition(ssl_errc::verification_failure, what, code, conn), reason_(reason) {}
  verify_reason reason() const noexcept { return reason_; }

 private:
  verify_reason reason_;
};

// The non-throwing forms return an outcome: the value, or the error that the throwing form would
// have thrown (the model's "nil plus the condition").
template <class T>
class outcome {
 public:
  outcome(T value) : value_(std::move(value)) {}
  outcome(std::exception_ptr error) : error_(std::move(error)) {}

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  T& value() & {
    if (!value_) std::rethrow_exception(error_);
    return *value_;
  }
  T&& value() && {
    if (!value_) std::rethrow_exception(error_);
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  T* operator->() { return &value(); }

  std::exception_ptr error() const noexcept { return error_; }
  // The error as a given class (socket_connect_error, ssl_verification_failure, ...), or nullptr.
  template <class E>
  const E* error_as() const noexcept {
    if (!error_) return nullptr;
    try {
      std::rethrow_exception(error_);
    } catch (const E& e) {
      return &e;  // the exception object lives as long as error_
    } catch (...) {
      return nullptr;
    }
  }
  std::error_code error_code() const noexcept {
    if (auto* e = error_as<std::system_error>()) return e->code();
    return error_ ? std::make_error_code(std::errc::io_error) : std::error_code{};
  }
  std::string error_message() const {
    if (auto* e = error_as<std::exception>()) return e->what();
    return error_ ? "unknown error" : "";
  }

 private:
  std::optional<T> value_;
  std::exception_ptr error_;
};

}  // namespace comm

template <>
struct std::is_error_code_enum<comm::ssl_errc> : std::true_type {};
