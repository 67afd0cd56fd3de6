// ip_address, endpoint, and name/service resolution through getaddrinfo.
#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "net/sockaddr.hpp"

namespace comm {

ip_address ip_address::v4(std::uint32_t host_order) {
  ip_address a;
  a.bytes_[0] = static_cast<std::uint8_t>(host_order >> 24);
  a.bytes_[1] = static_cast<std::uint8_t>(host_order >> 16);
  a.bytes_[2] = static_cast<std::uint8_t>(host_order >> 8);
  a.bytes_[3] = static_cast<std::uint8_t>(host_order);
  return a;
}

ip_address ip_address::v6(const std::array<std::uint8_t, 16>& bytes, std::uint32_t scope_id) {
  ip_address a;
  a.bytes_ = bytes;
  a.scope_id_ = scope_id;
  a.v6_ = true;
  return a;
}

ip_address ip_address::any_v4() { return v4(0); }
ip_address ip_address::any_v6() { return v6({}); }
ip_address ip_address::loopback_v4() { return v4(0x7f000001u); }
ip_address ip_address::loopback_v6() {
  std::array<std::uint8_t, 16> b{};
  b[15] = 1;
  return v6(b);
}

std::optional<ip_address> ip_address::try_parse(std::string_view text) noexcept {
  try {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    if (text.empty() || text.size() > 100) return std::nullopt;
    std::string s(text);
    if (s.find(':') == std::string::npos) {
      in_addr a4{};
      if (::inet_pton(AF_INET, s.c_str(), &a4) != 1) return std::nullopt;
      return v4(ntohl(a4.s_addr));
    }
    std::uint32_t scope = 0;
    if (auto pct = s.find('%'); pct != std::string::npos) {
      std::string zone = s.substr(pct + 1);
      s.resize(pct);
      if (zone.empty()) return std::nullopt;
      if (std::all_of(zone.begin(), zone.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        if (zone.size() > 9) return std::nullopt;
        scope = static_cast<std::uint32_t>(std::stoul(zone));
      } else {
        scope = ::if_nametoindex(zone.c_str());
        if (scope == 0) return std::nullopt;
      }
    }
    in6_addr a6{};
    if (::inet_pton(AF_INET6, s.c_str(), &a6) != 1) return std::nullopt;
    std::array<std::uint8_t, 16> b{};
    std::memcpy(b.data(), &a6, 16);
    return v6(b, scope);
  } catch (...) {
    return std::nullopt;
  }
}

ip_address ip_address::parse(std::string_view text) {
  if (auto a = try_parse(text)) return *a;
  throw std::invalid_argument("not a numeric IP address: \"" + std::string(text) + "\"");
}

bool ip_address::is_loopback() const noexcept {
  if (!v6_) return bytes_[0] == 127;
  return *this == loopback_v6();
}

bool ip_address::is_unspecified() const noexcept {
  if (!v6_) return to_v4() == 0;
  return std::all_of(bytes_.begin(), bytes_.end(), [](std::uint8_t b) { return b == 0; });
}

std::uint32_t ip_address::to_v4() const noexcept {
  return (std::uint32_t{bytes_[0]} << 24) | (std::uint32_t{bytes_[1]} << 16) | (std::uint32_t{bytes_[2]} << 8) |
         std::uint32_t{bytes_[3]};
}

std::string ip_address::to_string() const {
  char buf[INET6_ADDRSTRLEN + 16] = {};
  if (!v6_) {
    ::inet_ntop(AF_INET, bytes_.data(), buf, sizeof buf);
    return buf;
  }
  ::inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
  std::string s = buf;
  if (scope_id_ != 0) {
    s += '%';
    s += std::to_string(scope_id_);
  }
  return s;
}

// Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, a false positive) on "[" + string.
std::string endpoint::to_string() const {
  std::string s;
  if (address.is_v6()) s += '[';
  s += address.to_string();
  if (address.is_v6()) s += ']';
  s += ':';
  s += std::to_string(port);
  return s;
}

namespace detail {

sockaddr_buf to_sockaddr(const endpoint& ep) noexcept {
  sockaddr_buf b;
  if (ep.address.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&b.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(ep.port);
    sin->sin_addr.s_addr = htonl(ep.address.to_v4());
    b.length = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&b.storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(ep.port);
    std::memcpy(&sin6->sin6_addr, ep.address.bytes().data(), 16);
    sin6->sin6_scope_id = ep.address.scope_id();
    b.length = sizeof(sockaddr_in6);
  }
  return b;
}

std::optional<endpoint> from_sockaddr(const sockaddr* sa, socklen_t length) noexcept {
  if (sa == nullptr) return std::nullopt;
  if (sa->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    return endpoint{ip_address::v4(ntohl(sin->sin_addr.s_addr)), ntohs(sin->sin_port)};
  }
  if (sa->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::array<std::uint8_t, 16> b{};
    std::memcpy(b.data(), &sin6->sin6_addr, 16);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      std::uint32_t v = (std::uint32_t{b[12]} << 24) | (std::uint32_t{b[13]} << 16) | (std::uint32_t{b[14]} << 8) |
                        std::uint32_t{b[15]};
      return endpoint{ip_address::v4(v), ntohs(sin6->sin6_port)};
    }
    return endpoint{ip_address::v6(b, sin6->sin6_scope_id), ntohs(sin6->sin6_port)};
  }
  return std::nullopt;
}

std::string host_port_text(std::string_view host, std::string_view service) {
  std::string h(host.empty() ? std::string_view("localhost") : host);
  if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";
  return h + ":" + std::string(service);
}

void target_order::add(std::vector<endpoint> found) {
  for (auto& t : found) {
    if (std::find(seen_.begin(), seen_.end(), t) != seen_.end()) continue;  // in both answers
    seen_.push_back(t);
    if (!next_v6_) next_v6_ = t.address.is_v6();
    (t.address.is_v6() ? v6_ : v4_).push_back(std::move(t));
  }
}

std::optional<endpoint> target_order::take() {
  if (empty()) return std::nullopt;
  // The family whose turn it is, or the other when it has none left.
  const bool v6 = next_v6_.value_or(true) ? !v6_.empty() : v4_.empty();
  auto& from = v6 ? v6_ : v4_;
  endpoint t = std::move(from.front());
  from.pop_front();
  next_v6_ = !v6;
  return t;
}

int poll_timeout_ms(const std::optional<clock::time_point>& deadline) noexcept {
  if (!deadline) return -1;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - clock::now()).count();
  if (left <= 0) return 0;
  return left > 0x7fffffff ? 0x7fffffff : static_cast<int>(left);
}

int poll_one(int fd, short events, const std::optional<clock::time_point>& deadline) noexcept {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, poll_timeout_ms(deadline));
    if (rc > 0) return p.revents;
    if (rc == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

dropped_input discard_unread_input(int fd, std::size_t limit) noexcept {
  char buf[16384];
  dropped_input d;
  while (d.bytes < limit) {  // then the caller checks its deadline again, should it flood
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      d.bytes += static_cast<std::size_t>(n);
      continue;
    }
    d.ended = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    break;
  }
  return d;
}

std::size_t unsent_bytes(int fd) noexcept {
  int n = 0;
  return ::ioctl(fd, SIOCOUTQNSD, &n) == 0 && n > 0 ? static_cast<std::size_t>(n) : 0;
}

void report_when_all_sent(int fd) noexcept {
  int lowat = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
}

void wait_until_sent(int fd, clock::time_point deadline) noexcept {
  if (unsent_bytes(fd) == 0) return;
  report_when_all_sent(fd);
  for (;;) {
    // In slices, so that the unsent count is checked again even if a wake-up is missed.
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
    if (left <= 0) return;
    pollfd p{fd, POLLIN | POLLOUT, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 50)));
    if (rc < 0 && errno != EINTR) return;
    if (rc > 0 && (p.revents & (POLLERR | POLLNVAL))) return;
    if (rc > 0 && (p.revents & (POLLIN | POLLHUP)) && discard_unread_input(fd).ended) return;
    if (unsent_bytes(fd) == 0) return;
  }
}

}  // namespace detail

namespace {

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// getaddrinfo's EAI_* codes as error_codes.
class gai_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int ev) const override { return ::gai_strerror(ev); }
};
const std::error_category& gai_category() {
  static const gai_category_impl c;
  return c;
}

struct addrinfo_deleter {
  void operator()(addrinfo* p) const noexcept { ::freeaddrinfo(p); }
};
using addrinfo_ptr = std::unique_ptr<addrinfo, addrinfo_deleter>;

int family_of(address_family f) {
  switch (f) {
    case address_family::ipv4: return AF_INET;
    case address_family::ipv6: return AF_INET6;
    case address_family::any: break;
  }
  return AF_UNSPEC;
}

// getaddrinfo with our conventions; returns the EAI code (0 on success), errno in sys_errno.
int lookup(std::string_view host, std::string_view service, address_family family, int flags, addrinfo_ptr& out,
           int& sys_errno) {
  addrinfo hints{};
  hints.ai_family = family_of(family);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = flags;
  if (all_digits(service)) hints.ai_flags |= AI_NUMERICSERV;
  if (ip_address::try_parse(host)) hints.ai_flags |= AI_NUMERICHOST;
  std::string h(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string s(service.empty() ? std::string_view("0") : service);
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(h.empty() ? nullptr : h.c_str(), s.c_str(), &hints, &res);
  sys_errno = errno;
  out.reset(res);
  return rc;
}

}  // namespace

std::uint16_t resolve_service(std::string_view service) {
  if (service.empty()) return 0;
  if (all_digits(service)) {
    if (service.size() > 5 || std::stoul(std::string(service)) > 65535)
      throw socket_connect_error(std::make_error_code(std::errc::invalid_argument),
                                 "resolve service " + std::string(service) + ": port out of range");
    return static_cast<std::uint16_t>(std::stoul(std::string(service)));
  }
  servent result{};
  servent* found = nullptr;
  char buf[1024];
  std::string s(service);
  if (::getservbyname_r(s.c_str(), "tcp", &result, buf, sizeof buf, &found) != 0 || found == nullptr)
    throw socket_connect_error(std::make_error_code(std::errc::invalid_argument),
                               "resolve service " + s + ": unknown service");
  return ntohs(static_cast<std::uint16_t>(found->s_port));
}

std::vector<endpoint> resolve(std::string_view host, std::string_view service, address_family family) {
  addrinfo_ptr res;
  int sys_errno = 0;
  int rc = lookup(host, service, family, 0, res, sys_errno);
  std::string what = "resolve " + detail::host_port_text(host, service);
  if (rc == EAI_SYSTEM) throw socket_connect_error(detail::errno_code(sys_errno), what);
  if (rc != 0) throw socket_connect_error({rc, gai_category()}, what);
  std::vector<endpoint> out;
  for (addrinfo* ai = res.get(); ai != nullptr; ai = ai->ai_next) {
    auto ep = detail::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
    if (ep && std::find(out.begin(), out.end(), *ep) == out.end()) out.push_back(*ep);
  }
  if (out.empty())
    throw socket_connect_error({EAI_NONAME, gai_category()}, what);
  return out;
}

std::vector<ip_address> get_host_addresses(std::string_view host, address_family family) {
  addrinfo_ptr res;
  int sys_errno = 0;
  std::vector<ip_address> out;
  if (lookup(host, "0", family, 0, res, sys_errno) != 0) return out;
  for (addrinfo* ai = res.get(); ai != nullptr; ai = ai->ai_next) {
    auto ep = detail::from_sockaddr(ai->ai_addr, ai->ai_addrlen);
    if (ep && std::find(out.begin(), out.end(), ep->address) == out.end()) out.push_back(ep->address);
  }
  return out;
}

}  // namespace comm
