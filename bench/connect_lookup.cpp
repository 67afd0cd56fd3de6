// What a blocking connect by host name costs over one by address literal, on loopback: the name
// looked up on the lookup threads (the default for a name, which is looked up for both families,
// with an IPv4-only lookup beside it only when that is slow), in the calling thread (one family asked for, no timeout), and the
// floor of any thread-based lookup here: one hand-off to a waiting thread and back (a condition
// variable there, an eventfd back, as the lookup threads do). Rounds alternate the cases, so machine
// noise hits all alike; each figure is the median over rounds of a round's median.
//
//   bench_connect_lookup [--name=NAME] [--connects=N] [--rounds=N]
//
// NAME must resolve to 127.0.0.1 (default "localhost").
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <functional>

#include "comm/net.hpp"
#include "common/bench_common.hpp"

namespace {

using std::chrono::milliseconds;

// A thread that waits on a condition variable and answers through an eventfd.
class handoff_thread {
 public:
  handoff_thread() : efd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), thread_([this] { run(); }) {}
  ~handoff_thread() {
    {
      std::lock_guard lock(m_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
    ::close(efd_);
  }
  void round_trip() {
    {
      std::lock_guard lock(m_);
      ++jobs_;
    }
    cv_.notify_one();
    pollfd p{efd_, POLLIN, 0};
    ::poll(&p, 1, 5000);
    std::uint64_t v = 0;
    [[maybe_unused]] auto n = ::read(efd_, &v, sizeof v);
  }

 private:
  void run() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [this] { return jobs_ > 0 || quit_; });
      if (quit_) return;
      --jobs_;
      lock.unlock();
      const std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(efd_, &one, sizeof one);
      lock.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  int jobs_ = 0;
  bool quit_ = false;
  int efd_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string name;
  long long connects = 0;
  long long rounds = 0;
  try {
    const bench::args a(argc, argv);
    name = a.str("name", "localhost");
    connects = a.num("connects", 1000);
    rounds = a.num("rounds", 5);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
  }
  if (connects < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: bench_connect_lookup [--name=NAME] [--connects=N] [--rounds=N]\n");
    return 2;
  }
  auto listener = comm::tcp_listener::open("0", {.address = "127.0.0.1", .backlog = 4096});
  const std::string port = std::to_string(listener.local_port());
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) auto s = listener.accept(milliseconds(100));
  });
  handoff_thread handoff;

  struct bench_case {
    const char* what;
    std::function<void()> one;
    std::vector<double> round_medians;
  };
  auto connect_case = [&](std::string host, comm::connect_options o) {
    return [&port, host = std::move(host), o] { auto s = comm::connect_to_tcp_server(host, port, o); };
  };
  std::vector<bench_case> cases;
  cases.push_back({"connect to 127.0.0.1", connect_case("127.0.0.1", {}), {}});
  cases.push_back({"connect to NAME (lookup threads)", connect_case(name, {}), {}});
  cases.push_back(
      {"connect to NAME, timeout 5 s (lookup threads)", connect_case(name, {.timeout = milliseconds(5000)}), {}});
  cases.push_back(
      {"connect to NAME, IPv4 only (in the caller)", connect_case(name, {.family = comm::address_family::ipv4}), {}});
  cases.push_back({"thread hand-off and back (no connect)", [&] { handoff.round_trip(); }, {}});

  for (auto& c : cases) c.one();  // start the lookup threads, warm the resolver
  for (long long r = 0; r < rounds; ++r) {
    for (auto& c : cases) {
      std::vector<double> us;
      us.reserve(static_cast<std::size_t>(connects));
      for (long long i = 0; i < connects; ++i) {
        const auto t0 = bench::clock::now();
        c.one();
        us.push_back(bench::seconds_since(t0) * 1e6);
      }
      c.round_medians.push_back(bench::percentile(us, 50));
    }
  }
  stop = true;
  acceptor.join();

  const double literal = bench::percentile(cases[0].round_medians, 50);
  std::printf("%lld rounds of %lld each, NAME = %s; median over rounds of each round's median\n", rounds,
              connects, name.c_str());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const double m = bench::percentile(cases[i].round_medians, 50);
    if (i + 1 < cases.size())
      std::printf("%-48s %8.1f us  %+8.1f us over the literal\n", cases[i].what, m, m - literal);
    else
      std::printf("%-48s %8.1f us\n", cases[i].what, m);
  }
  return 0;
}
