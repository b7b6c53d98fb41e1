// The systemd notification protocol as systemd receives it: exact datagrams on a socket bound where
// $NOTIFY_SOCKET points, a file system path or an abstract name; and no socket named, no datagram.
#include "service/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

namespace portcullis::service {
namespace {

uint64_t monotonic_usec() {
  timespec now{};
  EXPECT_EQ(::clock_gettime(CLOCK_MONOTONIC, &now), 0);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000 + static_cast<uint64_t>(now.tv_nsec) / 1'000;
}

// Keeps the test's NOTIFY_SOCKET from leaking into the next test.
class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* value = std::getenv("NOTIFY_SOCKET")) saved_ = value;
    ::unsetenv("NOTIFY_SOCKET");
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
    if (saved_) {
      ::setenv("NOTIFY_SOCKET", saved_->c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }

  // Binds a datagram socket at a path in a fresh temporary directory and names it in NOTIFY_SOCKET.
  void listen_on_path() {
    std::string pattern = (std::filesystem::temp_directory_path() / "portcullis-notify-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    path_ = (dir_ / "notify").string();
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    ASSERT_LT(path_.size(), sizeof(address.sun_path));
    std::memcpy(address.sun_path, path_.data(), path_.size());
    bind_socket(address, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + 1));
    ::setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }

  // Binds a datagram socket in the abstract namespace, as systemd does: the name's length is the address's.
  void listen_on_abstract_name() {
    const std::string name = "portcullis-notify-test-" + std::to_string(::getpid());
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name.data(), name.size());
    bind_socket(address, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size()));
    ::setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
  }

  // Where listen_on_path bound the socket.
  std::string path_;

  // The next datagram, whole; empty when none is waiting (a datagram sent to a local socket is queued by the
  // time sendto returns, so there is nothing to wait for).
  std::string receive() {
    char buffer[4096];
    const ssize_t size = ::recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT | MSG_TRUNC);
    if (size < 0) {
      EXPECT_EQ(errno, EAGAIN) << std::strerror(errno);
      return {};
    }
    EXPECT_LE(static_cast<size_t>(size), sizeof(buffer));
    return {buffer, static_cast<size_t>(size)};
  }

 private:
  void bind_socket(const sockaddr_un& address, socklen_t length) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd_, 0) << std::strerror(errno);
    ASSERT_EQ(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), length), 0) << std::strerror(errno);
  }

  int fd_ = -1;
  std::filesystem::path dir_;
  std::optional<std::string> saved_;
};

TEST_F(NotifyTest, SendsTheStateAsOneDatagramToAPath) {
  listen_on_path();
  ASSERT_TRUE(notify("READY=1\nSTATUS=enforcing generation 3\nMAINPID=123"));
  EXPECT_EQ(receive(), "READY=1\nSTATUS=enforcing generation 3\nMAINPID=123");
  EXPECT_EQ(receive(), "");
}

TEST_F(NotifyTest, SendsToAnAbstractName) {
  listen_on_abstract_name();
  ASSERT_TRUE(notify("READY=1"));
  EXPECT_EQ(receive(), "READY=1");
  ASSERT_TRUE(notify_stopping());
  EXPECT_EQ(receive(), "STOPPING=1");
}

TEST_F(NotifyTest, ReadyCarriesTheStatus) {
  listen_on_path();
  ASSERT_TRUE(notify_ready("enforcing generation 1"));
  EXPECT_EQ(receive(), "READY=1\nSTATUS=enforcing generation 1");
  ASSERT_TRUE(notify_ready(""));
  EXPECT_EQ(receive(), "READY=1");
}

TEST_F(NotifyTest, StatusAndStopping) {
  listen_on_path();
  ASSERT_TRUE(notify_status("reloading /etc/portcullis/policy.yaml"));
  EXPECT_EQ(receive(), "STATUS=reloading /etc/portcullis/policy.yaml");
  ASSERT_TRUE(notify_stopping());
  EXPECT_EQ(receive(), "STOPPING=1");
}

TEST_F(NotifyTest, AStatusCannotAddAssignments) {
  listen_on_path();
  ASSERT_TRUE(notify_status("policy a.yaml\nREADY=1"));
  EXPECT_EQ(receive(), "STATUS=policy a.yaml READY=1");
  ASSERT_TRUE(notify_ready("x\nSTOPPING=1"));
  EXPECT_EQ(receive(), "READY=1\nSTATUS=x STOPPING=1");
}

TEST_F(NotifyTest, ReloadingCarriesTheMonotonicClockInMicroseconds) {
  listen_on_path();
  const uint64_t before = monotonic_usec();
  ASSERT_TRUE(notify_reloading());
  const uint64_t after = monotonic_usec();
  const std::string datagram = receive();
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  ASSERT_EQ(datagram.substr(0, prefix.size()), prefix);
  const std::string digits = datagram.substr(prefix.size());
  ASSERT_FALSE(digits.empty());
  ASSERT_EQ(digits.find_first_not_of("0123456789"), std::string::npos) << datagram;
  const uint64_t usec = std::stoull(digits);
  EXPECT_GE(usec, before);
  EXPECT_LE(usec, after);
}

TEST_F(NotifyTest, NoSocketNamedIsNoErrorButNothingIsSent) {
  errno = EBADF;
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, 0);
  EXPECT_FALSE(notify_ready("enforcing"));
  EXPECT_FALSE(notify_reloading());
  EXPECT_FALSE(notify_stopping());
  EXPECT_FALSE(notify_status("enforcing"));

  ::setenv("NOTIFY_SOCKET", "", 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, 0);
}

TEST_F(NotifyTest, APathOfTheLongestLengthAnAddressHolds) {
  listen_on_path();
  const std::string path = path_ + std::string(sizeof(sockaddr_un::sun_path) - 1 - path_.size(), 'x');
  ASSERT_EQ(::rename(path_.c_str(), path.c_str()), 0) << std::strerror(errno);
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ASSERT_TRUE(notify("READY=1"));
  EXPECT_EQ(receive(), "READY=1");
  ::setenv("NOTIFY_SOCKET", (path + "x").c_str(), 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, ENAMETOOLONG);
}

TEST_F(NotifyTest, ASocketNobodyListensOnIsAFailure) {
  listen_on_path();
  ::setenv("NOTIFY_SOCKET", (path_ + ".missing").c_str(), 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, ENOENT);
  ::setenv("NOTIFY_SOCKET", "@portcullis-notify-test-nobody-listens", 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, ECONNREFUSED);
}

TEST_F(NotifyTest, AddressesItCannotUseAreFailures) {
  ::setenv("NOTIFY_SOCKET", "relative/notify", 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, EAFNOSUPPORT);
  ::setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, EAFNOSUPPORT);
  ::setenv("NOTIFY_SOCKET", ("/" + std::string(sizeof(sockaddr_un::sun_path), 'x')).c_str(), 1);
  EXPECT_FALSE(notify("READY=1"));
  EXPECT_EQ(errno, ENAMETOOLONG);
}

}  // namespace
}  // namespace portcullis::service
