// Many idle TCP connections held open by one process, for bench/service/reload.sh: a process per connection
// (socat, nc) takes seconds to start thousands of them and hundreds of megabytes to keep them.
//   connection_holder listen ADDR PORT      accepts every connection and keeps it until the peer closes it
//   connection_holder connect ADDR PORT N   opens N connections one after the other, prints "connected N" once
//                                           all are established, and keeps them (a reset one stays a socket)
// Both run until SIGTERM or SIGINT. IPv4 only. Exits 1, saying why, when a socket call fails.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "connection_holder: " << what << ": " << std::strerror(errno) << '\n';
  std::exit(1);
}

// Room for every connection's descriptor: the soft limit raised to the hard one.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) fail("getrlimit");
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) fail("setrlimit");
}

sockaddr_in address_of(const char* host, const char* port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(std::strtoul(port, nullptr, 10)));
  if (::inet_pton(AF_INET, host, &address.sin_addr) != 1) {
    std::cerr << "connection_holder: " << host << " is not an IPv4 address\n";
    std::exit(2);
  }
  return address;
}

// Blocks until SIGTERM or SIGINT (one that came before is pending, and taken at once).
void wait_for_stop() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  int signal = 0;
  sigwait(&stop, &signal);
}

int serve(const sockaddr_in& address) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0) fail("socket");
  const int on = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) fail("bind");
  if (::listen(listener, SOMAXCONN) != 0) fail("listen");
  const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) fail("epoll_create1");
  epoll_event listening{EPOLLIN, {.fd = listener}};
  if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &listening) != 0) fail("epoll_ctl");
  // Runs until SIGTERM or SIGINT, whose default action ends the process and so closes every connection.
  epoll_event ready[256];
  char scratch[4096];
  for (;;) {
    const int n = ::epoll_wait(epoll_fd, ready, 256, -1);
    if (n < 0 && errno != EINTR) fail("epoll_wait");
    for (int i = 0; i < n; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == listener) {
        for (int accepted = 0; (accepted = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
          epoll_event readable{EPOLLIN | EPOLLRDHUP, {.fd = accepted}};
          if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, accepted, &readable) != 0) fail("epoll_ctl");
        }
        continue;
      }
      const ssize_t got = ::read(fd, scratch, sizeof(scratch));
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) ::close(fd);  // closed or reset: done
    }
  }
}

int hold(const sockaddr_in& address, long count) {
  // A stop while the connections open ends the process at once (the signals' default action).
  for (long i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      fail("connection " + std::to_string(i + 1) + " of " + std::to_string(count));
    }
  }
  std::cout << "connected " << count << std::endl;  // flushed: the script waits for the line
  wait_for_stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (!((mode == "listen" && argc == 4) || (mode == "connect" && argc == 5))) {
    std::cerr << "usage: connection_holder listen ADDR PORT | connect ADDR PORT N\n";
    return 2;
  }
  raise_descriptor_limit();
  const sockaddr_in address = address_of(argv[2], argv[3]);
  if (mode == "listen") return serve(address);
  const long count = std::strtol(argv[4], nullptr, 10);
  if (count < 1) {
    std::cerr << "connection_holder: N must be a number above 0\n";
    return 2;
  }
  return hold(address, count);
}
