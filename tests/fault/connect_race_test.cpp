// Happy Eyeballs (RFC 8305): both connects, blocking and asynchronous, on a host whose addresses the
// test chooses (fault::fake_host answers getaddrinfo for it); and the async connect's name lookup
// off the loop (fault::hold_host makes it slow). An address that stalls is a listener
// whose accept queue is full: Linux drops the SYNs that reach it, so a connect there neither
// succeeds nor fails, as toward an address without a route. The fault layer also records the
// addresses that connect() was called with, in order.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "async/async_helpers.hpp"
#include "comm/comm.hpp"
#include "fault/socket_faults.hpp"

namespace {

using namespace std::chrono_literals;
using race_clock = std::chrono::steady_clock;
using strings = std::vector<std::string>;

// The port asked for is taken on that address (by a test in another process).
struct port_taken : std::runtime_error {
  using std::runtime_error::runtime_error;
};

comm::socket_handle race_listener(const std::string& address, std::uint16_t port, int backlog) {
  const bool v6 = address.find(':') != std::string::npos;
  comm::socket_handle s(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) throw std::runtime_error("race_listener: socket");
  int one = 1;
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    ::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    ::inet_pton(AF_INET6, address.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ::inet_pton(AF_INET, address.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(s.get(), backlog) != 0) {
    if (errno == EADDRINUSE)
      throw port_taken("race_listener: " + address + ":" + std::to_string(port) + " is taken");
    throw std::runtime_error("race_listener: bind or listen on " + address + ":" + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  return s;
}

std::uint16_t port_of_listener(const comm::socket_handle& s) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
  return ntohs(sa->sa_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port
                                         : reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
}

// A listener whose accept queue (one connection) is full and never accepted from.
struct stalled_address {
  comm::socket_handle listener, filler;
  stalled_address(const std::string& address, std::uint16_t port) : listener(race_listener(address, port, 0)) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    filler.reset(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(filler.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
      throw std::runtime_error("stalled_address: filler connect");
  }
  std::uint16_t port() const { return port_of_listener(listener); }
};

// The address of the connection accepted on listener within `within` ("" when none came).
std::string accepted_from(const comm::socket_handle& listener, std::chrono::milliseconds within = 5s) {
  pollfd p{listener.get(), POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(within.count())) != 1) return "";
  comm::socket_handle c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  auto ep = c ? comm::get_socket_address(c.get()) : std::nullopt;
  return ep ? ep->address.to_string() : "";
}

std::string peer_of(int fd) {
  auto ep = comm::get_socket_peer_address(fd);
  return ep ? ep->address.to_string() : "";
}

// A fake host name for the running test alone ("slow-TestName-Param.test").
std::string test_host_name(const std::string& prefix) {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::replace(name.begin(), name.end(), '/', '-');
  return prefix + "-" + name + ".test";
}

long long millis_since(race_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(race_clock::now() - t0).count();
}

// The asynchronous connect's outcome, filled in by its callback on the loop thread.
struct race_result {
  async_test::waiter w;
  bool done = false;
  std::string peer;
  std::string error;
  std::error_code code;
  long long millis = 0;
  std::uint16_t local_port = 0;  // the winner's
};

void async_race(async_test::loop_thread& lt, const std::string& host, std::uint16_t port,
                comm::async_connect_options o, race_result& r) {
  const auto t0 = race_clock::now();
  lt.call([&] {
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, host, std::to_string(port),
        [&r, t0](comm::async_io_state* s, std::exception_ptr e) {
          std::string peer, error;
          std::error_code code;
          std::uint16_t local_port = 0;
          if (s != nullptr) {
            auto ep = s->peer_address();
            peer = ep ? ep->address.to_string() : "?";
            local_port = comm::get_socket_address(s->native_handle())->port;
            comm::close_async_io_state(*s);
          }
          try {
            if (e) std::rethrow_exception(e);
          } catch (const comm::socket_error& x) {
            error = x.what();
            code = x.code();
          }
          const auto ms = millis_since(t0);
          r.w.notify([&] {
            r.done = true, r.peer = peer, r.error = error, r.code = code, r.millis = ms, r.local_port = local_port;
          });
        },
        std::move(o));
    return 0;
  });
}

// ---- races, each run by the blocking and by the asynchronous connect

enum class answer { stalls, accepts, refuses };

struct race_case {
  const char* name;
  std::vector<std::pair<std::string, answer>> addresses;  // the host's, in the resolver's order
  std::optional<std::chrono::milliseconds> attempt_delay;
  std::chrono::milliseconds timeout;
  // What must come of it:
  std::string peer;  // the winner's address; empty: the connect fails
  strings tried;     // the addresses connect() was called with, in order
  std::errc code{};  // when it fails, with this message after "connect to HOST:PORT: "
  std::string cause;
  long long at_least_ms = 0, below_ms = 5000;
};

std::ostream& operator<<(std::ostream& os, const race_case& c) { return os << c.name; }

const race_case race_cases[] = {
    // The first address stalls: after the attempt delay the second joins and wins.
    {"StalledAddressGivesWayAfterTheAttemptDelay",
     {{"127.0.0.1", answer::stalls}, {"127.0.0.2", answer::accepts}},
     200ms, 10s, "127.0.0.2", {"127.0.0.1", "127.0.0.2"}, {}, "", 200},
    // Without an attempt delay, one address at a time: the stalled one has the whole timeout.
    {"OneAtATimeGivesTheStalledOneTheWholeTimeout",
     {{"127.0.0.1", answer::stalls}, {"127.0.0.2", answer::accepts}},
     std::nullopt, 500ms, "", {"127.0.0.1"}, std::errc::timed_out, "timed out after 500 ms: Connection timed out", 500},
    // The families take turns from the first address's on: with two stalled IPv4 addresses first,
    // the second attempt goes to the IPv6 one, which wins before the third would start.
    {"FamiliesTakeTurns",
     {{"127.0.0.1", answer::stalls}, {"127.0.0.3", answer::stalls}, {"::1", answer::accepts}},
     500ms, 10s, "::1", {"127.0.0.1", "::1"}, {}, "", 500},
    // An attempt that fails while another still races makes way for the next address at once, not
    // after the attempt delay: the connect takes one delay (1 s), not two.
    {"AFailureStartsTheNextAddressAtOnce",
     {{"127.0.0.1", answer::stalls}, {"127.0.0.3", answer::refuses}, {"127.0.0.2", answer::accepts}},
     1s, 10s, "127.0.0.2", {"127.0.0.1", "127.0.0.3", "127.0.0.2"}, {}, "", 1000, 1900},
    // Every address stalls: the timeout covers them all, and the error names it.
    {"EveryAddressStalledTimesOut",
     {{"127.0.0.1", answer::stalls}, {"127.0.0.2", answer::stalls}},
     100ms, 600ms, "", {"127.0.0.1", "127.0.0.2"}, std::errc::timed_out, "timed out after 600 ms: Connection timed out",
     600},
    // Every address refuses: the error is the last one's cause.
    {"EveryAddressRefusedNamesTheCause",
     {{"127.0.0.1", answer::refuses}, {"127.0.0.2", answer::refuses}},
     250ms, 5s, "", {"127.0.0.1", "127.0.0.2"}, std::errc::connection_refused, "Connection refused"},
};

using address_answers = std::vector<std::pair<std::string, answer>>;

// The listeners of a case, all on one port: stalled ones, accepting ones, and none where the
// address refuses.
struct race_setup {
  std::uint16_t port = 0;
  std::vector<stalled_address> stalled;
  std::vector<std::pair<std::string, comm::socket_handle>> accepting;

  // Opens them on a port that every address has free: another process's test may hold the one
  // that the first address got on another address.
  static race_setup open(const address_answers& addresses) {
    for (int attempt = 1;; ++attempt) {
      try {
        return race_setup(addresses);
      } catch (const port_taken&) {
        if (attempt == 50) throw;
      }
    }
  }
  comm::socket_handle& listener_of(const std::string& address) {
    for (auto& [a, listener] : accepting)
      if (a == address) return listener;
    throw std::logic_error("no listener on " + address);
  }
  std::string accepted_by_winner(const race_case& c) {
    for (auto& [address, listener] : accepting)
      if (address == c.peer) return accepted_from(listener);
    return "";
  }

 private:
  explicit race_setup(const address_answers& addresses) {
    for (const auto& [address, a] : addresses) {
      if (a == answer::stalls) {
        stalled.emplace_back(address, port);
        port = stalled.back().port();
      } else if (a == answer::accepts) {
        accepting.emplace_back(address, race_listener(address, port, 8));
        port = port_of_listener(accepting.back().second);
      }
    }
    if (port == 0) {  // only refusals: a port that nothing listens on now
      comm::socket_handle probe = race_listener("127.0.0.1", 0, 1);
      port = port_of_listener(probe);
    }
  }
};

class ConnectRace : public ::testing::TestWithParam<race_case> {
 protected:
  ConnectRace() {
    std::vector<std::string> addresses;
    for (const auto& a : c.addresses) addresses.push_back(a.first);
    fault::fake_host(host, addresses);
    fault::both_families_answer_first(host);
  }
  // The outcome against the case's.
  void check(const std::string& peer, const std::string& error, std::error_code code, long long took) {
    EXPECT_EQ(peer, c.peer);
    EXPECT_EQ(fault::connects_to(setup.port), c.tried);
    if (c.peer.empty()) {
      EXPECT_EQ(code, std::make_error_code(c.code));
      EXPECT_EQ(error, "connect to " + host + ":" + std::to_string(setup.port) + ": " + c.cause);
    } else {
      EXPECT_EQ(setup.accepted_by_winner(c), c.peer);
    }
    EXPECT_GE(took, c.at_least_ms);
    EXPECT_LT(took, c.below_ms);
  }
  const race_case& c = GetParam();
  race_setup setup = race_setup::open(c.addresses);
  fault::scope faults;  // after the listeners, before the fake host (it clears on construction)
  const std::string host = std::string("race-") + c.name + ".test";
};

TEST_P(ConnectRace, Blocking) {
  const int fds_before = async_test::count_open_fds();
  comm::connect_options o;
  o.timeout = c.timeout;
  o.attempt_delay = c.attempt_delay;
  const auto t0 = race_clock::now();
  std::string peer, error;
  std::error_code code;
  try {
    comm::socket_handle s = comm::connect_to_tcp_server(host, std::to_string(setup.port), o);
    peer = peer_of(s.get());
    EXPECT_EQ(async_test::count_open_fds(), fds_before + 1);  // the losers are closed
  } catch (const comm::socket_connect_error& e) {
    error = e.what();
    code = e.code();
  }
  check(peer, error, code, millis_since(t0));
  EXPECT_EQ(async_test::count_open_fds(), fds_before);
}

TEST_P(ConnectRace, Async) {
  race_result r;  // outlives the loop: a callback after a failed wait finds it
  async_test::loop_thread lt("race");
  const int fds_before = async_test::count_open_fds();
  comm::async_connect_options o;
  o.connect_timeout = c.timeout;
  o.attempt_delay = c.attempt_delay;
  async_race(lt, host, setup.port, o, r);
  ASSERT_TRUE(r.w.wait([&] { return r.done; }, 15s));
  check(r.peer, r.error, r.code, r.millis);
  // The losers were closed when the race ended, the winner's state by the callback.
  EXPECT_EQ(lt.call([] { return async_test::count_open_fds(); }), fds_before);
}

INSTANTIATE_TEST_SUITE_P(HappyEyeballs, ConnectRace, ::testing::ValuesIn(race_cases),
                         [](const auto& info) { return std::string(info.param.name); });

// open_tcp_stream passes the option on.
TEST(HappyEyeballs, OpenTcpStreamRacesToo) {
  auto setup = race_setup::open({{"127.0.0.1", answer::stalls}, {"127.0.0.2", answer::accepts}});
  const std::uint16_t port = setup.port;
  comm::socket_handle& good = setup.listener_of("127.0.0.2");
  fault::scope faults;
  fault::fake_host("first-stalls.test", {"127.0.0.1", "127.0.0.2"});
  comm::socket_stream s =
      comm::open_tcp_stream("first-stalls.test", std::to_string(port), {.timeout = 10s, .attempt_delay = 100ms});
  EXPECT_EQ(peer_of(s.native_handle()), "127.0.0.2");
  EXPECT_EQ(accepted_from(good), "127.0.0.2");
}

// A port to choose as a connect's local port: below the ephemeral range (32768 and up), where no
// socket of another test lands by itself, and one that a socket with SO_REUSEADDR can bind now.
std::uint16_t free_port() {
  for (int i = 0; i < 100; ++i) {
    const auto port = static_cast<std::uint16_t>(20000 + (::getpid() * 7 + i * 101) % 10000);
    comm::socket_handle probe(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(probe.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    if (::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return port;
  }
  throw std::runtime_error("free_port: none found");
}

// Closing the collection in the middle of a race closes every attempt, and no callback runs.
TEST(AsyncHappyEyeballs, ClosingTheCollectionMidRaceClosesEveryAttempt) {
  auto setup = race_setup::open({{"127.0.0.1", answer::stalls}, {"127.0.0.2", answer::stalls}});
  const std::uint16_t port = setup.port;
  fault::scope faults;
  fault::fake_host("all-stall.test", {"127.0.0.1", "127.0.0.2"});
  async_test::loop_thread lt("race");
  const int fds_before = async_test::count_open_fds();
  bool called = false;
  lt.call([&] {
    comm::async_connect_options o;
    o.attempt_delay = 0ms;  // the second starts from a timer due at once
    comm::create_async_io_state_and_connected_tcp_socket(
        *lt, "all-stall.test", std::to_string(port), [&](comm::async_io_state*, std::exception_ptr) { called = true; },
        o);
    return 0;
  });
  // Each call is a turn of the loop, which fires the timer.
  for (int turn = 0; turn < 100 && fault::connects_to(port).size() < 2; ++turn) lt.call([] { return 0; });
  EXPECT_EQ(fault::connects_to(port), (strings{"127.0.0.1", "127.0.0.2"}));
  EXPECT_EQ(lt.call([] { return async_test::count_open_fds(); }), fds_before + 2);
  EXPECT_FALSE(lt.call([&] {
    comm::close_wait_state_collection(*lt);
    return called;
  }));
  EXPECT_EQ(lt.call([] { return async_test::count_open_fds(); }), fds_before);
  EXPECT_FALSE(lt.call([&] { return called; }));
}

// ---- an IPv4 lookup beside a slow one of both families (RFC 8305, section 3), by both connects

enum class connect_kind { blocking, async };

std::ostream& operator<<(std::ostream& os, connect_kind k) { return os << (k == connect_kind::async ? "Async" : "Blocking"); }

struct connect_outcome {
  std::string peer, error;
  long long millis = 0;
  std::uint16_t local_port = 0;  // the winner's
};

// One connect of the kind asked for, waited for to its end.
connect_outcome connect_by(connect_kind kind, const std::string& host, std::uint16_t port,
                           std::chrono::milliseconds attempt_delay, std::chrono::milliseconds timeout,
                           const std::string& local_port = "") {
  connect_outcome out;
  if (kind == connect_kind::blocking) {
    const auto t0 = race_clock::now();
    try {
      comm::connect_options o;
      o.timeout = timeout;
      o.attempt_delay = attempt_delay;
      o.local_port = local_port;
      comm::socket_handle s = comm::connect_to_tcp_server(host, std::to_string(port), o);
      out.peer = peer_of(s.get());
      out.local_port = comm::get_socket_address(s.get())->port;
    } catch (const std::exception& e) {
      out.error = e.what();
    }
    out.millis = millis_since(t0);
    return out;
  }
  race_result r;  // outlives the loop: a callback after a failed wait finds it
  async_test::loop_thread lt("split");
  comm::async_connect_options o;
  o.connect_timeout = timeout;
  o.attempt_delay = attempt_delay;
  o.local_port = local_port;
  async_race(lt, host, port, o, r);
  if (!r.w.wait([&] { return r.done; }, 15s)) return {"", "no callback", 0, 0};
  return {r.peer, r.error, r.millis, r.local_port};
}

// Each test opens its listeners first, then its fault::scope (which forgets the connects that
// fill a stalled address's queue).
class SplitLookup : public ::testing::TestWithParam<connect_kind> {
 protected:
  // A name of its own: a lookup that a test left waiting, ended when the next test clears the
  // faults, must not count as that one's.
  const std::string host = test_host_name("split");
};

// AAAA queries go unanswered: the lookup of both families waits for them. After the resolution
// delay (50 ms) an IPv4 lookup starts, which does not wait for them, and the connect goes on with
// its answer, long before the other's 10 s.
TEST_P(SplitLookup, AnIPv4AnswerGoesAloneAfterTheResolutionDelay) {
  comm::socket_handle good = race_listener("127.0.0.1", 0, 8);
  const std::uint16_t port = port_of_listener(good);
  fault::scope faults;
  fault::fake_host(host, {"::1", "127.0.0.1"});
  fault::hold_host(host, AF_INET6);
  const auto out = connect_by(GetParam(), host, port, 250ms, 10s);
  EXPECT_EQ(out.error, "");
  EXPECT_EQ(out.peer, "127.0.0.1");
  EXPECT_GE(out.millis, 50);
  EXPECT_LT(out.millis, 5000);
  EXPECT_EQ(fault::resolutions_of(host, AF_UNSPEC), 0u);
  EXPECT_EQ(fault::lookups_of(host, AF_INET), 1u);
  EXPECT_EQ(fault::connects_to(port), (strings{"127.0.0.1"}));
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
  fault::release_host(host, AF_INET6);
}

// The answer for both families comes within the resolution delay: no IPv4 lookup starts, so a
// connect by name asks DNS once for each family, not twice for IPv4, and its caller is woken once.
TEST_P(SplitLookup, AnAnswerWithinTheResolutionDelayIsTheOnlyLookup) {
  comm::socket_handle good = race_listener("127.0.0.1", 0, 8);
  const std::uint16_t port = port_of_listener(good);
  fault::scope faults;
  fault::fake_host(host, {"127.0.0.1"});
  const auto out = connect_by(GetParam(), host, port, 250ms, 10s);
  EXPECT_EQ(out.error, "");
  EXPECT_EQ(out.peer, "127.0.0.1");
  EXPECT_EQ(fault::lookups_of(host, AF_UNSPEC), 1u);
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
  // A connect slower than the delay (a loaded machine) may have started the IPv4 lookup, rightly.
  if (out.millis >= 50) GTEST_SKIP() << "the connect took " << out.millis << " ms, the IPv4 lookup was due";
  EXPECT_EQ(fault::lookups_of(host, AF_INET), 0u);
}

// The lookup of both families fails (a DNS error for one of its two queries fails it all): the
// IPv4 lookup starts then, and the connect goes on with its answer; the failure is not reported.
TEST_P(SplitLookup, AFailedLookupOfBothFamiliesLeavesTheIPv4One) {
  comm::socket_handle good = race_listener("127.0.0.1", 0, 8);
  const std::uint16_t port = port_of_listener(good);
  fault::scope faults;
  fault::fake_host(host, {"::1", "127.0.0.1"});
  fault::fail_host(host, AF_UNSPEC, EAI_AGAIN);
  const auto out = connect_by(GetParam(), host, port, 250ms, 10s);
  EXPECT_EQ(out.error, "");
  EXPECT_EQ(out.peer, "127.0.0.1");
  EXPECT_EQ(fault::resolutions_of(host, AF_UNSPEC), 1u);
  EXPECT_EQ(fault::lookups_of(host, AF_INET), 1u);
  EXPECT_LT(out.millis, 5000);
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
}

// The answer for both families comes while the race runs on the IPv4 addresses: its IPv6 address
// joins and takes the next turn (before the second IPv4 address), and wins.
TEST_P(SplitLookup, ALateIPv6AnswerJoinsTheRaceInItsTurn) {
  auto setup = race_setup::open(
      {{"127.0.0.1", answer::stalls}, {"127.0.0.3", answer::stalls}, {"::1", answer::accepts}});
  const std::uint16_t port = setup.port;
  comm::socket_handle& good = setup.listener_of("::1");
  fault::scope faults;
  fault::fake_host(host, {"127.0.0.1", "127.0.0.3", "::1"});
  fault::hold_host(host, AF_INET6);
  auto running = std::async(std::launch::async, [&] { return connect_by(GetParam(), host, port, 300ms, 10s); });
  // Bounded: the first attempt starts 50 ms after the IPv4 answer.
  for (int i = 0; i < 5000 && fault::connects_to(port).empty(); ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(fault::connects_to(port), (strings{"127.0.0.1"}));
  fault::release_host(host, AF_INET6);
  const auto out = running.get();
  EXPECT_EQ(out.error, "");
  EXPECT_EQ(out.peer, "::1");
  EXPECT_EQ(fault::connects_to(port), (strings{"127.0.0.1", "::1"}));
  EXPECT_GE(out.millis, 300);  // the attempt delay after the first attempt
  EXPECT_LT(out.millis, 5000);
  EXPECT_EQ(accepted_from(good), "::1");
}

// Neither lookup finds the name: the error is the lookup's, as with one lookup.
TEST_P(SplitLookup, NoAddressInEitherFamilyIsTheLookupError) {
  fault::scope faults;
  fault::fake_host("nothing.test", {});
  const auto out = connect_by(GetParam(), "nothing.test", 9, 250ms, 10s);
  EXPECT_EQ(out.peer, "");
  EXPECT_EQ(out.error, "resolve nothing.test:9: Name or service not known");
  EXPECT_EQ(fault::lookups_of("nothing.test", AF_UNSPEC), 1u);
  EXPECT_EQ(fault::lookups_of("nothing.test", AF_INET), 1u);  // the error waits for both
}

// A name is never looked up for IPv6 alone: /etc/hosts may have it for IPv4 only, and that lookup
// would then go to DNS (on a host whose DNS server does not answer, holding a lookup thread for
// seconds each time). The real resolver answers "localhost" here.
TEST_P(SplitLookup, ANameIsNeverLookedUpForIPv6Alone) {
  // "localhost" may be either.
  auto setup = race_setup::open({{"127.0.0.1", answer::accepts}, {"::1", answer::accepts}});
  const std::uint16_t port = setup.port;
  fault::scope faults;
  const auto out = connect_by(GetParam(), "localhost", port, 250ms, 10s);
  EXPECT_EQ(out.error, "");
  EXPECT_TRUE(out.peer == "127.0.0.1" || out.peer == "::1") << out.peer;
  EXPECT_EQ(fault::lookups_of("localhost", AF_INET6), 0u);
  EXPECT_EQ(fault::lookups_of("localhost", AF_UNSPEC), 1u);
}

INSTANTIATE_TEST_SUITE_P(HappyEyeballs, SplitLookup, ::testing::Values(connect_kind::blocking, connect_kind::async),
                         [](const auto& info) { return info.param == connect_kind::async ? "Async" : "Blocking"; });

// A chosen local port serves every attempt of the race: both are bound to it at once (each with
// SO_REUSEADDR, which Linux allows while neither listens), and the winner keeps it.
class ChosenLocalPort : public ::testing::TestWithParam<connect_kind> {};

TEST_P(ChosenLocalPort, RacingAttemptsShareIt) {
  auto setup = race_setup::open({{"127.0.0.1", answer::stalls}, {"127.0.0.2", answer::accepts}});
  const std::uint16_t local = free_port();
  fault::scope faults;
  const std::string host = test_host_name("local-port");
  fault::fake_host(host, {"127.0.0.1", "127.0.0.2"});
  const auto out = connect_by(GetParam(), host, setup.port, 100ms, 10s, std::to_string(local));
  EXPECT_EQ(out.error, "");
  EXPECT_EQ(out.peer, "127.0.0.2");
  EXPECT_EQ(fault::connects_to(setup.port), (strings{"127.0.0.1", "127.0.0.2"}));
  EXPECT_EQ(out.local_port, local);
  EXPECT_EQ(accepted_from(setup.listener_of("127.0.0.2")), "127.0.0.2");
}

INSTANTIATE_TEST_SUITE_P(HappyEyeballs, ChosenLocalPort, ::testing::Values(connect_kind::blocking, connect_kind::async),
                         [](const auto& info) { return info.param == connect_kind::async ? "Async" : "Blocking"; });

// ---- name lookups that wait

// A host name whose lookup waits until the test releases it (a slow DNS answer), for a listener
// on 127.0.0.1.
class SlowLookup : public ::testing::Test {
 protected:
  SlowLookup() {
    fault::fake_host(host, {"127.0.0.1"});
    fault::hold_host(host);
  }
  std::string failure(const std::string& cause) const {
    return "connect to " + host + ":" + std::to_string(port) + ": " + cause;
  }
  comm::socket_handle good = race_listener("127.0.0.1", 0, 8);
  const std::uint16_t port = port_of_listener(good);
  fault::scope faults;  // after the listener, before the fake host (it clears on construction)
  // A name of its own: a lookup that an earlier test left waiting (ended when that test cleared the
  // faults) must not be held again by this one.
  const std::string host = test_host_name("slow");
};

// The same for the asynchronous connect, with a loop and the connect's outcome.
class AsyncSlowLookup : public SlowLookup {
 protected:
  race_result r;  // outlives the loop: a callback after a failed wait finds it
  async_test::loop_thread lt{"lookup"};
};

// The blocking connect's timeout covers the lookup too: getaddrinfo has no timeout of its own.
TEST_F(SlowLookup, TheBlockingConnectTimeoutCoversTheLookup) {
  const auto t0 = race_clock::now();
  try {
    (void)comm::open_tcp_stream(host, std::to_string(port), {.timeout = 300ms});
    FAIL() << "connected";
  } catch (const comm::socket_connect_error& e) {
    EXPECT_EQ(e.code(), std::make_error_code(std::errc::timed_out));
    EXPECT_EQ(std::string(e.what()), failure("timed out after 300 ms resolving the name: Connection timed out"));
  }
  const auto took = millis_since(t0);
  EXPECT_GE(took, 300);
  EXPECT_LT(took, 5000);  // the held lookup would have taken 10 s
  EXPECT_EQ(fault::resolutions_of(host), 0u);
  fault::release_host(host);
  // A lookup that answers in time is used as before.
  comm::socket_stream s = comm::open_tcp_stream(host, std::to_string(port), {.timeout = 5s});
  EXPECT_EQ(peer_of(s.native_handle()), "127.0.0.1");
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
}

// Lookups wait in a queue for the lookup threads (at most 4). One whose connect has timed out
// before a thread took it is dropped, not run: with a DNS server that does not answer, running
// every abandoned lookup would keep the queue long after the server is back.
TEST_F(SlowLookup, ALookupAbandonedInTheQueueIsNotRun) {
  const strings busy = {"busy1.test", "busy2.test", "busy3.test", "busy4.test"};
  async_test::loop_thread lt("lookups");
  for (const auto& name : busy) {
    fault::fake_host(name, {"127.0.0.1"});
    fault::hold_host(name);
    lt.call([&] {
      comm::async_connect_options o;
      o.family = comm::address_family::ipv4;  // one lookup each
      comm::create_async_io_state_and_connected_tcp_socket(*lt, name, std::to_string(port),
                                                           [](comm::async_io_state*, std::exception_ptr) {}, o);
      return 0;
    });
  }
  auto all_busy = [&] {
    for (const auto& name : busy)
      if (fault::lookups_of(name) == 0) return false;
    return true;
  };
  // Bounded: a lookup thread may still be ending a lookup of an earlier test in this process.
  const auto until = race_clock::now() + 5s;
  while (!all_busy() && race_clock::now() < until) lt.call([] { return 0; });
  ASSERT_TRUE(all_busy());  // every lookup thread waits on one of them
  fault::fake_host("queued.test", {"127.0.0.1"});
  try {
    (void)comm::open_tcp_stream("queued.test", std::to_string(port), {.timeout = 200ms});
    FAIL() << "connected";
  } catch (const comm::socket_connect_error& e) {
    EXPECT_EQ(std::string(e.what()), "connect to queued.test:" + std::to_string(port) +
                                         ": timed out after 200 ms resolving the name: Connection timed out");
  }
  for (const auto& name : busy) fault::release_host(name);
  // Queued after queued.test's two lookups: once one has been answered, those have left the queue.
  fault::fake_host("after.test", {"127.0.0.1"});
  comm::socket_stream s = comm::open_tcp_stream("after.test", std::to_string(port), {.timeout = 5s});
  EXPECT_GE(fault::lookups_of("after.test"), 1u);
  EXPECT_EQ(fault::lookups_of("queued.test"), 0u);
}

// A lookup whose connect gave up while it ran holds its thread until getaddrinfo returns (glibc's
// retries later, with a DNS server that does not answer). It does not count against the limit of
// 4 lookup threads, so a burst of connects that time out on a dead DNS server does not hold up
// the lookups that come after them: a name that answers is still looked up at once.
TEST_F(SlowLookup, LookupsGivenUpWhileRunningLeaveTheirPlace) {
  const strings stuck = {"stuck1.test", "stuck2.test", "stuck3.test", "stuck4.test", "stuck5.test"};
  for (const auto& name : stuck) {
    fault::fake_host(name, {"127.0.0.1"});
    fault::hold_host(name);
    try {
      (void)comm::open_tcp_stream(name, std::to_string(port), {.timeout = 300ms, .family = comm::address_family::ipv4});
      FAIL() << "connected";
    } catch (const comm::socket_connect_error& e) {
      EXPECT_EQ(std::string(e.what()), "connect to " + name + ":" + std::to_string(port) +
                                           ": timed out after 300 ms resolving the name: Connection timed out");
    }
  }
  std::uint64_t began = 0;
  for (const auto& name : stuck) began += fault::lookups_of(name);
  EXPECT_GE(began, 4u);  // each holds its thread
  fault::fake_host("answers.test", {"127.0.0.1"});
  const auto t0 = race_clock::now();
  comm::socket_stream s = comm::open_tcp_stream("answers.test", std::to_string(port), {.timeout = 5s});
  EXPECT_EQ(peer_of(s.native_handle()), "127.0.0.1");
  EXPECT_LT(millis_since(t0), 5000);
  for (const auto& name : stuck) EXPECT_EQ(fault::resolutions_of(name), 0u) << name;  // still held
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
}

// fork() copies only the calling thread, so a child made after lookups ran has none of the lookup
// threads: it must start threads of its own, or every lookup with a timeout would time out there.
TEST_F(SlowLookup, AForkedChildLooksUpOnThreadsOfItsOwn) {
#if FAULTS_UNDER_TSAN
  GTEST_SKIP() << "ThreadSanitizer stops a child that starts threads after a multi-threaded fork";
#endif
  fault::release_host(host);
  {  // the parent's lookup threads start
    comm::socket_stream s = comm::open_tcp_stream(host, std::to_string(port), {.timeout = 5s});
  }
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int code = 1;
    try {
      comm::socket_stream s = comm::open_tcp_stream(host, std::to_string(port), {.timeout = 2s});
      code = 0;
    } catch (...) {
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);  // 1: the child's connect failed (its lookup timed out)
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
}

// While the lookup waits, the loop goes on: had the lookup run on the loop, the call that starts
// the connect would itself wait until the lookup returned.
TEST_F(AsyncSlowLookup, TheLoopGoesOnWhileTheLookupWaits) {
  comm::async_connect_options o;
  o.connect_timeout = 10s;
  async_race(lt, host, port, o, r);
  EXPECT_EQ(lt.call([&] { return fault::resolutions_of(host); }), 0u);
  EXPECT_FALSE(r.w.wait([&] { return r.done; }, 0ms));
  fault::release_host(host);
  ASSERT_TRUE(r.w.wait([&] { return r.done; }, 15s));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.peer, "127.0.0.1");
  EXPECT_EQ(accepted_from(good), "127.0.0.1");
  EXPECT_GE(fault::resolutions_of(host), 1u);
}

// A local address given as a name is looked up off the loop as well.
TEST_F(AsyncSlowLookup, ALocalAddressNameIsLookedUpOffTheLoopToo) {
  fault::fake_host("local.test", {"127.0.0.1"});
  fault::hold_host("local.test");
  comm::async_connect_options o;
  o.connect_timeout = 10s;
  o.local_address = "local.test";
  async_race(lt, "127.0.0.1", port, o, r);
  EXPECT_EQ(lt.call([] { return fault::resolutions_of("local.test"); }), 0u);
  EXPECT_FALSE(r.w.wait([&] { return r.done; }, 0ms));
  fault::release_host("local.test");
  ASSERT_TRUE(r.w.wait([&] { return r.done; }, 15s));
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.peer, "127.0.0.1");
  EXPECT_EQ(fault::resolutions_of("local.test"), 1u);  // once, not once per address
}

// A collection closed during the lookup: the answer that comes later starts nothing and runs no
// callback.
TEST_F(AsyncSlowLookup, ClosingTheCollectionDuringTheLookupRunsNoCallback) {
  async_race(lt, host, port, {}, r);
  lt.call([&] {
    comm::close_wait_state_collection(*lt);
    return 0;
  });
  fault::release_host(host);
  for (int turn = 0; turn < 1000 && fault::resolutions_of(host) == 0; ++turn) lt.call([] { return 0; });
  EXPECT_GE(fault::resolutions_of(host), 1u);
  EXPECT_EQ(accepted_from(good, 1000ms), "");  // nothing connects
  EXPECT_FALSE(r.w.wait([&] { return r.done; }, 0ms));
}

// The connect timeout runs from the call, through the lookup.
TEST_F(AsyncSlowLookup, TheConnectTimeoutCoversTheLookup) {
  comm::async_connect_options o;
  o.connect_timeout = 300ms;
  async_race(lt, host, port, o, r);
  ASSERT_TRUE(r.w.wait([&] { return r.done; }, 15s));
  EXPECT_EQ(r.code, std::make_error_code(std::errc::timed_out));
  EXPECT_EQ(r.error, failure("timed out after 300 ms resolving the name: Connection timed out"));
  EXPECT_EQ(fault::resolutions_of(host), 0u);  // it timed out while the lookup waited
}

}  // namespace
