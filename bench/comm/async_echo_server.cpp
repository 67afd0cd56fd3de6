// comm async echo server, the counterpart of bench/asio/echo_server.cpp: per connection a
// 1024-byte buffer; read_with_checking (max_read 1024) takes what arrived, write_buffer sends it
// back, then the next read. --loops=N: N collections on N threads sharing the port (SO_REUSEPORT).
#include <cstring>

#include "async_common.hpp"

namespace {

using buffer = std::array<std::byte, 1024>;

void close_state(comm::async_io_state& s) { comm::close_async_io_state(s); }

void echo(comm::async_io_state& state, std::shared_ptr<buffer> buf) {
  comm::read_with_checking_options ro;
  ro.max_read = buf->size();
  ro.error_callback = [](comm::async_io_state& s, std::span<const std::byte>) { close_state(s); };
  comm::async_io_state_read_with_checking(
      state,
      [buf](comm::async_io_state& s, std::span<const std::byte> data) {
        std::size_t n = std::min(data.size(), buf->size());
        std::memcpy(buf->data(), data.data(), n);
        comm::async_io_state_finish(s, n);
        comm::write_buffer_options wo;
        wo.error_callback = [](comm::async_io_state& s2, std::size_t) { close_state(s2); };
        comm::async_io_state_write_buffer(
            s, std::span<const std::byte>(buf->data(), n), [buf](comm::async_io_state& s2, std::size_t) { echo(s2, buf); },
            std::move(wo));
      },
      std::move(ro));
}

}  // namespace

int main(int argc, char** argv) try {
  bench::args a(argc, argv);
  bench::limit_lifetime(a);
  return bench_comm::run_async_server(
      a, [](comm::accepting_handle&, comm::async_io_state& s) { echo(s, std::make_shared<buffer>()); },
      static_cast<std::size_t>(std::max<long long>(1, a.num("loops", 1))));
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_comm_async_echo_server: %s\n", e.what());
  return 1;
}
