// Two TLS engines (client and server, each implementation and across) talking through memory under
// the fault transport: every chunking, EAGAIN at random points, short writes, cuts mid-record.
// The handshake and the data transfer must come out identical (sha256 of each direction) or fail
// with the right error kind (a cut without close_notify is ssl_errc::truncated, never a clean end).
#include <gtest/gtest.h>
#include "peers/test_data.hpp"

#include <memory>
#include <random>
#include <string>
#include <tuple>

#include "comm/tls.hpp"
#include "peers/implementations.hpp"
#include "reliability/fault_transport.hpp"
#include "tls/engine.hpp"

namespace {

using comm::ssl_implementation;
using comm::detail::tls_status;
using comm_reliability::byte_pipe;
using comm_reliability::fault_plan;
using comm_reliability::fault_transport;

using comm_test::random_bytes;
using comm_test::sha256;

comm::ssl_abstract_context server_context(ssl_implementation impl, comm::ssl_protocol_version max) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.cert_pem = comm_test::demo_credentials_for_localhost().cert_pem;
  o.key_pem = comm_test::demo_credentials_for_localhost().key_pem;
  o.protocol_version.max = max;
  return comm::create_ssl_server_context(std::move(o));
}
comm::ssl_abstract_context client_context(ssl_implementation impl, comm::ssl_protocol_version max) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.trusted_pem = comm_test::demo_credentials_for_localhost().ca_cert_pem;
  o.protocol_version.max = max;
  o.session_resumption = false;
  return comm::create_ssl_client_context(std::move(o));
}

// One side of the conversation: an engine, what it must send, what it got.
struct side {
  std::unique_ptr<fault_transport> t;
  std::unique_ptr<comm::detail::tls_engine> e;
  std::string to_send;
  std::size_t sent = 0;
  std::size_t pending_write = 0;  // length of a write that said want_*: retried with the same length
  std::string received;
  bool got_close = false;
  bool sent_close = false;
  bool closing = false;  // in the close_notify exchange: keep reading for the peer's
  std::exception_ptr error;
  std::mt19937_64 rng;

  void fail() { error = e->error("test", "peer"); }
  // One step of handshake / write / read. Returns false once the side failed.
  bool step(std::size_t expect) {
    if (error) return false;
    if (!e->handshake_done()) {
      auto r = e->handshake();
      if (r.status == tls_status::error) fail();
      if (r.status == tls_status::closed) error = std::make_exception_ptr(std::runtime_error("closed in handshake"));
      return !error;
    }
    if (sent < to_send.size()) {
      std::size_t n = pending_write ? pending_write
                                    : std::min<std::size_t>(to_send.size() - sent, 1 + rng() % 20000);
      auto r = e->write(to_send.data() + sent, n);
      if (r.status == tls_status::done) {
        sent += r.bytes;
        pending_write = 0;
      } else if (r.status == tls_status::error) {
        fail();
        return false;
      } else {
        pending_write = n;
      }
    }
    if (!got_close && (received.size() < expect || closing)) {
      char buf[17000];
      auto r = e->read(buf, 1 + rng() % sizeof buf);
      if (r.status == tls_status::done) received.append(buf, r.bytes);
      if (r.status == tls_status::closed) got_close = true;
      if (r.status == tls_status::error) fail();
    }
    return !error;
  }
};

struct conversation {
  byte_pipe c2s, s2c;
  side client, server;

  conversation(ssl_implementation ci, ssl_implementation si, comm::ssl_protocol_version max,
               const fault_plan& client_plan, const fault_plan& server_plan, std::uint64_t seed) {
    client.t = std::make_unique<fault_transport>(s2c, c2s, client_plan, seed * 2 + 1);
    server.t = std::make_unique<fault_transport>(c2s, s2c, server_plan, seed * 2 + 2);
    client.rng.seed(seed * 7 + 3);
    server.rng.seed(seed * 7 + 4);
    comm::detail::engine_params cp;
    cp.side = comm::ssl_side::client;
    cp.sni = cp.host_name = "localhost";
    comm::detail::engine_params sp;
    sp.side = comm::ssl_side::server;
    client.e = comm::detail::make_engine(comm::ssl_ctx_spec(client_context(ci, max)), cp, *client.t);
    server.e = comm::detail::make_engine(comm::ssl_ctx_spec(server_context(si, max)), sp, *server.t);
  }

  // Runs until both sides received what they expect (or one fails). Bounded in steps.
  bool exchange(std::size_t steps = 3'000'000) {
    for (std::size_t i = 0; i < steps; ++i) {
      bool a = client.step(server.to_send.size());
      bool b = server.step(client.to_send.size());
      if (!a || !b) return false;
      if (client.sent == client.to_send.size() && server.sent == server.to_send.size() &&
          client.received.size() >= server.to_send.size() && server.received.size() >= client.to_send.size() &&
          client.e->handshake_done() && server.e->handshake_done())
        return true;
    }
    ADD_FAILURE() << "no progress within " << steps << " steps";
    return false;
  }

  // close_notify both ways: the client first, the server answers.
  bool close_both(std::size_t steps = 100'000) {
    client.closing = server.closing = true;
    for (std::size_t i = 0; i < steps; ++i) {
      for (side* s : {&client, &server}) {
        if (s->error) return false;
        if (!s->sent_close && (s == &client || s->got_close)) {
          auto r = s->e->shutdown();
          if (r.status == tls_status::done) s->sent_close = true;
          if (r.status == tls_status::error) s->fail();
        }
        s->step(0);
      }
      if (client.got_close && server.got_close && client.sent_close && server.sent_close) return true;
    }
    ADD_FAILURE() << "close_notify exchange did not finish: client sent " << client.sent_close << " got "
                  << client.got_close << " (engine " << client.e->close_notify_received() << "), server sent "
                  << server.sent_close << " got " << server.got_close << " (engine "
                  << server.e->close_notify_received() << "); in flight c2s " << c2s.bytes.size() << " s2c "
                  << s2c.bytes.size();
    return false;
  }
};

std::string describe(const std::exception_ptr& e) {
  if (!e) return "no error";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

comm::ssl_errc error_kind(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const comm::ssl_condition& c) {
    // ssl_condition::code() is the ssl_code; the error_code is the system_error's.
    return static_cast<comm::ssl_errc>(static_cast<const std::system_error&>(c).code().value());
  } catch (...) {
    return comm::ssl_errc{};
  }
}

using pair_param = std::tuple<ssl_implementation, ssl_implementation>;

class FaultTransport : public ::testing::TestWithParam<pair_param> {
 protected:
  ssl_implementation ci() const { return std::get<0>(GetParam()); }
  ssl_implementation si() const { return std::get<1>(GetParam()); }
};

// Handshake and data both ways under every fault; then the close_notify exchange with faults on
// reads only (CloseNotifyExchangeSurvivesWriteFaults below has write faults during the close).
TEST_P(FaultTransport, EveryChunkingGivesIdenticalBytesBothWays) {
  for (auto version : {comm::ssl_protocol_version::tls_v1_3, comm::ssl_protocol_version::tls_v1_2}) {
    for (std::uint64_t seed = 1; seed <= 10; ++seed) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " " + std::string(comm::to_string(version)));
      fault_plan plan;
      plan.bytewise = seed <= 2;  // the first seeds deliver every byte on its own
      plan.eagain_percent = static_cast<unsigned>(10 * (seed % 6));
      plan.max_split = 1 + 97 * seed;
      conversation c(ci(), si(), version, plan, plan, seed);
      c.client.to_send = random_bytes(seed <= 2 ? 20000 : 70000 + seed * 1013, seed);
      c.server.to_send = random_bytes(seed <= 2 ? 15000 : 50000 + seed * 777, seed + 100);
      ASSERT_TRUE(c.exchange()) << "client: " << describe(c.client.error) << "; server: " << describe(c.server.error);
      EXPECT_EQ(sha256(c.server.received), sha256(c.client.to_send));
      EXPECT_EQ(sha256(c.client.received), sha256(c.server.to_send));
      EXPECT_EQ(c.client.e->protocol_version(), version);
      EXPECT_EQ(c.server.e->protocol_version(), version);
      EXPECT_TRUE(c.client.e->verify().ok);
      fault_plan reads_only = plan;
      reads_only.write_faults = false;
      c.client.t->set_plan(reads_only);
      c.server.t->set_plan(reads_only);
      ASSERT_TRUE(c.close_both()) << "client: " << describe(c.client.error) << "; server: " << describe(c.server.error);
      EXPECT_TRUE(c.client.e->close_notify_received());
      EXPECT_TRUE(c.server.e->close_notify_received());
    }
  }
}

// The close_notify exchange with EAGAIN and short writes. OpenSSL marks SSL_SENT_SHUTDOWN when it
// queues the alert, not when the alert is written: shutdown must keep answering want_output until
// the alert has left, or it stays in OpenSSL's buffer and the peer sees truncation.
TEST_P(FaultTransport, CloseNotifyExchangeSurvivesWriteFaults) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    fault_plan plan;
    plan.eagain_percent = 50;
    plan.max_split = 50;
    conversation c(ci(), si(), comm::ssl_protocol_version::tls_v1_3, plan, plan, seed + 500);
    c.client.to_send = "ping";
    c.server.to_send = "pong";
    ASSERT_TRUE(c.exchange());
    ASSERT_TRUE(c.close_both()) << "client: " << describe(c.client.error) << "; server: " << describe(c.server.error);
  }
}

// The connection is cut (FIN or RST, no close_notify) in the middle of the server's data, at a
// random point that usually falls inside a record: the client must report truncation.
TEST_P(FaultTransport, CutMidRecordIsTruncationNeverACleanEnd) {
  for (int cut_error : {0, ECONNRESET}) {
    for (std::uint64_t seed = 1; seed <= 8; ++seed) {
      SCOPED_TRACE("seed " + std::to_string(seed) + (cut_error ? " reset" : " eof"));
      fault_plan plan;
      plan.max_split = 300;
      conversation c(ci(), si(), comm::ssl_protocol_version::tls_v1_3, plan, plan, seed + 50);
      c.client.to_send = "x";
      c.server.to_send = "y";
      ASSERT_TRUE(c.exchange());
      // Now the server sends a large body; the client's side is cut partway into it.
      c.server.to_send += random_bytes(100000, seed);
      fault_plan cut = plan;
      cut.cut_error = cut_error;
      cut.cut_after = c.client.t->delivered() + 1 + (seed * 7919) % 60000;
      c.client.t->set_plan(cut);
      bool ok = c.exchange(200000);
      ASSERT_FALSE(ok) << "the transfer completed although the connection was cut";
      ASSERT_TRUE(c.client.error) << "the client saw no error";
      EXPECT_FALSE(c.client.got_close) << "a cut was taken for close_notify";
      EXPECT_EQ(error_kind(c.client.error), comm::ssl_errc::truncated) << describe(c.client.error);
      EXPECT_LT(c.client.received.size(), c.server.to_send.size());
      EXPECT_EQ(c.client.received, c.server.to_send.substr(0, c.client.received.size()))
          << "bytes before the cut must be intact";
    }
  }
}

// How many bytes the server sends before the client's handshake is done (measured byte by byte).
std::size_t server_flight(ssl_implementation ci, ssl_implementation si) {
  fault_plan plan;
  plan.bytewise = true;
  plan.eagain_percent = 0;
  conversation c(ci, si, comm::ssl_protocol_version::tls_v1_3, plan, plan, 99);
  for (int i = 0; i < 100000 && !c.client.e->handshake_done(); ++i) {
    c.client.step(0);
    c.server.step(0);
  }
  return c.client.e->handshake_done() ? c.client.t->delivered() : 0;
}

// A cut inside the server's handshake flight fails the client's handshake with an error, never
// succeeds and never hangs.
TEST_P(FaultTransport, CutDuringHandshakeFails) {
  const std::size_t flight = server_flight(ci(), si());
  ASSERT_GT(flight, 100u);
  for (std::size_t cut_at : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{6}, flight / 3, flight / 2,
                             flight - 8}) {  // the signature length varies by a byte or two
    for (int cut_error : {0, ECONNRESET}) {
      SCOPED_TRACE("cut at " + std::to_string(cut_at) + " of " + std::to_string(flight) +
                   (cut_error ? " reset" : " eof"));
      fault_plan plan;
      plan.max_split = 50;
      fault_plan cut = plan;
      cut.cut_after = cut_at;
      cut.cut_error = cut_error;
      conversation c(ci(), si(), comm::ssl_protocol_version::tls_v1_3, cut, plan, cut_at + 1);
      c.client.to_send = "x";
      c.server.to_send = "y";
      EXPECT_FALSE(c.exchange(200000));
      ASSERT_TRUE(c.client.error) << "server: " << describe(c.server.error);
      EXPECT_FALSE(c.client.e->handshake_done());
      comm::ssl_errc kind = error_kind(c.client.error);
      EXPECT_TRUE(kind == comm::ssl_errc::truncated || kind == comm::ssl_errc::closed ||
                  kind == comm::ssl_errc::failure)
          << describe(c.client.error);
    }
  }
}

std::vector<pair_param> pairs() {
  std::vector<pair_param> out;
  for (auto a : {ssl_implementation::openssl, ssl_implementation::gnutls})
    for (auto b : {ssl_implementation::openssl, ssl_implementation::gnutls})
      if (comm::ssl_implementation_available(a) && comm::ssl_implementation_available(b)) out.emplace_back(a, b);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Pairs, FaultTransport, ::testing::ValuesIn(pairs()), [](const auto& info) {
  return std::string(comm::to_string(std::get<0>(info.param))) + "_to_" +
         std::string(comm::to_string(std::get<1>(info.param)));
});

}  // namespace
