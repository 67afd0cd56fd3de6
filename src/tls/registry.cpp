// Native reference -> open connection, for find_ssl_connection_from_ssl_ref. Engines register
// while their connection is open; the lookup is by the native handle's address.
#include <map>
#include <mutex>

#include "tls/engine.hpp"

namespace comm {
namespace detail {
namespace {

const void* address_of(const ssl_ref& ref) noexcept {
  return std::visit([](const auto& r) -> const void* { return r.ptr; }, ref);
}

struct entry {
  ssl_connection* connection = nullptr;
  const tls_engine* engine = nullptr;  // when set, its owner is the answer
  ssl_connection* get() const noexcept { return engine ? engine->owner : connection; }
};
struct registry {
  std::mutex mutex;
  std::map<const void*, entry> connections;
};

registry& the_registry() {
  static registry r;  // never destroyed before engines: function-local static outlives callers' statics
  return r;
}

}  // namespace

void register_connection(const ssl_ref& ref, ssl_connection* conn) {
  const void* key = address_of(ref);
  if (key == nullptr) return;
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  // An engine registered itself already: its owner follows moves of the connection, keep that.
  if (auto it = r.connections.find(key); it != r.connections.end() && it->second.engine) return;
  r.connections[key] = entry{conn, nullptr};
}

void register_engine(const ssl_ref& ref, const tls_engine* engine) {
  const void* key = address_of(ref);
  if (key == nullptr) return;
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  r.connections[key] = entry{nullptr, engine};
}

void unregister_connection(const ssl_ref& ref) noexcept {
  const void* key = address_of(ref);
  if (key == nullptr) return;
  auto& r = the_registry();
  std::lock_guard lock(r.mutex);
  r.connections.erase(key);
}

}  // namespace detail

ssl_connection* find_ssl_connection_from_ssl_ref(const ssl_ref& ref) noexcept {
  const void* key = detail::address_of(ref);
  if (key == nullptr) return nullptr;
  auto& r = detail::the_registry();
  std::lock_guard lock(r.mutex);
  auto it = r.connections.find(key);
  return it == r.connections.end() ? nullptr : it->second.get();
}

}  // namespace comm
