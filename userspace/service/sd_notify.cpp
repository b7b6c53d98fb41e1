#include "service/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace portcullis::service {
namespace {

// A status is one assignment: a newline in it would start another one.
std::string one_line(std::string_view text) {
  std::string line(text);
  for (char& c : line) {
    if (c == '\n') c = ' ';
  }
  return line;
}

// The address $NOTIFY_SOCKET names, or 0 with errno set. Abstract names are not NUL-terminated: their length
// is the address's (as systemd binds them).
socklen_t notify_address(std::string_view name, sockaddr_un& address) {
  address = {};
  address.sun_family = AF_UNIX;
  if (name.front() != '/' && name.front() != '@') {
    errno = EAFNOSUPPORT;  // e.g. "vsock:CID:PORT" of newer systemd
    return 0;
  }
  // A path needs room for its terminating NUL; an abstract name's '@' becomes its leading NUL.
  const size_t room = name.front() == '/' ? sizeof(address.sun_path) - 1 : sizeof(address.sun_path);
  if (name.size() > room) {
    errno = ENAMETOOLONG;
    return 0;
  }
  std::memcpy(address.sun_path, name.data(), name.size());
  if (name.front() == '@') {
    address.sun_path[0] = '\0';
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  }
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
}

}  // namespace

bool notify(std::string_view state) {
  const char* name = std::getenv("NOTIFY_SOCKET");
  if (name == nullptr || *name == '\0') {
    errno = 0;
    return false;
  }
  sockaddr_un address{};
  const socklen_t length = notify_address(name, address);
  if (length == 0) return false;

  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ssize_t sent = -1;
  do {
    sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  const int send_errno = errno;
  ::close(fd);
  if (sent < 0) {
    errno = send_errno;
    return false;
  }
  if (static_cast<size_t>(sent) != state.size()) {
    errno = EMSGSIZE;  // a datagram goes whole or not at all: not expected, but never report a part as sent
    return false;
  }
  return true;
}

bool notify_ready(std::string_view status) {
  if (status.empty()) return notify("READY=1");
  return notify("READY=1\nSTATUS=" + one_line(status));
}

bool notify_reloading() {
  timespec now{};
  if (::clock_gettime(CLOCK_MONOTONIC, &now) != 0) return false;
  const uint64_t usec = static_cast<uint64_t>(now.tv_sec) * 1'000'000 + static_cast<uint64_t>(now.tv_nsec) / 1'000;
  return notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

bool notify_stopping() {
  return notify("STOPPING=1");
}

bool notify_status(std::string_view status) {
  return notify("STATUS=" + one_line(status));
}

}  // namespace portcullis::service
