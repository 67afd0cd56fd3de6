// Shared helpers of the benchmark programs (every side uses the same ones, so that argument
// handling, timing and the result format cannot differ between comm, Asio and the raw loops).
//
// Protocol with bench/run.py: a server prints "PORT <n>" on stdout once it listens, serves until
// its stdin reaches end of file (or --max-seconds passes: nothing outlives the runner), then prints
// one JSON line with its own figures. A client prints one JSON line with its figures.
#pragma once

#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bench {

// --name=value and --flag arguments.
class args {
 public:
  args(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) throw std::invalid_argument("unexpected argument: " + a);
      auto eq = a.find('=');
      // (insert_or_assign with a std::string: GCC 12 warns falsely on assigning a literal)
      if (eq == std::string::npos)
        values_.insert_or_assign(a.substr(2), std::string(1, '1'));
      else
        values_.insert_or_assign(a.substr(2, eq - 2), a.substr(eq + 1));
    }
  }
  std::string str(const std::string& name, const std::string& def = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
  }
  long long num(const std::string& name, long long def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : std::stoll(it->second);
  }
  bool flag(const std::string& name) const { return values_.count(name) != 0 && values_.at(name) != "0"; }
  std::string require(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) throw std::invalid_argument("missing --" + name);
    return it->second;
  }

 private:
  std::map<std::string, std::string> values_;
};

using clock = std::chrono::steady_clock;

inline double seconds_since(clock::time_point t0) {
  return std::chrono::duration<double>(clock::now() - t0).count();
}

// The blocking handshake clients' loop: attempt() again and again on `threads` threads until the
// deadline, or until 1,000 attempts have failed in all. An attempt fails by throwing; the first
// failure's text is kept.
struct attempts {
  long done = 0, errors = 0;
  double seconds = 0;
  std::string first_error;
  double per_second() const { return static_cast<double>(done) / seconds; }
};

template <class Attempt>
attempts repeat_on_threads(long long threads, clock::time_point deadline, Attempt attempt) {
  std::atomic<long> done{0}, errors{0};
  std::mutex m;
  attempts out;
  auto t0 = clock::now();
  std::vector<std::thread> pool;
  for (long long i = 0; i < threads; ++i) {
    pool.emplace_back([&] {
      while (clock::now() < deadline && errors < 1000) {
        try {
          attempt();
          ++done;
        } catch (const std::exception& e) {
          if (errors++ == 0) {
            std::lock_guard lock(m);
            out.first_error = e.what();
          }
        }
      }
    });
  }
  for (auto& t : pool) t.join();
  out.seconds = seconds_since(t0);
  out.done = done;
  out.errors = errors;
  return out;
}

// Resident set size of a process (self by default), in KiB, from /proc.
inline long rss_kib(pid_t pid = 0) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// User + system CPU seconds of this process.
inline double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Many connections need many descriptors: raise the soft limit to the hard one.
inline void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// A hard bound on the life of a benchmark process: SIGALRM's default action ends it.
inline void limit_lifetime(const args& a) { alarm(static_cast<unsigned>(a.num("max-seconds", 300))); }

inline void announce_port(unsigned port) {
  std::printf("PORT %u\n", port);
  std::fflush(stdout);
}

// Blocks until stdin reaches end of file (the runner closes it to stop a server).
inline void wait_stdin_eof() {
  char buf[256];
  while (true) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR)) return;
  }
}
// Blocks until one line (or EOF) arrives on stdin: the runner's "go on" between stages.
inline bool wait_stdin_line() {
  char c;
  while (true) {
    ssize_t n = ::read(0, &c, 1);
    if (n == 0) return false;
    if (n < 0 && errno != EINTR) return false;
    if (n == 1 && c == '\n') return true;
  }
}

// One flat JSON object, printed on one line.
class json_line {
 public:
  json_line& add(const std::string& k, double v) {
    std::ostringstream o;
    o.precision(10);
    o << v;
    item(k, o.str());
    return *this;
  }
  json_line& add(const std::string& k, const std::string& v) {
    item(k, "\"" + v + "\"");
    return *this;
  }
  void print() const {
    std::string s = "{";
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (i) s.append(", ");
      s.append(items_[i]);
    }
    s.append("}\n");
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
  }

 private:
  void item(const std::string& k, const std::string& v) {
    std::string s;
    s.reserve(k.size() + v.size() + 4);
    s.append(1, '"').append(k).append("\": ").append(v);
    items_.push_back(std::move(s));
  }
  std::vector<std::string> items_;
};

// The result line of every handshake program (comm, Asio, raw), one schema for the runner:
// rate, handshakes done, resumed (none: no TLS, so the runner's resumption check does not apply),
// errors and the process's CPU. Returns the exit status: 0 without errors.
inline int print_handshakes(double per_second, long long done, std::optional<long long> resumed, long long errors) {
  json_line j;
  j.add("hs_s", per_second).add("done", static_cast<double>(done));
  if (resumed)
    j.add("resumed", static_cast<double>(*resumed));
  else
    j.add("tls", 0);
  j.add("errors", static_cast<double>(errors)).add("cpu_s", cpu_seconds()).print();
  return errors == 0 ? 0 : 1;
}

// Percentile (0..100) of a sample set, nearest-rank.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size()));
  if (idx >= v.size()) idx = v.size() - 1;
  return v[idx];
}

inline void print_stage(const std::string& name) {
  std::printf("STAGE %s\n", name.c_str());
  std::fflush(stdout);
}

}  // namespace bench
