// Verified-chain cache of a realised context (both implementations). A full TLS 1.3 handshake
// spends a good part of the verifying side's CPU on checking the peer's chain: decoding, chain
// building and the issuer's signature on each certificate. A client that connects to the same
// servers again and again gets the same chain each time. Once a chain has verified for a host name,
// the same bytes for the same name are accepted again without repeating that work, for at most
// `ttl` and never past the earliest notAfter of the certificates involved (as browsers' certificate
// verifiers do). What stays on every handshake: the peer's proof of its key (CertificateVerify) and
// the user's verify_callback. Only successes are kept, so a failure is always reported by the
// library's own checks with its exact reason.
//
// The key is the verification's whole input besides the context: side, host name and each
// certificate's DER bytes (compared in full, not by a hash). The context's trust, CRL and policy
// settings never change while it lives (a reset realises a new context with an empty cache), and
// a context whose native objects a user callback may touch has no cache at all.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "comm/tls.hpp"

namespace comm::detail {

class verified_chain_cache {
 public:
  using clock = std::chrono::system_clock;
  static constexpr std::size_t default_capacity = 1024;

  explicit verified_chain_cache(std::chrono::seconds ttl, std::size_t capacity = default_capacity)
      : ttl_(ttl), capacity_(capacity) {}

  std::chrono::seconds ttl() const noexcept { return ttl_; }

  // The key of one verification. Parts are length-prefixed so that no two inputs share a key.
  static std::string key(ssl_side side, std::string_view host_name) {
    std::string k;
    k.reserve(2048);
    k.push_back(side == ssl_side::client ? 'c' : 's');
    add_part(k, {reinterpret_cast<const unsigned char*>(host_name.data()), host_name.size()});
    return k;
  }
  static void add_certificate(std::string& key, std::span<const unsigned char> der) { add_part(key, der); }

  // True when the chain verified before and its entry has not expired (an expired one is dropped).
  bool contains(const std::string& key, clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    if (now < it->second) return true;
    entries_.erase(it);
    return false;
  }

  // Keeps a chain that verified at `now` until `now + ttl` or `not_after`, whichever comes first.
  void insert(std::string key, clock::time_point now, clock::time_point not_after) {
    const clock::time_point until = std::min(now + ttl_, not_after);
    if (until <= now) return;
    std::lock_guard lock(mutex_);
    if (entries_.size() >= capacity_ && entries_.find(key) == entries_.end()) {
      std::erase_if(entries_, [now](const auto& e) { return !(now < e.second); });
      if (entries_.size() >= capacity_) entries_.clear();  // rare: many distinct live chains
    }
    entries_.insert_or_assign(std::move(key), until);
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
  }

 private:
  static void add_part(std::string& k, std::span<const unsigned char> bytes) {
    const auto n = static_cast<std::uint32_t>(bytes.size());
    for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<char>((n >> shift) & 0xff));
    k.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }

  const std::chrono::seconds ttl_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, clock::time_point> entries_;
};

}  // namespace comm::detail
