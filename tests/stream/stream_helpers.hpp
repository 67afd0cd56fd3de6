// Helpers of the stream tests: a connected pair of streams, descriptor counts, digests.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "comm/stream.hpp"

namespace stream_test {

using namespace std::chrono_literals;

// A client stream and the server side of the same loopback connection.
inline std::pair<comm::socket_stream, comm::socket_stream> connected_pair(comm::stream_options options = {},
                                                                          const std::string& address = "127.0.0.1") {
  auto listener = comm::tcp_listener::open("0", {.address = address});
  comm::socket_handle c = comm::connect_to_tcp_server(address, std::to_string(listener.local_port()));
  auto s = listener.accept(std::chrono::seconds(5));
  if (!s) throw std::runtime_error("accept timed out");
  return {comm::socket_stream(std::move(c), options), comm::socket_stream(std::move(*s), options)};
}

inline int open_fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

inline std::string sha256_hex(const void* data, std::size_t size) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(static_cast<const unsigned char*>(data), size, md);
  std::string hex;
  char b[3];
  for (unsigned char c : md) {
    std::snprintf(b, sizeof b, "%02x", c);
    hex += b;
  }
  return hex;
}

inline std::vector<char> random_bytes(std::size_t n, unsigned seed = 1) {
  std::vector<char> v(n);
  std::mt19937_64 rng(seed);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    auto r = rng();
    std::memcpy(v.data() + i, &r, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<char>(rng());
  return v;
}

// The unformatted iostream calls on a connected pair, plain or TLS: put() a byte at a time past
// the end of the output buffer (overflow), read() of more than one buffer (several reads), in_avail()
// over bytes already received, and read() at the end of the stream.
inline void check_unformatted_io(comm::socket_stream& client, comm::socket_stream& server) {
  const std::vector<char> data = random_bytes(100 * 1024, 7);  // six and a quarter 16 KiB buffers
  std::thread writer([&] {
    for (char c : data) client.put(c);
    client << "tail";
    client.flush();
    comm::socket_stream_shutdown(client, comm::direction::output);
  });
  std::vector<char> got(data.size());
  server.read(got.data(), static_cast<std::streamsize>(got.size()));
  EXPECT_EQ(server.gcount(), static_cast<std::streamsize>(data.size()));
  EXPECT_TRUE(got == data) << "the bytes read differ from those put";
  EXPECT_EQ(server.get(), 't');
  EXPECT_EQ(server.rdbuf()->in_avail(), 3);  // "ail" came with the 't', in one write
  char rest[10] = {};
  server.read(rest, sizeof rest);
  EXPECT_EQ(server.gcount(), 3);
  EXPECT_EQ(std::string(rest, 3), "ail");
  EXPECT_TRUE(server.eof());
  EXPECT_TRUE(server.fail());
  writer.join();
  EXPECT_TRUE(client.good());
}

}  // namespace stream_test
