// The daemon's socket servers over a temporary directory and loopback, their loop turned by the test between
// its client's reads and writes (poll on both, never a sleep): answers whole however slowly they are read,
// bounds on idle and oversized clients, the control socket's file (mode, stale, in use, removal) and the
// metrics endpoint's HTTP.
#include "control/stream_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/prometheus_text.h"

namespace portcullis::control {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// What a client saw: the bytes, and how the connection ended (EOF, or the errno of a reset).
struct Exchange {
  std::string answer;
  bool eof = false;
  int error = 0;
};

// Sends `request` from the non-blocking `client` and reads in `read_size` pieces until the connection ends,
// turning the server's loop whenever its fd is readable and ticking it every turn. A failure, not a wait,
// after 10 s.
template <typename Server>
Exchange exchange(Server& server, int client, std::string_view request, size_t read_size = size_t{64} * 1024) {
  Exchange result;
  std::vector<char> buffer(read_size);
  size_t sent = 0;
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    const int16_t client_events = static_cast<int16_t>(sent < request.size() ? POLLIN | POLLOUT : POLLIN);
    pollfd fds[2] = {{server.fd(), POLLIN, 0}, {client, client_events, 0}};
    if (::poll(fds, 2, 100) < 0) {
      ADD_FAILURE() << "poll: " << std::strerror(errno);
      return result;
    }
    if ((fds[0].revents & POLLIN) != 0) server.on_readable();
    server.tick();
    if (sent < request.size() && (fds[1].revents & POLLOUT) != 0) {
      const ssize_t written = ::send(client, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (written < 0 && errno != EAGAIN) {
        result.error = errno;
        return result;
      }
      if (written > 0) sent += static_cast<size_t>(written);
    }
    if ((fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const ssize_t got = ::recv(client, buffer.data(), buffer.size(), 0);
      if (got == 0) {
        result.eof = true;
        return result;
      }
      if (got < 0 && errno != EAGAIN) {
        result.error = errno;
        return result;
      }
      if (got > 0) result.answer.append(buffer.data(), static_cast<size_t>(got));
    }
  }
  ADD_FAILURE() << "the connection did not end within 10 s";
  return result;
}

// Turns the server's loop until `done` holds; false after 10 s.
template <typename Server, typename Done>
bool turn_until(Server& server, Done done) {
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    pollfd ready{server.fd(), POLLIN, 0};
    if (::poll(&ready, 1, 20) > 0) server.on_readable();
    server.tick();
  }
  return true;
}

bool readable(int fd) {
  pollfd ready{fd, POLLIN, 0};
  return ::poll(&ready, 1, 0) == 1;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), std::min(path.size(), sizeof(address.sun_path) - 1));
  return address;
}

// A non-blocking client connected to the Unix socket at `path`.
int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const sockaddr_un address = unix_address(path);
  EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0) << std::strerror(errno);
  return fd;
}

// A non-blocking client connected to loopback, IPv4 or IPv6.
int connect_tcp(int family, uint16_t port) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int connected = -1;
  if (family == AF_INET6) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(port);
    address.sin6_addr = in6addr_loopback;
    connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  }
  EXPECT_EQ(connected, 0) << std::strerror(errno);
  int on = 1;
  EXPECT_EQ(::ioctl(fd, FIONBIO, &on), 0);
  return fd;
}

// A fresh temporary directory per test, removed with everything in it.
class ControlSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "portcullis-control-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    path_ = (dir_ / "control.sock").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string path_;
};

std::string echo(const std::string& line) {
  return "you said [" + line + "]\n";
}

TEST_F(ControlSocketTest, AnswersALineWithTheHandlersOutputAndCloses) {
  UnixControlServer server(path_, echo);
  {
    const Fd client(connect_unix(path_));
    const Exchange result = exchange(server, client.get(), "status\r\nignored after the line\n");
    EXPECT_EQ(result.answer, "you said [status]\n");
    EXPECT_TRUE(result.eof);
  }
  // The server closes its end once the client has closed its own.
  EXPECT_TRUE(turn_until(server, [&] { return server.connections() == 0; }));
}

TEST_F(ControlSocketTest, ALastLineWithoutNewlineCountsOnceTheClientShutsDown) {
  UnixControlServer server(path_, echo);
  const Fd client(connect_unix(path_));
  ASSERT_EQ(::send(client.get(), "stats", 5, MSG_NOSIGNAL), 5);
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  const Exchange result = exchange(server, client.get(), "");
  EXPECT_EQ(result.answer, "you said [stats]\n");
  EXPECT_TRUE(result.eof);
}

TEST_F(ControlSocketTest, AHandlerThatThrowsIsAnsweredWithItsError) {
  UnixControlServer server(path_, [](const std::string&) -> std::string { throw std::runtime_error("no such"); });
  const Fd client(connect_unix(path_));
  EXPECT_EQ(exchange(server, client.get(), "bogus\n").answer, "error: no such\n");
}

TEST_F(ControlSocketTest, TheSocketIsRootOnlyAndGoesAwayWithTheServer) {
  {
    UnixControlServer server(path_, echo);
    struct stat made {};
    ASSERT_EQ(::lstat(path_.c_str(), &made), 0);
    EXPECT_TRUE(S_ISSOCK(made.st_mode));
    EXPECT_EQ(made.st_mode & 07777, 0600u);
  }
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path_)));
}

TEST_F(ControlSocketTest, ASecondServerOnAPathInUseThrowsAndLeavesTheFirstServing) {
  UnixControlServer first(path_, echo);
  try {
    UnixControlServer second(path_, echo);
    ADD_FAILURE() << "a second server bound a path in use";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another daemon uses the control socket " + path_), std::string::npos)
        << e.what();
  }
  const Fd client(connect_unix(path_));
  EXPECT_EQ(exchange(first, client.get(), "ping\n").answer, "you said [ping]\n");
}

TEST_F(ControlSocketTest, AStaleSocketIsReplaced) {
  {
    // A daemon that died: its socket file stays, nobody listens.
    const Fd dead(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un address = unix_address(path_);
    ASSERT_EQ(::bind(dead.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  }
  ASSERT_TRUE(std::filesystem::is_socket(path_));
  UnixControlServer server(path_, echo);
  const Fd client(connect_unix(path_));
  EXPECT_EQ(exchange(server, client.get(), "ping\n").answer, "you said [ping]\n");
}

TEST_F(ControlSocketTest, APathThatIsNoSocketIsLeftAlone) {
  std::ofstream(path_) << "precious";
  try {
    UnixControlServer server(path_, echo);
    ADD_FAILURE() << "the server replaced a regular file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exists and is not a socket"), std::string::npos) << e.what();
  }
  std::ifstream kept(path_);
  std::string content;
  kept >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(ControlSocketTest, ABindThatFailsSaysWhy) {
  try {
    UnixControlServer server((dir_ / "missing" / "control.sock").string(), echo);
    ADD_FAILURE() << "bound in a directory that does not exist";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot bind the control socket " + (dir_ / "missing" / "control.sock").string() +
                                         ": " + std::strerror(ENOENT));
  }
}

TEST_F(ControlSocketTest, TheDestructorLeavesAFileThatIsNotItsOwn) {
  std::optional<UnixControlServer> first(std::in_place, path_, echo);
  // Someone removed the first daemon's file, and another daemon bound the path since.
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  UnixControlServer second(path_, [](const std::string&) { return std::string("second\n"); });
  first.reset();
  ASSERT_TRUE(std::filesystem::is_socket(path_));
  const Fd client(connect_unix(path_));
  EXPECT_EQ(exchange(second, client.get(), "who\n").answer, "second\n");
}

TEST_F(ControlSocketTest, ABigAnswerArrivesWholeThoughTheClientReadsSlowly) {
  std::string big(size_t{6} * 1024 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7919) % 26);
  UnixControlServer server(path_, [&big](const std::string&) { return big; });
  const Fd client(connect_unix(path_));
  ASSERT_EQ(::send(client.get(), "dump\n", 5, MSG_NOSIGNAL), 5);
  // The socket takes a fraction of it: the server keeps the rest, and the loop is free meanwhile.
  ASSERT_TRUE(turn_until(server, [&] { return readable(client.get()); }));
  int queued = 0;
  ASSERT_EQ(::ioctl(client.get(), FIONREAD, &queued), 0);
  EXPECT_LT(static_cast<size_t>(queued), big.size());
  EXPECT_EQ(server.connections(), 1u);
  const Exchange result = exchange(server, client.get(), "", 1024);
  EXPECT_TRUE(result.eof);
  EXPECT_EQ(result.answer.size(), big.size());
  EXPECT_TRUE(result.answer == big);
}

TEST_F(ControlSocketTest, AnIdleConnectionIsClosedByTickAfterTheTimeout) {
  const milliseconds timeout(200);
  UnixControlServer server(path_, echo, timeout);
  const Clock::time_point connected = Clock::now();
  const Fd client(connect_unix(path_));
  ASSERT_EQ(::send(client.get(), "no newline yet", 14, MSG_NOSIGNAL), 14);
  ASSERT_TRUE(turn_until(server, [&] { return server.connections() == 1; }));
  // Only tick() from here on: nothing is readable for the server, the timeout alone closes the connection.
  const Clock::time_point deadline = connected + std::chrono::seconds(10);
  while (!readable(client.get()) && Clock::now() < deadline) {
    pollfd ready{client.get(), POLLIN, 0};
    (void)::poll(&ready, 1, 20);
    server.tick();
  }
  // Closed: EOF, or a reset if the server had not read the partial line yet.
  char byte = 0;
  const ssize_t got = ::recv(client.get(), &byte, 1, 0);
  EXPECT_TRUE(got == 0 || (got < 0 && errno == ECONNRESET)) << got;
  EXPECT_GE(Clock::now() - connected, timeout);
  EXPECT_EQ(server.connections(), 0u);
}

TEST_F(ControlSocketTest, ARequestPast64KiBIsClosedUnanswered) {
  bool asked = false;
  UnixControlServer server(path_, [&asked](const std::string&) {
    asked = true;
    return std::string("answered\n");
  });
  const Fd client(connect_unix(path_));
  const Exchange result = exchange(server, client.get(), std::string(kMaxRequestBytes + 1, 'x'));
  EXPECT_TRUE(result.eof || result.error == ECONNRESET || result.error == EPIPE) << std::strerror(result.error);
  EXPECT_EQ(result.answer, "");
  EXPECT_FALSE(asked);
  EXPECT_EQ(server.connections(), 0u);
}

TEST_F(ControlSocketTest, ConnectionsPastTheBoundAreClosedAtOnce) {
  UnixControlServer server(path_, echo);
  std::vector<std::unique_ptr<Fd>> clients;
  for (size_t i = 0; i < kMaxConnections; ++i) {
    clients.push_back(std::make_unique<Fd>(connect_unix(path_)));
    ASSERT_TRUE(turn_until(server, [&] { return server.connections() == i + 1; }));
  }
  const Fd extra(connect_unix(path_));
  ASSERT_TRUE(turn_until(server, [&] { return readable(extra.get()); }));
  char byte = 0;
  EXPECT_EQ(::recv(extra.get(), &byte, 1, 0), 0);
  EXPECT_EQ(server.connections(), kMaxConnections);
  // The ones held are still served.
  EXPECT_EQ(exchange(server, clients.front()->get(), "ping\n").answer, "you said [ping]\n");
}

// ---- The metrics endpoint ---------------------------------------------------------------------------------

std::string metrics_body() {
  PrometheusText text;
  text.family("portcullis_up", "gauge", "Whether the daemon enforces a policy.");
  text.sample("portcullis_up", {}, uint64_t{1});
  return text.str();
}

Exchange http(HttpMetricsServer& server, std::string_view request, int family = AF_INET) {
  const Fd client(connect_tcp(family, server.port()));
  return exchange(server, client.get(), request);
}

TEST(HttpMetricsServer, GetMetricsAnswersTheRenderedTextWithItsHeaders) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  ASSERT_NE(server.port(), 0);
  const std::string body = metrics_body();
  const std::string expected =
      "HTTP/1.1 200 OK\r\n"
      "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
      "Content-Length: " +
      std::to_string(body.size()) +
      "\r\n"
      "Connection: close\r\n"
      "\r\n" +
      body;
  const Exchange result = http(server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(result.answer, expected);
  EXPECT_TRUE(result.eof);
  EXPECT_EQ(http(server, "GET /metrics?name[]=up HTTP/1.0\r\n\r\n").answer, expected);
}

TEST(HttpMetricsServer, HeadAnswersTheHeadersAlone) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  const Exchange result = http(server, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(result.answer,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: " +
                std::to_string(metrics_body().size()) + "\r\nConnection: close\r\n\r\n");
}

TEST(HttpMetricsServer, ARequestHeadInPiecesIsAnsweredOnceWhole) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  const Fd client(connect_tcp(AF_INET, server.port()));
  // Each piece is read (the server's fd goes quiet) and none is answered, the end of the head split too.
  for (const std::string_view piece : {"GET /met", "rics HTTP/1.1\r\nHost: x\r\n", "\r"}) {
    ASSERT_EQ(::send(client.get(), piece.data(), piece.size(), MSG_NOSIGNAL), static_cast<ssize_t>(piece.size()));
    ASSERT_TRUE(turn_until(server, [&] { return server.connections() == 1 && !readable(server.fd()); }));
    EXPECT_FALSE(readable(client.get())) << piece;
  }
  const Exchange result = exchange(server, client.get(), "\n");
  EXPECT_TRUE(result.answer.starts_with("HTTP/1.1 200 OK\r\n")) << result.answer;
  EXPECT_TRUE(result.answer.ends_with(metrics_body()));
}

TEST(HttpMetricsServer, OtherPathsAre404) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  for (const char* request : {"GET / HTTP/1.1\r\n\r\n", "GET /metrics/ HTTP/1.1\r\n\r\n", "POST /x HTTP/1.1\r\n\r\n"}) {
    const Exchange result = http(server, request);
    EXPECT_EQ(result.answer,
              "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n"
              "Connection: close\r\n\r\n404 Not Found\n")
        << request;
    EXPECT_TRUE(result.eof);
  }
}

TEST(HttpMetricsServer, OtherMethodsAre405WithWhatIsAllowed) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  for (const char* request : {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "DELETE /metrics HTTP/1.0\r\n\r\n",
                              "get /metrics HTTP/1.1\r\n\r\n"}) {
    const Exchange result = http(server, request);
    EXPECT_TRUE(result.answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << request << result.answer;
    EXPECT_NE(result.answer.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << result.answer;
  }
}

TEST(HttpMetricsServer, AMalformedRequestLineIs400) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  for (const char* request : {"GARBAGE\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                              "GET /metrics HTTP/2.0\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
                              "GET /metrics HTTP/1.1 extra\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n", "\r\n\r\n"}) {
    const Exchange result = http(server, request);
    EXPECT_TRUE(result.answer.starts_with("HTTP/1.1 400 Bad Request\r\n")) << request << result.answer;
    EXPECT_TRUE(result.eof) << request;
  }
}

TEST(HttpMetricsServer, AHeadCutShortByTheClientIs400) {
  HttpMetricsServer server("127.0.0.1:0", metrics_body);
  const Fd client(connect_tcp(AF_INET, server.port()));
  ASSERT_EQ(::send(client.get(), "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL), 23);
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  const Exchange result = exchange(server, client.get(), "");
  EXPECT_TRUE(result.answer.starts_with("HTTP/1.1 400 Bad Request\r\n")) << result.answer;
  EXPECT_TRUE(result.eof);
}

TEST(HttpMetricsServer, ARenderThatThrowsIs500) {
  HttpMetricsServer server("127.0.0.1:0", []() -> std::string { throw std::runtime_error("maps gone"); });
  EXPECT_TRUE(
      http(server, "GET /metrics HTTP/1.1\r\n\r\n").answer.starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
}

TEST(HttpMetricsServer, AnIdleConnectionIsClosedAfterTheTimeout) {
  const milliseconds timeout(200);
  HttpMetricsServer server("127.0.0.1:0", metrics_body, timeout);
  const Clock::time_point connected = Clock::now();
  // Nothing at all, and a head that never ends: both closed, unanswered.
  const Fd silent(connect_tcp(AF_INET, server.port()));
  const Fd slow(connect_tcp(AF_INET, server.port()));
  ASSERT_EQ(::send(slow.get(), "GET /metrics HTTP/1.1\r\n", 23, MSG_NOSIGNAL), 23);
  const Exchange silent_result = exchange(server, silent.get(), "");
  const Exchange slow_result = exchange(server, slow.get(), "");
  EXPECT_GE(Clock::now() - connected, timeout);
  EXPECT_TRUE(silent_result.eof);
  EXPECT_EQ(silent_result.answer, "");
  EXPECT_TRUE(slow_result.eof || slow_result.error == ECONNRESET);
  EXPECT_EQ(slow_result.answer, "");
  EXPECT_EQ(server.connections(), 0u);
}

TEST(HttpMetricsServer, ServesOnIpv6Loopback) {
  {
    // Some containers have no IPv6 at all: nothing to test there.
    const Fd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    if (probe.get() < 0 || ::bind(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      GTEST_SKIP() << "no IPv6 loopback: " << std::strerror(errno);
    }
  }
  HttpMetricsServer server("[::1]:0", metrics_body);
  ASSERT_NE(server.port(), 0);
  const Exchange result = http(server, "GET /metrics HTTP/1.1\r\n\r\n", AF_INET6);
  EXPECT_TRUE(result.answer.starts_with("HTTP/1.1 200 OK\r\n")) << result.answer;
  EXPECT_TRUE(result.answer.ends_with(metrics_body()));
}

TEST(HttpMetricsServer, AnAddressOfAnotherFormIsRejected) {
  for (const char* address :
       {"127.0.0.1", "localhost:9464", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:+80",
        "127.0.0.1:80x", "::1:9464", "[::1]9464", "[]:80", "[127.0.0.1]:80", "256.0.0.1:80", ":9464", ""}) {
    EXPECT_THROW(HttpMetricsServer(address, metrics_body), std::invalid_argument) << address;
  }
}

TEST(HttpMetricsServer, APortInUseSaysWhy) {
  HttpMetricsServer first("127.0.0.1:0", metrics_body);
  const std::string address = "127.0.0.1:" + std::to_string(first.port());
  try {
    HttpMetricsServer second(address, metrics_body);
    ADD_FAILURE() << "two servers on " << address;
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "cannot listen for metrics on " + address + ": " + std::strerror(EADDRINUSE));
  }
}

}  // namespace
}  // namespace portcullis::control
