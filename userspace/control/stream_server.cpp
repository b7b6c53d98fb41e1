#include "control/stream_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace portcullis::control {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 16;

std::string error_text(int error) {
  return std::strerror(error);
}

}  // namespace

StreamServer::StreamServer(int listen_fd, std::string request_end, Responder responder,
                           std::chrono::milliseconds idle_timeout)
    : listen_fd_(listen_fd),
      request_end_(std::move(request_end)),
      responder_(std::move(responder)),
      idle_timeout_(idle_timeout) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = listen_fd_;
  if (epoll_fd_ < 0 || ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &event) != 0) {
    const int error = errno;
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    ::close(listen_fd_);
    throw std::runtime_error("cannot watch a listening socket with epoll: " + error_text(error));
  }
}

StreamServer::~StreamServer() {
  for (const auto& [fd, connection] : connections_) ::close(fd);
  ::close(listen_fd_);
  ::close(epoll_fd_);
}

void StreamServer::on_readable() {
  // One batch: whatever is left keeps fd() readable for the loop's next turn, so the loop's other work is not
  // starved. Each fd appears at most once per batch, so closing one never invalidates a later event.
  epoll_event events[kMaxConnections + 1];
  const int count = ::epoll_wait(epoll_fd_, events, static_cast<int>(std::size(events)), 0);
  for (int i = 0; i < count; ++i) {
    if (events[i].data.fd == listen_fd_) {
      accept_all();
    } else {
      on_event(events[i].data.fd, events[i].events);
    }
  }
  expire();
}

void StreamServer::tick() {
  if (listener_paused_) watch_listener(true);
  expire();
}

void StreamServer::accept_all() {
  for (size_t accepted = 0; accepted < kMaxConnections; ++accepted) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors or memory: the listener would stay readable and spin the loop. Left alone until
      // the next tick, the pending connections wait in the backlog.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) watch_listener(false);
      return;
    }
    if (connections_.size() >= kMaxConnections) {
      ::close(fd);
      continue;
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      ::close(fd);
      continue;
    }
    Connection& connection = connections_[fd];
    connection.events = EPOLLIN;
    connection.deadline = Clock::now() + idle_timeout_;  // for the whole request
  }
}

void StreamServer::on_event(int fd, uint32_t events) {
  const auto it = connections_.find(fd);
  if (it == connections_.end()) return;
  Connection& connection = it->second;
  bool keep = true;
  // A hang-up or an error shows as the read's EOF or error.
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && !connection.peer_done) keep = read_from(fd, connection);
  if (keep && connection.answer) keep = write_to(fd, connection);
  if (!keep) close_connection(fd);
}

bool StreamServer::read_from(int fd, Connection& connection) {
  char buffer[16 * 1024];
  bool progressed = false;
  while (!connection.peer_done) {
    const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    progressed = true;
    if (got == 0) {
      connection.peer_done = true;
      break;
    }
    connection.received_all += static_cast<size_t>(got);
    if (connection.received_all > kMaxRequestBytes) return false;
    // Once answered, what else comes is read only to be dropped: unread bytes at close would reset the
    // connection (TCP) before the client has read the answer.
    if (!connection.answer) connection.received.append(buffer, static_cast<size_t>(got));
  }
  if (connection.answer || !progressed) return true;
  // Only the new bytes are searched: a client trickling its request byte by byte costs no more than one
  // sending it at once.
  const size_t end = connection.received.find(request_end_, connection.searched);
  if (end == std::string::npos) {
    if (!connection.peer_done) {
      const size_t overlap = request_end_.size() - 1;
      connection.searched = connection.received.size() > overlap ? connection.received.size() - overlap : 0;
      return true;
    }
    if (connection.received.empty()) return false;
    connection.answer = responder_(connection.received, false);
  } else {
    connection.answer = responder_(std::string_view(connection.received).substr(0, end + request_end_.size()), true);
  }
  if (!connection.answer) return false;
  connection.received = std::string();
  connection.deadline = Clock::now() + idle_timeout_;
  return true;
}

bool StreamServer::write_to(int fd, Connection& connection) {
  const std::string& answer = *connection.answer;
  bool progressed = false;
  while (connection.written < answer.size()) {
    // MSG_NOSIGNAL: a client gone away is an error here, not a SIGPIPE for the daemon.
    const ssize_t sent =
        ::send(fd, answer.data() + connection.written, answer.size() - connection.written, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    connection.written += static_cast<size_t>(sent);
    progressed = true;
  }
  if (progressed) connection.deadline = Clock::now() + idle_timeout_;
  if (connection.written == answer.size() && !connection.shut_down) {
    // The client sees the answer end; the connection closes at its EOF (or the timeout), so no byte it sends
    // late is left unread to reset the connection.
    (void)::shutdown(fd, SHUT_WR);
    connection.shut_down = true;
  }
  if (connection.shut_down && connection.peer_done) return false;
  return watch(fd, connection);
}

bool StreamServer::watch(int fd, Connection& connection) {
  uint32_t events = connection.peer_done ? 0u : uint32_t{EPOLLIN};  // level-triggered: an EOF would stay readable
  if (connection.answer && connection.written < connection.answer->size()) events |= EPOLLOUT;
  if (events == connection.events) return true;
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &event) != 0) return false;
  connection.events = events;
  return true;
}

void StreamServer::close_connection(int fd) {
  ::close(fd);
  connections_.erase(fd);
}

void StreamServer::expire() {
  const Clock::time_point now = Clock::now();
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second.deadline <= now) {
      ::close(it->first);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void StreamServer::watch_listener(bool on) {
  epoll_event event{};
  event.events = on ? uint32_t{EPOLLIN} : 0u;
  event.data.fd = listen_fd_;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, listen_fd_, &event) == 0) listener_paused_ = !on;
}

// ---- The control socket ----------------------------------------------------------------------------------

namespace {

// A socket file left by a daemon that died is replaced. A live daemon's is not, nor is anything else there.
void replace_stale_socket(const std::string& path, const sockaddr_un& address) {
  struct stat existing {};
  if (::lstat(path.c_str(), &existing) != 0) {
    if (errno == ENOENT) return;
    throw std::runtime_error("cannot inspect the control socket path " + path + ": " + error_text(errno));
  }
  if (!S_ISSOCK(existing.st_mode)) {
    throw std::runtime_error("the control socket path " + path + " exists and is not a socket; not replacing it");
  }
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) throw std::runtime_error("cannot open a Unix socket: " + error_text(errno));
  const int connected = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int error = errno;
  ::close(probe);
  // EAGAIN: a full backlog, so someone listens.
  if (connected == 0 || error == EAGAIN) {
    throw std::runtime_error("another daemon uses the control socket " + path + ": it accepts connections");
  }
  if (error == ENOENT) return;  // gone meanwhile
  if (error != ECONNREFUSED) {
    throw std::runtime_error("cannot tell whether the control socket " + path + " is in use: " + error_text(error));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw std::runtime_error("cannot remove the stale control socket " + path + ": " + error_text(errno));
  }
}

}  // namespace

UnixControlServer::UnixControlServer(std::string path, Handler handler, std::chrono::milliseconds idle_timeout)
    : path_(std::move(path)), handler_(std::move(handler)) {
  sockaddr_un address{};
  if (path_.empty() || path_.size() >= sizeof(address.sun_path)) {
    throw std::runtime_error("the control socket path \"" + path_ + "\" is empty or longer than " +
                             std::to_string(sizeof(address.sun_path) - 1) + " bytes");
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path_.data(), path_.size());
  replace_stale_socket(path_, address);

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("cannot open a Unix socket: " + error_text(errno));
  // The file's mode comes from the umask at bind (fchmod on the socket would change the socket's own inode,
  // not the file's), so it is 0600 from its first moment. Start-up is single-threaded: the process-wide
  // umask is restored before anything else runs.
  const mode_t saved_umask = ::umask(0177);
  const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int bind_error = errno;
  (void)::umask(saved_umask);
  if (bound != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind the control socket " + path_ + ": " + error_text(bind_error));
  }
  struct stat made {};
  if (::lstat(path_.c_str(), &made) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error("the control socket " + path_ + " vanished once bound: " + error_text(error));
  }
  socket_dev_ = made.st_dev;
  socket_ino_ = made.st_ino;
  if (::listen(fd, kListenBacklog) != 0) {
    const int error = errno;
    ::close(fd);
    remove_socket_file();
    throw std::runtime_error("cannot listen on the control socket " + path_ + ": " + error_text(error));
  }
  // The line without its '\n' (and a '\r' before it); a client that shut down without one sent its last line.
  const auto respond = [this](std::string_view request, bool complete) -> std::optional<std::string> {
    std::string line(request);
    if (complete) line.pop_back();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    try {
      return handler_(line);
    } catch (const std::exception& e) {
      return std::string("error: ") + e.what() + "\n";
    }
  };
  try {
    server_.emplace(fd, "\n", respond, idle_timeout);
  } catch (...) {
    remove_socket_file();
    throw;
  }
}

UnixControlServer::~UnixControlServer() {
  remove_socket_file();
}

void UnixControlServer::remove_socket_file() const {
  // Someone may have removed this server's file and another daemon bound the path since: that file stays.
  struct stat now {};
  if (::lstat(path_.c_str(), &now) == 0 && now.st_dev == socket_dev_ && now.st_ino == socket_ino_) {
    (void)::unlink(path_.c_str());
  }
}

// ---- The metrics endpoint --------------------------------------------------------------------------------

namespace {

struct ListenAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// "IPv4:PORT" or "[IPv6]:PORT"; nothing else, names included: the daemon listens where it is told and
// resolves nothing.
std::optional<ListenAddress> parse_listen_address(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  const std::string host = text.substr(0, colon);
  const char* port_begin = text.data() + colon + 1;
  const char* port_end = text.data() + text.size();
  uint16_t port = 0;
  const std::from_chars_result parsed = std::from_chars(port_begin, port_end, port);
  if (port_begin == port_end || parsed.ec != std::errc() || parsed.ptr != port_end) return std::nullopt;

  ListenAddress address;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* ipv6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    ipv6->sin6_family = AF_INET6;
    ipv6->sin6_port = htons(port);
    if (::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &ipv6->sin6_addr) != 1) return std::nullopt;
    address.length = sizeof(sockaddr_in6);
  } else {
    auto* ipv4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    ipv4->sin_family = AF_INET;
    ipv4->sin_port = htons(port);
    if (::inet_pton(AF_INET, host.c_str(), &ipv4->sin_addr) != 1) return std::nullopt;
    address.length = sizeof(sockaddr_in);
  }
  return address;
}

struct RequestLine {
  std::string_view method;
  std::string_view target;
};

bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// "METHOD SP /target SP HTTP/1.x" (RFC 9112 3), one space each; nullopt for anything else.
std::optional<RequestLine> parse_request_line(std::string_view line) {
  const size_t first = line.find(' ');
  const size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
  if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos) return std::nullopt;
  const RequestLine request{line.substr(0, first), line.substr(first + 1, second - first - 1)};
  const std::string_view version = line.substr(second + 1);
  if (request.method.empty()) return std::nullopt;
  for (const char c : request.method) {
    if (!is_token_char(c)) return std::nullopt;
  }
  if (request.target.empty() || request.target.front() != '/') return std::nullopt;
  for (const char c : request.target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return std::nullopt;
  return request;
}

std::string http_answer(std::string_view status, std::string_view content_type, std::string_view body,
                        bool with_body = true, std::string_view extra_headers = {}) {
  std::string answer;
  answer.reserve(160 + (with_body ? body.size() : 0));
  answer += "HTTP/1.1 ";
  answer += status;
  answer += "\r\nContent-Type: ";
  answer += content_type;
  answer += "\r\nContent-Length: ";
  answer += std::to_string(body.size());
  answer += "\r\n";
  answer += extra_headers;
  answer += "Connection: close\r\n\r\n";
  if (with_body) answer += body;
  return answer;
}

std::string plain_answer(std::string_view status, std::string_view extra_headers = {}) {
  return http_answer(status, "text/plain; charset=utf-8", std::string(status) + "\n", true, extra_headers);
}

}  // namespace

HttpMetricsServer::HttpMetricsServer(const std::string& address, Renderer render,
                                     std::chrono::milliseconds idle_timeout)
    : render_(std::move(render)) {
  const std::optional<ListenAddress> listen_address = parse_listen_address(address);
  if (!listen_address) {
    throw std::invalid_argument("the metrics address \"" + address +
                                "\" is neither IPv4:PORT (127.0.0.1:9464) nor [IPv6]:PORT ([::1]:9464)");
  }
  const int fd = ::socket(listen_address->storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("cannot open a socket for the metrics endpoint: " + error_text(errno));
  const auto fail = [&](const std::string& what) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error(what + ": " + error_text(error));
  };
  // A restarted daemon binds again at once, past its old connections in TIME_WAIT.
  const int on = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) fail("SO_REUSEADDR");
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&listen_address->storage), listen_address->length) != 0 ||
      ::listen(fd, kListenBacklog) != 0) {
    fail("cannot listen for metrics on " + address);
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_length) != 0) fail("getsockname");
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  server_.emplace(
      fd, "\r\n\r\n", [this](std::string_view request, bool complete) { return respond(request, complete); },
      idle_timeout);
}

std::optional<std::string> HttpMetricsServer::respond(std::string_view request, bool complete) const {
  if (!complete) return plain_answer("400 Bad Request");
  const std::optional<RequestLine> request_line = parse_request_line(request.substr(0, request.find("\r\n")));
  if (!request_line) return plain_answer("400 Bad Request");
  const std::string_view path = request_line->target.substr(0, request_line->target.find('?'));
  if (path != "/metrics") return plain_answer("404 Not Found");
  const bool head = request_line->method == "HEAD";
  if (request_line->method != "GET" && !head) return plain_answer("405 Method Not Allowed", "Allow: GET, HEAD\r\n");
  try {
    return http_answer("200 OK", "text/plain; version=0.0.4; charset=utf-8", render_(), !head);
  } catch (const std::exception&) {
    return plain_answer("500 Internal Server Error");
  }
}

}  // namespace portcullis::control
