// The model forbids handing an adopted native connection to a call that connects first: if the
// connect failed nothing could free it. comm makes that combination fail to compile; these
// assertions are the proof (the file does not build if the API ever allows it).
#include <comm/comm.hpp>
#include <gtest/gtest.h>

#include <type_traits>

namespace {

using comm::adopted_gnutls_session;
using comm::adopted_ssl_pointer;

// Where a stream already exists (attach_ssl, socket_stream's constructor) adoption is allowed.
static_assert(std::is_constructible_v<comm::ssl_ctx_spec, adopted_ssl_pointer&&>);
static_assert(std::is_constructible_v<comm::ssl_ctx_spec, adopted_gnutls_session&&>);
// Where a connect comes first (open_tcp_stream, the async connect), it does not compile.
static_assert(!std::is_constructible_v<comm::client_ssl_ctx_spec, adopted_ssl_pointer&&>);
static_assert(!std::is_constructible_v<comm::client_ssl_ctx_spec, adopted_gnutls_session&&>);
static_assert(!std::is_assignable_v<decltype(comm::open_tcp_stream_options::ssl_ctx)&, adopted_ssl_pointer&&>);
static_assert(!std::is_assignable_v<decltype(comm::async_connect_options::ssl_ctx)&, adopted_ssl_pointer&&>);
static_assert(!std::is_assignable_v<decltype(comm::async_connect_options::ssl_ctx)&, adopted_gnutls_session&&>);
// Borrowed contexts and abstract contexts are fine there.
static_assert(std::is_assignable_v<decltype(comm::open_tcp_stream_options::ssl_ctx)&, comm::ssl_ctx_pointer>);
static_assert(std::is_assignable_v<decltype(comm::open_tcp_stream_options::ssl_ctx)&, comm::ssl_abstract_context>);
// Ownership is unique: an adopted handle moves, never copies, so it is freed exactly once.
static_assert(!std::is_copy_constructible_v<adopted_ssl_pointer>);
static_assert(!std::is_copy_constructible_v<adopted_gnutls_session>);
static_assert(std::is_nothrow_move_constructible_v<adopted_ssl_pointer>);
static_assert(!std::is_copy_constructible_v<comm::native_certificate>);

TEST(AdoptionTypes, NullHandlesAreRefusedAtConstruction) {
  EXPECT_THROW(adopted_ssl_pointer(nullptr), std::invalid_argument);
  EXPECT_THROW(adopted_gnutls_session(nullptr), std::invalid_argument);
}

}  // namespace
