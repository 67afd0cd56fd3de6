// Shared by the fault tests: TLS contexts per implementation, the fault plans of each chunking
// mode, and the parameter names.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <exception>
#include <string>
#include <tuple>

#include "comm/comm.hpp"
#include "fault/socket_faults.hpp"
#include "peers/implementations.hpp"

namespace fault_test {

inline const comm::demo_credentials& creds() { return comm_test::demo_credentials_for_loopback(); }

inline comm::ssl_abstract_context server_ctx(comm::ssl_implementation impl) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.cert_pem = creds().cert_pem;
  o.key_pem = creds().key_pem;
  return comm::create_ssl_server_context(std::move(o));
}

inline comm::ssl_abstract_context client_ctx(comm::ssl_implementation impl) {
  comm::ssl_context_options o;
  o.implementation = impl;
  o.trusted_pem = creds().ca_cert_pem;
  o.use_system_trusted = false;
  o.session_resumption = false;
  return comm::create_ssl_client_context(std::move(o));
}

// Every fault of the mode: EINTR and EAGAIN at random points, and reads and writes split either
// one byte at a time or at random sizes.
inline fault::plan plan_for(fault::chunking mode, std::uint64_t seed) {
  fault::plan p;
  p.reads = p.writes = mode;
  p.seed = seed;
  return p;
}

// Watched (its sends and receives are counted) but nothing injected: whole reads and writes, no
// EINTR, no EAGAIN, no cut.
inline fault::plan calm_plan() {
  fault::plan p;
  p.reads = p.writes = fault::chunking::whole;
  p.eintr = p.eagain = false;
  return p;
}

inline std::string chunking_name(fault::chunking c) {
  switch (c) {
    case fault::chunking::whole: return "whole";
    case fault::chunking::one_byte: return "one_byte";
    case fault::chunking::random: return "random";
  }
  return "?";
}

inline std::string error_text(std::exception_ptr e) {
  if (!e) return "no error";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

// The two implementations on each side, a chunking mode and a seed.
using echo_param = std::tuple<comm::ssl_implementation, comm::ssl_implementation, fault::chunking, std::uint64_t>;

struct echo_param_name {
  template <class Info>
  std::string operator()(const Info& info) const {
    auto [client, server, mode, seed] = info.param;
    return std::string(comm::to_string(client)) + "_to_" + std::string(comm::to_string(server)) + "_" +
           chunking_name(mode) + "_seed" + std::to_string(seed);
  }
};

// Every client x server implementation pair, both chunking modes, seeds 1 and 2.
inline auto echo_params() {
  return ::testing::Combine(::testing::ValuesIn(comm_test::tested_implementations()),
                            ::testing::ValuesIn(comm_test::tested_implementations()),
                            ::testing::Values(fault::chunking::random, fault::chunking::one_byte),
                            ::testing::Values(std::uint64_t{1}, std::uint64_t{2}));
}

// One implementation on both sides with more seeds (random splits).
using seed_param = std::tuple<comm::ssl_implementation, std::uint64_t>;
inline auto seed_params() {
  return ::testing::Combine(::testing::ValuesIn(comm_test::tested_implementations()),
                            ::testing::Values(std::uint64_t{3}, std::uint64_t{4}, std::uint64_t{5}, std::uint64_t{6}));
}
struct seed_param_name {
  template <class Info>
  std::string operator()(const Info& info) const {
    return std::string(comm::to_string(std::get<0>(info.param))) + "_seed" + std::to_string(std::get<1>(info.param));
  }
};

// Every client x server implementation pair, cut by a FIN or a reset.
inline auto cut_params() {
  return ::testing::Combine(::testing::ValuesIn(comm_test::tested_implementations()),
                            ::testing::ValuesIn(comm_test::tested_implementations()),
                            ::testing::Values(fault::cut_kind::fin, fault::cut_kind::reset));
}
struct cut_param_name {
  template <class Info>
  std::string operator()(const Info& info) const {
    return std::string(comm::to_string(std::get<0>(info.param))) + "_to_" +
           std::string(comm::to_string(std::get<1>(info.param))) +
           (std::get<2>(info.param) == fault::cut_kind::fin ? "_fin" : "_reset");
  }
};

// A TLS connection cut mid-stream must end in ssl_failure with ssl_errc::truncated.
inline void expect_truncated(std::exception_ptr error) {
  ASSERT_TRUE(error) << "a cut TLS connection ended without an error";
  try {
    std::rethrow_exception(error);
  } catch (const comm::ssl_failure& e) {
    EXPECT_EQ(static_cast<const std::system_error&>(e).code(), comm::make_error_code(comm::ssl_errc::truncated))
        << e.what();
    EXPECT_EQ(e.code().kind, comm::ssl_code_kind::truncated) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ssl_failure (truncated), got: " << e.what();
  }
}

// Payload size per mode: one byte at a time costs a system call (and a TCP segment) per byte.
inline std::size_t payload_size(fault::chunking mode) {
  return mode == fault::chunking::one_byte ? 24 * 1024 : 256 * 1024;
}

}  // namespace fault_test
