// How TLS connections fail: garbage, silence, truncation, clean close, bad keys, bad options.
#include <sys/socket.h>
#include <netinet/in.h>

#include <thread>

#include "comm/stream.hpp"
#include "tls/tls_test_util.hpp"

namespace comm_test {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

class Failures : public ::testing::TestWithParam<comm::ssl_implementation> {
 protected:
  comm::open_tcp_stream_options client_options(std::chrono::milliseconds handshake = 5s) const {
    comm::open_tcp_stream_options o;
    o.ssl_ctx = trusting_client(GetParam());
    o.handshake_timeout = handshake;
    o.read_timeout = 5s;
    o.write_timeout = 5s;
    return o;
  }
};

TEST_P(Failures, GarbageFromTheServerIsAnSslFailure) {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  std::thread server([&] {
    auto s = listener.accept(5s);
    if (!s) return;
    const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    ::send(s->get(), reply, sizeof reply - 1, MSG_NOSIGNAL);
    char buf[4096];
    (void)::recv(s->get(), buf, sizeof buf, 0);  // the ClientHello (or the alert)
  });
  try {
    comm::open_tcp_stream("localhost", std::to_string(listener.local_port()), client_options());
    ADD_FAILURE() << "connected to a garbage server";
  } catch (const comm::ssl_failure& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1"), std::string::npos) << e.what();
  }
  server.join();
}

TEST_P(Failures, SilentServerGivesHandshakeTimeoutWithinItsBound) {
  // The kernel completes the TCP handshake; nobody ever answers the ClientHello.
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  const auto start = clock::now();
  EXPECT_THROW(comm::open_tcp_stream("localhost", std::to_string(listener.local_port()), client_options(300ms)),
               comm::ssl_handshake_timeout);
  const auto took = clock::now() - start;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2s);
}

TEST_P(Failures, PeerDroppingTcpMidStreamIsTruncationNotEnd) {
  python_server peer("tls_peer.py", {"truncate", pki().good.cert_file, pki().good.key_file});
  auto s = comm::open_tcp_stream("localhost", peer.port, client_options());
  EXPECT_EQ(s.read_line(), "partial");
  try {
    char b[16];
    std::size_t n = s.read_some(b, sizeof b);
    ADD_FAILURE() << "read returned " << n << " instead of failing";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(errc_of(e), comm::ssl_errc::truncated) << e.what();
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::truncated);
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST_P(Failures, CloseNotifyIsACleanEnd) {
  python_server peer("tls_peer.py", {"close_notify", pki().good.cert_file, pki().good.key_file});
  auto s = comm::open_tcp_stream("localhost", peer.port, client_options());
  EXPECT_EQ(s.read_line(), "bye");
  char b[16];
  EXPECT_EQ(s.read_some(b, sizeof b), 0u);
  EXPECT_TRUE(s.tls_engine_()->close_notify_received());
  s.close();  // answers the close_notify
  EXPECT_EQ(peer.process.wait_for("^DONE$"), "DONE");
}

TEST_P(Failures, PeerResetMidStreamIsTruncation) {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  auto server_ctx = server_with(GetParam(), pki().good);
  std::thread server([&] {
    auto h = listener.accept(5s);
    if (!h) return;
    comm::attach_ssl_options a;
    a.ssl_ctx = server_ctx;
    a.handshake_timeout = 5s;
    try {
      comm::socket_stream s(std::move(*h), {.read_timeout = 5s}, std::move(a));
      s.write_all("partial\n");
      s.flush();
      (void)s.read_line();  // the client's "ready": it has the data, now reset under it
      linger l{1, 0};
      ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::shutdown(s.native_handle(), SHUT_RDWR);
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  });
  auto s = comm::open_tcp_stream("localhost", std::to_string(listener.local_port()), client_options());
  EXPECT_EQ(s.read_line(), "partial");
  s.write_all("ready\n");
  s.flush();
  server.join();
  try {
    char b[16];
    std::size_t n = s.read_some(b, sizeof b);
    ADD_FAILURE() << "read returned " << n << " instead of failing";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(errc_of(e), comm::ssl_errc::truncated) << e.what();
  }
}

TEST_P(Failures, CloseNotifyInsteadOfAHandshakeIsSslClosed) {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  std::thread server([&] {
    auto s = listener.accept(5s);
    if (!s) return;
    char hello[4096];
    (void)::recv(s->get(), hello, sizeof hello, 0);
    const unsigned char close_notify[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00};
    ::send(s->get(), close_notify, sizeof close_notify, MSG_NOSIGNAL);
    (void)::recv(s->get(), hello, sizeof hello, 0);
  });
  try {
    comm::open_tcp_stream("localhost", std::to_string(listener.local_port()), client_options());
    ADD_FAILURE() << "handshake succeeded";
  } catch (const comm::ssl_closed& e) {
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::closed) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not ssl_closed: " << e.what();
  }
  server.join();
}

TEST_P(Failures, WrongKeyPasswordIsAClearErrorAtCreation) {
  comm::ssl_context_options o;
  o.implementation = GetParam();
  o.cert_file = pki().good.cert_file;
  o.key_file = pki().encrypted_key_file;
  o.password = "wrong";
  try {
    comm::create_ssl_server_context(o);
    FAIL() << "created a context with a wrong password";
  } catch (const comm::ssl_error& e) {
    EXPECT_NE(std::string(e.what()).find(pki().encrypted_key_file), std::string::npos) << e.what();
  }
}

TEST_P(Failures, PasswordCallbackIsCalledAndItsPasswordWorks) {
  int calls = 0;
  comm::ssl_context_options o;
  o.implementation = GetParam();
  o.cert_file = pki().good.cert_file;
  o.key_file = pki().encrypted_key_file;
  o.password_callback = [&] {
    ++calls;
    return pki().key_password;
  };
  auto ctx = comm::create_ssl_server_context(o);
  EXPECT_GE(calls, 1);
  EXPECT_TRUE(ctx);
  o.password_callback = {};
  o.password = pki().key_password;
  EXPECT_TRUE(comm::create_ssl_server_context(o));
}

TEST_P(Failures, MissingCertificateFileNamesIt) {
  comm::ssl_context_options o;
  o.implementation = GetParam();
  o.cert_file = pki().dir + "/no-such.crt";
  o.key_file = pki().good.key_file;
  try {
    comm::create_ssl_server_context(o);
    FAIL() << "created a context from a missing file";
  } catch (const comm::ssl_condition& e) {
    EXPECT_NE(std::string(e.what()).find("no-such.crt"), std::string::npos) << e.what();
  }
}

TEST_P(Failures, WrongSideAndUnpairedOptionsAreRejectedByName) {
  auto server_opts = [&](auto edit) {
    comm::ssl_context_options o;
    o.implementation = GetParam();
    o.cert_file = pki().good.cert_file;
    o.key_file = pki().good.key_file;
    edit(o);
    return o;
  };
  auto rejects = [](auto make, const std::string& option) {
    try {
      make();
      ADD_FAILURE() << option << " accepted";
    } catch (const comm::ssl_failure& e) {
      EXPECT_EQ(errc_of(e), comm::ssl_errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find(option), std::string::npos) << e.what();
    }
  };
  rejects([&] { comm::create_ssl_server_context(server_opts([](auto& o) { o.tlsext_host_name = "x"; })); },
          "tlsext_host_name");
  rejects([&] {
    comm::create_ssl_server_context(server_opts([](auto& o) { o.cert_request_callback = [](auto&) { return true; }; }));
  }, "cert_request_callback");
  rejects([&] {
    comm::create_ssl_client_context(options([&](auto& o) {
      o.implementation = GetParam();
      o.client_hello_callback = [](auto&, std::string_view) { return comm::client_hello_decision{}; };
    }));
  }, "client_hello_callback");
  rejects([&] {
    comm::create_ssl_client_context(options([&](auto& o) {
      o.implementation = GetParam();
      o.dh_file = "dh.pem";
    }));
  }, "dh_file");
  rejects([&] { comm::create_ssl_server_context(options([&](auto& o) { o.implementation = GetParam(); })); },
          "certificate");
  // A certificate and its key come from one place each, and together.
  rejects([&] { comm::create_ssl_server_context(server_opts([](auto& o) { o.cert_pem = pki().good.cert_pem; })); },
          "options cert_file and cert_pem are exclusive");
  rejects([&] { comm::create_ssl_server_context(server_opts([](auto& o) { o.key_pem = pki().good.key_pem; })); },
          "options key_file and key_pem are exclusive");
  rejects([&] { comm::create_ssl_server_context(server_opts([](auto& o) { o.key_file.clear(); })); },
          "a certificate needs its private key (key_file or key_pem)");
  rejects([&] {
    comm::create_ssl_client_context(options([&](auto& o) {
      o.implementation = GetParam();
      o.key_pem = pki().client.key_pem;
    }));
  }, "a private key needs its certificate (cert_file or cert_pem)");
}

INSTANTIATE_TEST_SUITE_P(Implementations, Failures, ::testing::ValuesIn(tested_implementations()),
                         implementation_name{});

TEST(Implementations, DefaultAndAvailability) {
  EXPECT_TRUE(comm::ssl_implementation_available(comm::ssl_implementation::openssl));
  EXPECT_FALSE(comm::ssl_implementation_available(comm::ssl_implementation::apple));
  try {
    comm::set_ssl_default_implementation(comm::ssl_implementation::apple);
    FAIL() << "apple accepted";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(errc_of(e), comm::ssl_errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("apple"), std::string::npos);
  }
  EXPECT_EQ(comm::ssl_default_implementation(), comm::ssl_implementation::openssl);
  EXPECT_EQ(comm::to_string(comm::ssl_implementation::gnutls), "gnutls");
}

TEST(Implementations, AppleContextRefIsAClearError) {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  auto fd = comm::connect_to_tcp_server("127.0.0.1", std::to_string(listener.local_port()));
  comm::socket_stream s(std::move(fd));
  comm::attach_ssl_options a;
  a.ssl_ctx = comm::ssl_context_ref{};
  a.ssl_side = comm::ssl_side::client;
  try {
    comm::attach_ssl(s, std::move(a));
    FAIL() << "attached an Apple context";
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(errc_of(e), comm::ssl_errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("ssl_context_ref"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(s.is_ssl());
}

TEST(Implementations, NotSslConnectionFunctionsSayNotSsl) {
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1"});
  comm::socket_stream s(comm::connect_to_tcp_server("127.0.0.1", std::to_string(listener.local_port())));
  try {
    comm::ssl_connection_cipher(s);
    FAIL();
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(errc_of(e), comm::ssl_errc::not_ssl);
  }
}

}  // namespace
}  // namespace comm_test
