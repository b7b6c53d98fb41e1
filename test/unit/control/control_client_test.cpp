// The control socket's client against the real server, whose loop runs on a thread of its own as the daemon's
// would: answers whole, and a failure that says what to check when there is no daemon or it does not answer.
#include "control/control_client.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

#include "control/stream_server.h"

namespace portcullis::control {
namespace {

using std::chrono::milliseconds;

// The server's loop on a thread until destroyed: control_request blocks, so the server cannot turn on the
// test's thread. Nothing else touches the server meanwhile.
class ServerLoop {
 public:
  explicit ServerLoop(UnixControlServer& server)
      : server_(server), stop_(::eventfd(0, EFD_CLOEXEC)), thread_([this] { run(); }) {}
  ~ServerLoop() {
    const uint64_t one = 1;
    EXPECT_EQ(::write(stop_, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    thread_.join();
    ::close(stop_);
  }
  ServerLoop(const ServerLoop&) = delete;
  ServerLoop& operator=(const ServerLoop&) = delete;

 private:
  void run() {
    for (;;) {
      pollfd fds[2] = {{server_.fd(), POLLIN, 0}, {stop_, POLLIN, 0}};
      (void)::poll(fds, 2, 100);
      if ((fds[1].revents & POLLIN) != 0) return;
      if ((fds[0].revents & POLLIN) != 0) server_.on_readable();
      server_.tick();
    }
  }

  UnixControlServer& server_;
  int stop_;
  std::thread thread_;
};

class ControlClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "portcullis-client-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    path_ = (dir_ / "control.sock").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string path_;
};

std::string bracket(const std::string& line) {
  return "[" + line + "]\n";
}

template <typename Request>
std::string error_of(Request request) {
  try {
    request();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(ControlClientTest, SendsOneLineAndReturnsTheWholeAnswer) {
  UnixControlServer server(path_, bracket);
  const ServerLoop loop(server);
  EXPECT_EQ(control_request(path_, "status", milliseconds(5000)), "[status]\n");
  EXPECT_EQ(control_request(path_, "status\n", milliseconds(5000)), "[status]\n");  // no second newline
  EXPECT_EQ(control_request(path_, "", milliseconds(5000)), "[]\n");
}

TEST_F(ControlClientTest, ABigAnswerArrivesWhole) {
  std::string big(size_t{3} * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('A' + (i * 31) % 26);
  UnixControlServer server(path_, [&big](const std::string&) { return big; });
  const ServerLoop loop(server);
  EXPECT_TRUE(control_request(path_, "dump", milliseconds(10000)) == big);
}

TEST_F(ControlClientTest, NoDaemonSaysWhatToRun) {
  const std::string expected = "cannot connect to the control socket " + path_ + ": " + std::strerror(ENOENT) +
                               "; is `portcullis run --control " + path_ + "` running?";
  EXPECT_EQ(error_of([&] { control_request(path_, "status", milliseconds(1000)); }), expected);
}

TEST_F(ControlClientTest, AStaleSocketIsRefused) {
  {
    const int dead = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path_.data(), path_.size());
    ASSERT_EQ(::bind(dead, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    ::close(dead);
  }
  const std::string expected = "cannot connect to the control socket " + path_ + ": " + std::strerror(ECONNREFUSED) +
                               "; is `portcullis run --control " + path_ + "` running?";
  EXPECT_EQ(error_of([&] { control_request(path_, "status", milliseconds(1000)); }), expected);
}

TEST_F(ControlClientTest, ADaemonThatDoesNotAnswerTimesOut) {
  // Listening, never accepting: the connection completes in the backlog, the answer never comes.
  const int stuck = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path_.data(), path_.size());
  ASSERT_EQ(::bind(stuck, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(stuck, 4), 0);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of([&] { control_request(path_, "status", milliseconds(200)); }),
            "the control socket " + path_ + " did not answer within 200 ms");
  EXPECT_GE(std::chrono::steady_clock::now() - started, milliseconds(200));
  ::close(stuck);
}

TEST_F(ControlClientTest, APathTooLongForASocketSaysSo) {
  const std::string path = "/" + std::string(200, 'p');
  EXPECT_EQ(error_of([&] { control_request(path, "status", milliseconds(100)); }),
            "cannot connect to the control socket " + path + ": " + std::strerror(ENAMETOOLONG) +
                "; is `portcullis run --control " + path + "` running?");
}

}  // namespace
}  // namespace portcullis::control
