// Address and service parsing: ip_address::parse / try_parse must agree, and a parsed address must
// survive a round trip through to_string; resolve_service on arbitrary text must give a port or a
// socket_connect_error, never a crash. (resolve() with a host is left out: it would ask DNS.)
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "comm/net.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 512) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::optional<comm::ip_address> a = comm::ip_address::try_parse(text);
  bool threw = false;
  try {
    comm::ip_address b = comm::ip_address::parse(text);
    if (!a || !(b == *a)) std::abort();
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  if (threw == a.has_value()) std::abort();
  if (a) {
    const std::string s = a->to_string();
    auto again = comm::ip_address::try_parse(s);
    if (!again || !(*again == *a)) std::abort();
    (void)a->is_loopback();
    (void)a->is_unspecified();
    comm::endpoint e{*a, 443};
    (void)e.to_string();
  }
  // Only short texts: a service name lookup reads /etc/services, which is local and bounded.
  if (size <= 64 && text.find('\0') == std::string_view::npos) {
    try {
      (void)comm::resolve_service(text);
    } catch (const comm::socket_connect_error&) {
    }
  }
  return 0;
}
