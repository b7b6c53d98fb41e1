// The daemon's socket servers, run by its single-threaded epoll loop: the control socket (one line in, one
// answer out) and the Prometheus metrics endpoint (HTTP/1.x, GET /metrics).
//
// Each server keeps its listening socket and its connections in an epoll fd of its own; fd() is that epoll
// fd, itself pollable, so the daemon adds one fd per server to its loop and calls on_readable() when it is
// readable, and tick() every 100 ms or so. Nothing blocks: a request is read as it arrives, an answer the
// socket cannot take at once is kept and written as the socket drains.
//
// Every connection answers one request. Once the answer is written our side shuts down (the client reads its
// end) and the connection closes at the client's EOF, so nothing it sends late can reset it (TCP) before it
// has read the answer. Clients are bounded, as local processes and scrapers may be broken or hostile: a
// request has the idle timeout to arrive whole, and at most kMaxRequestBytes; an answer must drain by some
// bytes every idle timeout; at most kMaxConnections are open (past that, new ones are closed at once).
//
// Not thread-safe: one thread calls everything.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace portcullis::control {

inline constexpr std::chrono::milliseconds kDefaultIdleTimeout{5000};
inline constexpr size_t kMaxRequestBytes = size_t{64} * 1024;
inline constexpr size_t kMaxConnections = 64;

// A listening socket and its connections on an epoll fd of their own, one request and one answer each. A
// request ends at `request_end` ("\n" for a line, "\r\n\r\n" for an HTTP head); what it means is the
// responder's.
class StreamServer {
 public:
  // Called once per connection that sends something: with the request up to and including `request_end`
  // (complete), or with everything received when the client shut its side down before that (not complete).
  // Returns the whole answer, or nullopt to close the connection unanswered.
  using Responder = std::function<std::optional<std::string>(std::string_view request, bool complete)>;

  // Takes `listen_fd` (listening, non-blocking) and closes it. Throws std::runtime_error without an epoll fd.
  StreamServer(int listen_fd, std::string request_end, Responder responder, std::chrono::milliseconds idle_timeout);
  ~StreamServer();
  StreamServer(const StreamServer&) = delete;
  StreamServer& operator=(const StreamServer&) = delete;

  int fd() const { return epoll_fd_; }
  // What is ready now: accepts, reads, answers, closes; then closes the connections past their timeout. One
  // batch of events at most: what is left keeps fd() readable for the loop's next turn.
  void on_readable();
  // Closes the connections past their timeout.
  void tick();
  size_t connections() const { return connections_.size(); }

 private:
  struct Connection {
    std::string received;
    size_t searched = 0;  // of received: where request_end is not
    std::optional<std::string> answer;
    size_t written = 0;       // of the answer
    size_t received_all = 0;  // every byte read, the request and anything after it
    bool peer_done = false;   // read EOF
    bool shut_down = false;   // the whole answer is written and our side shut down
    uint32_t events = 0;      // what epoll watches for
    std::chrono::steady_clock::time_point deadline;
  };

  void accept_all();
  void on_event(int fd, uint32_t events);
  // Each returns false when the connection is to be closed.
  bool read_from(int fd, Connection& connection);
  bool write_to(int fd, Connection& connection);
  bool watch(int fd, Connection& connection);
  void close_connection(int fd);
  void expire();
  void watch_listener(bool on);

  int listen_fd_;
  int epoll_fd_ = -1;
  std::string request_end_;
  Responder responder_;
  std::chrono::milliseconds idle_timeout_;
  bool listener_paused_ = false;  // out of file descriptors: accepting again at the next tick
  std::unordered_map<int, Connection> connections_;
};

// The control socket: a Unix stream socket, mode 0600 (root only), one line per connection ('\n' ends it; a
// '\r' before it is dropped) given to `handler`, whose answer is written back whole before the connection
// closes. An exception from the handler is answered "error: <what>\n".
class UnixControlServer {
 public:
  using Handler = std::function<std::string(const std::string& request_line)>;

  // Binds at `path`, replacing a stale socket there (one nobody listens on). Throws std::runtime_error when
  // `path` is something other than a socket, when another process listens on it, or when it cannot bind.
  UnixControlServer(std::string path, Handler handler, std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout);
  // Closes every connection and removes the socket file, if it is still the one this server made.
  ~UnixControlServer();
  UnixControlServer(const UnixControlServer&) = delete;
  UnixControlServer& operator=(const UnixControlServer&) = delete;

  int fd() const { return server_->fd(); }
  void on_readable() { server_->on_readable(); }
  void tick() { server_->tick(); }
  const std::string& path() const { return path_; }
  size_t connections() const { return server_->connections(); }

 private:
  void remove_socket_file() const;

  std::string path_;
  Handler handler_;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  std::optional<StreamServer> server_;
};

// The Prometheus endpoint: GET (or HEAD) /metrics answers 200 with `render()` as a text/plain; version=0.0.4
// body; other paths 404, other methods on /metrics 405, a request line that is not HTTP/1.0 or 1.1 400, a
// render() that throws 500. Every answer closes the connection.
class HttpMetricsServer {
 public:
  using Renderer = std::function<std::string()>;

  // `address` is "IPv4:PORT" (127.0.0.1:9464) or "[IPv6]:PORT" ([::1]:9464); port 0 takes a free one. Throws
  // std::invalid_argument for an address of another form, std::runtime_error when it cannot listen there.
  HttpMetricsServer(const std::string& address, Renderer render,
                    std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout);
  HttpMetricsServer(const HttpMetricsServer&) = delete;
  HttpMetricsServer& operator=(const HttpMetricsServer&) = delete;

  int fd() const { return server_->fd(); }
  void on_readable() { server_->on_readable(); }
  void tick() { server_->tick(); }
  uint16_t port() const { return port_; }
  size_t connections() const { return server_->connections(); }

 private:
  std::optional<std::string> respond(std::string_view request, bool complete) const;

  Renderer render_;
  uint16_t port_ = 0;
  std::optional<StreamServer> server_;
};

}  // namespace portcullis::control
