#include "control/control_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace portcullis::control {
namespace {

using Clock = std::chrono::steady_clock;

class SocketFd {
 public:
  explicit SocketFd(int fd) : fd_(fd) {}
  ~SocketFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  SocketFd(const SocketFd&) = delete;
  SocketFd& operator=(const SocketFd&) = delete;

  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

std::string control_request(const std::string& path, const std::string& request_line,
                            std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  const auto cannot_connect = [&path](int error) {
    return std::runtime_error("cannot connect to the control socket " + path + ": " + std::strerror(error) +
                              "; is `portcullis run --control " + path + "` running?");
  };
  const auto failed = [&path](const char* what) {
    return std::runtime_error(std::string(what) + " the control socket " + path + ": " + std::strerror(errno));
  };

  sockaddr_un address{};
  if (path.empty()) throw cannot_connect(ENOENT);
  if (path.size() >= sizeof(address.sun_path)) throw cannot_connect(ENAMETOOLONG);
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  const SocketFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) throw failed("cannot open a socket for");
  // A daemon whose backlog is full makes connect wait; on a Unix socket SO_SNDTIMEO bounds that wait (zero
  // would mean forever).
  const std::chrono::microseconds connect_timeout = std::max(timeout, std::chrono::milliseconds(1));
  const timeval connect_wait{static_cast<time_t>(connect_timeout.count() / 1'000'000),
                             static_cast<suseconds_t>(connect_timeout.count() % 1'000'000)};
  if (::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &connect_wait, sizeof(connect_wait)) != 0) {
    throw failed("cannot set a timeout on");
  }
  if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    throw cannot_connect(errno == EAGAIN ? ETIMEDOUT : errno);
  }
  if (::fcntl(socket.get(), F_SETFL, O_NONBLOCK) != 0) throw failed("cannot make non-blocking");

  std::string request = request_line;
  if (request.empty() || request.back() != '\n') request += '\n';
  size_t sent = 0;
  std::string answer;
  char buffer[16 * 1024];
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      throw std::runtime_error("the control socket " + path + " did not answer within " +
                               std::to_string(timeout.count()) + " ms");
    }
    const bool sending = sent < request.size();
    pollfd ready{socket.get(), static_cast<int16_t>(sending ? POLLOUT : POLLIN), 0};
    const int count = ::poll(&ready, 1, static_cast<int>(left.count()));
    if (count < 0 && errno != EINTR) throw failed("cannot poll");
    if (count <= 0) continue;
    if (sending) {
      const ssize_t written = ::send(socket.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (written < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        throw failed("cannot send the request to");
      }
      sent += static_cast<size_t>(written);
      // The request is complete: the daemon can close as soon as its answer is written.
      if (sent == request.size()) (void)::shutdown(socket.get(), SHUT_WR);
      continue;
    }
    const ssize_t got = ::recv(socket.get(), buffer, sizeof(buffer), 0);
    if (got == 0) return answer;
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      throw failed("cannot read the answer from");
    }
    answer.append(buffer, static_cast<size_t>(got));
  }
}

}  // namespace portcullis::control
