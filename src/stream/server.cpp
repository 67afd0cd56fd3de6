// start_up_server / server_terminate: an accept thread and a bounded pool of handler threads.
//
// The accept thread polls the listener and an eventfd that says "stop". Accepted sockets queue for
// the pool (at most max_connections accepted-but-unfinished; beyond that they are closed at once);
// workers are started on demand up to max_threads. While a handler runs, the pool keeps a dup() of
// its socket so that server_terminate can shutdown(2) it and unblock the handler, without racing
// with a handler that closes its own stream.
#include <poll.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "stream/stream_core.hpp"

namespace comm {

struct server::impl {
  connection_handler handler;
  server_options options;
  tcp_listener listener;
  socket_handle stop_event;  // eventfd
  std::uint16_t port = 0;
  std::atomic<bool> alive{true};

  std::mutex mutex;
  std::condition_variable cv;
  bool stopping = false;
  std::deque<socket_handle> queue;
  std::size_t running = 0;
  std::size_t idle = 0;
  std::vector<std::thread> workers;
  std::map<std::uint64_t, socket_handle> active;  // dup of each running handler's socket
  std::uint64_t next_id = 0;

  std::mutex join_mutex;
  std::thread acceptor;

  void accept_loop(const std::shared_ptr<impl>& self);
  void worker_loop();
  void serve(socket_handle socket);
  void request_stop() noexcept;
  void join_all() noexcept;
};

namespace {
thread_local const server::impl* current_server = nullptr;
thread_local std::uint64_t current_connection = 0;  // the handler's own, spared by a stop from inside

void name_thread(const std::string& name) {
  std::string n = name.substr(0, 15);
  ::pthread_setname_np(::pthread_self(), n.c_str());
}
}  // namespace

void server::impl::accept_loop(const std::shared_ptr<impl>& self) {
  current_server = this;
  name_thread(options.name);
  for (;;) {
    pollfd fds[2] = {{listener.native_handle(), POLLIN, 0}, {stop_event.get(), POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || (fds[1].revents & POLLIN)) break;
    std::optional<socket_handle> s;
    try {
      s = listener.accept(milliseconds(0));
    } catch (const socket_error&) {
      // EMFILE and the like: the client waits in the backlog. Back off (waking at once on stop)
      // instead of spinning on a listener that stays readable.
      pollfd stop{stop_event.get(), POLLIN, 0};
      if (::poll(&stop, 1, 100) > 0) break;
      continue;
    }
    if (!s) continue;
    {
      std::lock_guard lock(mutex);
      if (stopping) break;
      if (queue.size() + running >= options.max_connections) continue;  // closed at once
      queue.push_back(std::move(*s));
      if (idle == 0 && workers.size() < options.max_threads) {
        try {
          workers.emplace_back([this, self] { worker_loop(); });
        } catch (...) {
          if (workers.empty()) queue.clear();  // no thread at all could serve it
        }
      }
    }
    // Notified after the unlock: a worker woken under the lock would at once block on it again.
    cv.notify_one();
  }
  listener.close();  // the port is free as soon as accepting stops, even before the joins
}

void server::impl::worker_loop() {
  current_server = this;
  name_thread(options.name);
  std::unique_lock lock(mutex);
  for (;;) {
    ++idle;
    cv.wait(lock, [&] { return stopping || !queue.empty(); });
    --idle;
    if (stopping) break;
    socket_handle s = std::move(queue.front());
    queue.pop_front();
    ++running;
    lock.unlock();
    serve(std::move(s));
    lock.lock();
    --running;
  }
}

void server::impl::serve(socket_handle socket) {
  std::uint64_t id = 0;
  {
    socket_handle watch(::fcntl(socket.get(), F_DUPFD_CLOEXEC, 0));
    std::lock_guard lock(mutex);
    if (stopping) return;
    id = ++next_id;
    if (watch) active.emplace(id, std::move(watch));
  }
  current_connection = id;
  try {
    socket_stream stream(std::move(socket), options.stream);
    bool ready = true;
    if (options.ssl_ctx) {
      attach_ssl_options tls;
      tls.ssl_ctx = options.ssl_ctx;
      tls.ssl_side = ssl_side::server;
      tls.handshake_timeout = options.handshake_timeout;
      try {
        attach_ssl(stream, std::move(tls));
      } catch (const std::exception& e) {
        ready = false;  // a failed handshake concerns this client only
        if (options.tls_error_callback) {
          try {
            options.tls_error_callback(e);
          } catch (...) {
          }
        }
      }
    }
    if (ready) {
      try {
        handler(stream);
      } catch (...) {
        if (options.handler_error_callback) {
          try {
            options.handler_error_callback(std::current_exception());
          } catch (...) {
          }
        }
      }
    }
  } catch (...) {
    // Wrapping the socket failed (out of memory): the connection is dropped.
  }
  current_connection = 0;
  std::lock_guard lock(mutex);
  active.erase(id);
}

void server::impl::request_stop() noexcept {
  std::lock_guard lock(mutex);
  if (!stopping) {
    stopping = true;
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_event.get(), &one, sizeof one);
    queue.clear();  // accepted but not started: closed
  }
  for (auto& [id, fd] : active)
    if (id != current_connection) ::shutdown(fd.get(), SHUT_RDWR);
  cv.notify_all();
}

void server::impl::join_all() noexcept {
  std::lock_guard join_lock(join_mutex);
  if (acceptor.joinable()) {
    if (acceptor.get_id() == std::this_thread::get_id())
      acceptor.detach();
    else
      acceptor.join();
  }
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex);
    threads.swap(workers);
  }
  for (auto& t : threads) {
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // destroyed from inside a handler: this thread ends on its own
    else
      t.join();
  }
  listener.close();
  stop_event.reset();
}

server start_up_server(connection_handler handler, server_options options) {
  auto p = std::make_shared<server::impl>();
  try {
    listen_options lo;
    lo.address = options.address;
    lo.backlog = options.backlog;
    lo.reuseport = options.reuseport;
    lo.nodelay = options.nodelay;
    lo.keepalive = options.keepalive;
    lo.family = options.family;
    p->listener = tcp_listener::open(options.service, lo);
    p->port = p->listener.local_port();
    p->stop_event.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!p->stop_event)
      throw socket_create_error(detail::errno_code(errno), "start_up_server " + options.name + ": eventfd");
  } catch (...) {
    if (options.announce) options.announce(0, std::current_exception());
    throw;
  }
  if (options.max_threads == 0) options.max_threads = 1;
  p->handler = std::move(handler);
  p->options = std::move(options);
  p->acceptor = std::thread([p] { p->accept_loop(p); });
  server s;
  s.impl_ = p;
  if (p->options.announce) p->options.announce(p->port, nullptr);
  return s;
}

bool server_terminate(server& s) {
  if (!s.impl_) return false;
  auto& p = *s.impl_;
  bool was_alive = p.alive.exchange(false);
  p.request_stop();
  // From inside one of its own threads the joins wait for a later terminate or the destructor.
  if (current_server != &p) p.join_all();
  return was_alive;
}

server::server(server&&) noexcept = default;

server& server::operator=(server&& o) noexcept {
  if (this != &o) {
    if (impl_) server_terminate(*this);
    impl_ = std::move(o.impl_);
  }
  return *this;
}

server::~server() {
  if (!impl_) return;
  impl_->alive = false;
  impl_->request_stop();
  impl_->join_all();  // detaches the calling thread if it is one of the server's own
}

std::uint16_t server::local_port() const noexcept { return impl_ ? impl_->port : 0; }
bool server::alive() const noexcept { return impl_ && impl_->alive; }

}  // namespace comm
