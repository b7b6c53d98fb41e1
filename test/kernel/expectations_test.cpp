// ExpectationListener, delete_expectations_of and delete_conntrack_entry against the kernel's FTP helper and a real
// FTP server (root). Each test builds its own pair of network namespaces (client and server, joined by a veth
// pair), runs vsftpd in the server one, assigns the helper to FTP control connections with nft in the client one,
// and moves its own thread into the client one: the listener, the test's own control connections and curl all
// run there. Everything is removed however the test ends, short of the process being killed.
#include "conntrack/expectations.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace portcullis::conntrack {
namespace {

using policy::IpAddress;
using policy::IpFamily;
using Event = ExpectationListener::Event;

constexpr auto kPatience = std::chrono::seconds(15);
constexpr uint16_t kFtpPort = 21;
constexpr uint16_t kPassiveLow = 30000;
constexpr uint16_t kPassiveHigh = 30010;
constexpr uint16_t kActiveLow = 40000;
constexpr uint16_t kActiveHigh = 40010;
// nf_conntrack_ftp gives its expectations five minutes.
constexpr uint32_t kFtpExpectationTimeout = 300;

IpAddress address(const char* text) {
  return IpAddress::parse(text).value();
}

const IpAddress kClientV4 = address("10.99.0.1");
const IpAddress kServerV4 = address("10.99.0.2");
const IpAddress kClientV6 = address("fd99::1");
const IpAddress kServerV6 = address("fd99::2");

const IpAddress& client_address(IpFamily family) {
  return family == IpFamily::v4 ? kClientV4 : kClientV6;
}
const IpAddress& server_address(IpFamily family) {
  return family == IpFamily::v4 ? kServerV4 : kServerV6;
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream directories(std::string(path != nullptr ? path : "") + ":/usr/sbin:/sbin");
  std::string directory;
  while (std::getline(directories, directory, ':')) {
    if (directory.empty()) continue;
    directory += '/';
    directory += program;
    if (::access(directory.c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::vector<char*> argv_of(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  return argv;
}

std::string joined(const std::vector<std::string>& args) {
  std::string text;
  for (const std::string& arg : args) text += (text.empty() ? "" : " ") + arg;
  return text;
}

struct Finished {
  int status = -1;  // the exit status; -1 when it could not run or was killed
  std::string output;
};

// Runs a program to its end, with its stdout and stderr captured.
Finished run(const std::vector<std::string>& args) {
  Finished finished;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return finished;
  std::vector<char*> argv = argv_of(args);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  char buffer[4096];
  for (ssize_t got = 0; (got = ::read(pipe_fds[0], buffer, sizeof(buffer))) != 0;) {
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break;
    finished.output.append(buffer, static_cast<size_t>(got));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) finished.status = WEXITSTATUS(status);
  return finished;
}

// Starts a program in a process group of its own (so that its children can be ended with it), its output to
// `log_path`.
pid_t spawn(const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<char*> argv = argv_of(args);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log >= 0) {
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
    }
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  // In the parent too, so that the group exists whichever of the two runs first.
  if (pid > 0) ::setpgid(pid, pid);
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Two network namespaces joined by a veth pair, and vsftpd serving `file` anonymously in the server one. The
// destructor removes all of it, however far the construction got.
class FtpTopology {
 public:
  FtpTopology() : prefix_("pcexp" + std::to_string(::getpid()) + "-") {}
  ~FtpTopology() {
    if (vsftpd_ > 0) {
      ::kill(-vsftpd_, SIGKILL);
      ::waitpid(vsftpd_, nullptr, 0);
    }
    for (const std::string& name : namespaces_) run({"ip", "netns", "del", name});
    if (!directory_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(directory_, ignored);
    }
  }
  FtpTopology(const FtpTopology&) = delete;
  FtpTopology& operator=(const FtpTopology&) = delete;

  // Returns what went wrong, or empty.
  std::string build() {
    char directory[] = "/tmp/pcexp-XXXXXX";
    if (::mkdtemp(directory) == nullptr) return std::string("mkdtemp: ") + std::strerror(errno);
    directory_ = directory;
    for (const char* role : {"client", "server"}) {
      const std::string name = prefix_ + role;
      if (std::string problem = step({"ip", "netns", "add", name}); !problem.empty()) return problem;
      namespaces_.push_back(name);
    }
    const std::vector<std::vector<std::string>> steps = {
        {"ip", "-n", client(), "link", "add", "ftp0", "type", "veth", "peer", "name", "ftp1", "netns", server()},
        // Up before addressed: an IPv6 address added to a link that is down drops the first packets to it (the
        // first SYN waits out a 1 s retransmission).
        {"ip", "-n", client(), "link", "set", "ftp0", "up"},
        {"ip", "-n", server(), "link", "set", "ftp1", "up"},
        {"ip", "-n", client(), "addr", "add", "10.99.0.1/24", "dev", "ftp0"},
        {"ip", "-n", client(), "addr", "add", "fd99::1/64", "dev", "ftp0", "nodad"},
        {"ip", "-n", server(), "addr", "add", "10.99.0.2/24", "dev", "ftp1"},
        {"ip", "-n", server(), "addr", "add", "fd99::2/64", "dev", "ftp1", "nodad"},
        {"ip", "-n", client(), "link", "set", "lo", "up"},
        {"ip", "-n", server(), "link", "set", "lo", "up"},
        // The kernel's FTP helper on the client's control connections.
        {"ip", "netns", "exec", client(), "nft", "add", "table", "inet", "t"},
        {"ip", "netns", "exec", client(), "nft", "add", "ct", "helper", "inet", "t", "ftp",
         "{ type \"ftp\" protocol tcp; l3proto inet; }"},
        {"ip", "netns", "exec", client(), "nft", "add", "chain", "inet", "t", "out",
         "{ type filter hook output priority 0; }"},
        {"ip", "netns", "exec", client(), "nft", "add", "rule", "inet", "t", "out", "tcp", "dport", "21", "ct",
         "helper", "set", "\"ftp\""},
    };
    for (const std::vector<std::string>& args : steps) {
      if (std::string problem = step(args); !problem.empty()) return problem;
    }
    return start_vsftpd();
  }

  std::string client() const { return prefix_ + "client"; }
  std::string server() const { return prefix_ + "server"; }
  const std::string& directory() const { return directory_; }
  std::string served_file() const { return read_file(directory_ + "/root/file"); }
  std::string vsftpd_log() const {
    return read_file(directory_ + "/vsftpd.out") + read_file(directory_ + "/vsftpd.log");
  }

 private:
  static std::string step(const std::vector<std::string>& args) {
    const Finished finished = run(args);
    if (finished.status == 0) return {};
    return joined(args) + " failed (" + std::to_string(finished.status) + "): " + finished.output;
  }

  std::string start_vsftpd() {
    const std::string root = directory_ + "/root";
    const std::string empty = directory_ + "/empty";
    std::error_code error;
    std::filesystem::create_directories(root, error);
    std::filesystem::create_directories(empty, error);
    if (error) return "cannot make vsftpd's directories: " + error.message();
    // vsftpd refuses a writable chroot; anonymous users read what all may read.
    ::chmod(root.c_str(), 0755);
    ::chmod(empty.c_str(), 0755);
    {
      std::ofstream file(root + "/file", std::ios::binary);
      for (int line = 0; line < 4096; ++line) file << "portcullis expectation test line " << line << "\n";
    }
    ::chmod((root + "/file").c_str(), 0644);
    const std::string config = directory_ + "/vsftpd.conf";
    {
      std::ofstream out(config);
      // listen_ipv6 listens on :: and, with bindv6only off (a new namespace's default), takes IPv4 as well.
      out << "listen=NO\nlisten_ipv6=YES\nbackground=NO\n"
          << "anonymous_enable=YES\nno_anon_password=YES\nlocal_enable=NO\nwrite_enable=NO\n"
          << "anon_root=" << root << "\nsecure_chroot_dir=" << empty << "\n"
          << "pasv_enable=YES\npasv_min_port=" << kPassiveLow << "\npasv_max_port=" << kPassiveHigh << "\n"
          << "port_enable=YES\nconnect_from_port_20=NO\n"
          << "seccomp_sandbox=NO\n"
          << "xferlog_enable=YES\nvsftpd_log_file=" << directory_ << "/vsftpd.log\n";
    }
    vsftpd_ = spawn({"ip", "netns", "exec", server(), "vsftpd", config}, directory_ + "/vsftpd.out");
    if (vsftpd_ < 0) return std::string("cannot start vsftpd: ") + std::strerror(errno);
    return {};
  }

  std::string prefix_;
  std::string directory_;
  std::vector<std::string> namespaces_;
  pid_t vsftpd_ = -1;
};

// Moves the calling thread into a named network namespace (/run/netns/NAME), and back when destroyed.
class NamespaceVisit {
 public:
  explicit NamespaceVisit(const std::string& name) {
    home_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const int there = ::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    entered_ = home_ >= 0 && there >= 0 && ::setns(there, CLONE_NEWNET) == 0;
    if (there >= 0) ::close(there);
  }
  ~NamespaceVisit() {
    if (entered_ && ::setns(home_, CLONE_NEWNET) != 0) ADD_FAILURE() << "cannot return to the test's namespace";
    if (home_ >= 0) ::close(home_);
  }
  NamespaceVisit(const NamespaceVisit&) = delete;
  NamespaceVisit& operator=(const NamespaceVisit&) = delete;

  bool entered() const { return entered_; }

 private:
  int home_ = -1;
  bool entered_ = false;
};

std::pair<IpAddress, uint16_t> endpoint_of(const sockaddr_storage& storage) {
  IpAddress address;
  if (storage.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(storage);
    std::memcpy(address.bytes.data(), &v4.sin_addr, 4);
    return {address, ntohs(v4.sin_port)};
  }
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(storage);
  address.family = IpFamily::v6;
  std::memcpy(address.bytes.data(), &v6.sin6_addr, 16);
  return {address, ntohs(v6.sin6_port)};
}

// A TCP connection of the test's own, made in the thread's current namespace. Blocking, with timeouts.
class TcpConnection {
 public:
  TcpConnection(const IpAddress& server, uint16_t port) {
    const bool v4 = server.family == IpFamily::v4;
    fd_ = ::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    const timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    sockaddr_storage to{};
    socklen_t length = 0;
    if (v4) {
      auto& sin = reinterpret_cast<sockaddr_in&>(to);
      sin.sin_family = AF_INET;
      sin.sin_port = htons(port);
      std::memcpy(&sin.sin_addr, server.bytes.data(), 4);
      length = sizeof(sockaddr_in);
    } else {
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(to);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_port = htons(port);
      std::memcpy(&sin6.sin6_addr, server.bytes.data(), 16);
      length = sizeof(sockaddr_in6);
    }
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&to), length) == 0;
  }
  ~TcpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  // The connection as its originator (this end) sent it.
  ConntrackTuple tuple() const {
    sockaddr_storage local{};
    sockaddr_storage remote{};
    socklen_t local_length = sizeof(local);
    socklen_t remote_length = sizeof(remote);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &local_length);
    ::getpeername(fd_, reinterpret_cast<sockaddr*>(&remote), &remote_length);
    ConntrackTuple tuple;
    std::tie(tuple.src, tuple.sport) = endpoint_of(local);
    std::tie(tuple.dst, tuple.dport) = endpoint_of(remote);
    return tuple;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// An FTP control connection driven line by line.
class FtpControl {
 public:
  explicit FtpControl(const IpAddress& server) : connection_(server, kFtpPort) {}

  bool connected() const { return connection_.connected(); }
  ConntrackTuple tuple() const { return connection_.tuple(); }

  // The server's next complete reply (all its lines), or empty on a timeout or a closed connection.
  std::string reply() {
    for (;;) {
      // A reply ends with the line that has a space after its code: "227 Entering Passive Mode (...)".
      for (size_t start = 0, end = 0; (end = pending_.find("\r\n", start)) != std::string::npos; start = end + 2) {
        if (end - start >= 4 && pending_[start + 3] == ' ') {
          std::string complete = pending_.substr(0, end + 2);
          pending_.erase(0, end + 2);
          return complete;
        }
      }
      char buffer[1024];
      const ssize_t got = ::recv(connection_.fd(), buffer, sizeof(buffer), 0);
      if (got <= 0) return {};
      pending_.append(buffer, static_cast<size_t>(got));
    }
  }

  std::string command(const std::string& line) {
    const std::string wire = line + "\r\n";
    if (::send(connection_.fd(), wire.data(), wire.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(wire.size())) {
      return {};
    }
    return reply();
  }

  bool log_in() {
    if (!reply().starts_with("220")) return false;
    // With no_anon_password, vsftpd lets anonymous in at USER.
    const std::string user = command("USER anonymous");
    return user.starts_with("230") || (user.starts_with("331") && command("PASS x").starts_with("230"));
  }

 private:
  TcpConnection connection_;
  std::string pending_;
};

// The data port of a 227 (PASV) or 229 (EPSV) reply, or 0.
uint16_t passive_port(const std::string& reply) {
  unsigned int fields[6] = {};
  if (reply.starts_with("227")) {
    const size_t open = reply.find('(');
    if (open == std::string::npos || std::sscanf(reply.c_str() + open, "(%u,%u,%u,%u,%u,%u)", &fields[0], &fields[1],
                                                 &fields[2], &fields[3], &fields[4], &fields[5]) != 6) {
      return 0;
    }
    return static_cast<uint16_t>(fields[4] * 256 + fields[5]);
  }
  const size_t bars = reply.find("(|||");
  if (!reply.starts_with("229") || bars == std::string::npos) return 0;
  return static_cast<uint16_t>(std::strtoul(reply.c_str() + bars + 4, nullptr, 10));
}

// Whether the kernel tracks a connection with this original tuple.
bool tracked(const ConntrackTuple& tuple) {
  nfct_handle* handle = nfct_open(CONNTRACK, 0);
  nf_conntrack* entry = nfct_new();
  if (handle == nullptr || entry == nullptr) {
    ADD_FAILURE() << "cannot open ctnetlink";
    if (entry != nullptr) nfct_destroy(entry);
    if (handle != nullptr) nfct_close(handle);
    return false;
  }
  const bool v4 = tuple.src.family == IpFamily::v4;
  nfct_set_attr_u8(entry, ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
  if (v4) {
    uint32_t src = 0;
    uint32_t dst = 0;
    std::memcpy(&src, tuple.src.bytes.data(), 4);
    std::memcpy(&dst, tuple.dst.bytes.data(), 4);
    nfct_set_attr_u32(entry, ATTR_IPV4_SRC, src);
    nfct_set_attr_u32(entry, ATTR_IPV4_DST, dst);
  } else {
    nfct_set_attr(entry, ATTR_IPV6_SRC, tuple.src.bytes.data());
    nfct_set_attr(entry, ATTR_IPV6_DST, tuple.dst.bytes.data());
  }
  nfct_set_attr_u8(entry, ATTR_L4PROTO, tuple.proto);
  nfct_set_attr_u16(entry, ATTR_PORT_SRC, htons(tuple.sport));
  nfct_set_attr_u16(entry, ATTR_PORT_DST, htons(tuple.dport));
  const bool found = nfct_query(handle, NFCT_Q_GET, entry) == 0;
  nfct_destroy(entry);
  nfct_close(handle);
  return found;
}

std::string describe(const Expectation& expectation) {
  return "{master " + expectation.master.to_string() + ", expected " + expectation.expected.to_string() +
         (expectation.any_source_port ? " (any source port)" : "") + ", helper " + expectation.helper + ", timeout " +
         std::to_string(expectation.timeout_s) + " s, id " + std::to_string(expectation.id) + "}";
}

using Pair = std::pair<std::string, std::string>;  // master and expected tuple, as text

Pair pair_of(const Expectation& expectation) {
  return {expectation.master.to_string(), expectation.expected.to_string()};
}

class ExpectationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "network namespaces and ctnetlink need root";
    for (const char* program : {"ip", "nft", "vsftpd", "curl"}) {
      if (!on_path(program)) GTEST_SKIP() << program << " is not installed";
    }
    topology_ = std::make_unique<FtpTopology>();
    const std::string problem = topology_->build();
    ASSERT_EQ(problem, "");
    visit_ = std::make_unique<NamespaceVisit>(topology_->client());
    ASSERT_TRUE(visit_->entered()) << "cannot enter " << topology_->client();
    ASSERT_TRUE(wait_for_server()) << "vsftpd does not answer: " << topology_->vsftpd_log();
    listener_ = std::make_unique<ExpectationListener>(
        [this](Event event, const Expectation& expectation) { events_.emplace_back(event, expectation); });
  }

  void TearDown() override {
    listener_.reset();
    visit_.reset();
    topology_.reset();
  }

  bool wait_for_server() const {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (std::chrono::steady_clock::now() < deadline) {
      FtpControl probe(kServerV4);
      if (probe.connected() && probe.reply().starts_with("220")) return true;
      ::poll(nullptr, 0, 20);
    }
    return false;
  }

  // Hands events to the listener's handler until `done` holds; false if it does not in time.
  bool pump_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    for (;;) {
      listener_->on_readable();
      if (done()) return true;
      if (std::chrono::steady_clock::now() > deadline) return false;
      pollfd readable{listener_->fd(), POLLIN, 0};
      ::poll(&readable, 1, 50);
    }
  }

  const Expectation* find_event(Event wanted, const std::function<bool(const Expectation&)>& matches) const {
    for (const auto& [event, expectation] : events_) {
      if (event == wanted && matches(expectation)) return &expectation;
    }
    return nullptr;
  }

  std::string events_text() const {
    std::string text;
    for (const auto& [event, expectation] : events_) {
      text += std::string(event == Event::created ? "  created " : "  destroyed ") + describe(expectation) + "\n";
    }
    return text;
  }

  // Runs curl in the client namespace; the created and destroyed events of its data connection's expectation must
  // come, from `expected_src` to `expected_dst` on a port in [low, high], and the file must arrive whole.
  void expect_transfer_mirrored(const std::vector<std::string>& curl_options, const std::string& url,
                                const IpAddress& expected_src, const IpAddress& expected_dst, uint16_t low,
                                uint16_t high) {
    const IpFamily family = expected_src.family;
    const auto is_the_data_connection = [&](const Expectation& expectation) {
      return expectation.master.src == client_address(family) && expectation.master.dst == server_address(family) &&
             expectation.master.dport == kFtpPort && expectation.expected.src == expected_src &&
             expectation.expected.dst == expected_dst && expectation.expected.dport >= low &&
             expectation.expected.dport <= high;
    };
    const std::string output = topology_->directory() + "/downloaded";
    std::vector<std::string> args = {"ip", "netns", "exec", topology_->client(), "curl", "-sS", "--max-time", "10"};
    args.insert(args.end(), curl_options.begin(), curl_options.end());
    args.insert(args.end(), {"-o", output, url});
    const pid_t curl = spawn(args, topology_->directory() + "/curl.out");
    ASSERT_GT(curl, 0);
    int curl_status = -1;
    bool curl_done = false;
    const auto curl_succeeded = [&] { return WIFEXITED(curl_status) && WEXITSTATUS(curl_status) == 0; };
    const auto announced_and_fulfilled = [&] {
      const Expectation* created = find_event(Event::created, is_the_data_connection);
      return created != nullptr && find_event(Event::destroyed, [&](const Expectation& expectation) {
                                     return pair_of(expectation) == pair_of(*created);
                                   }) != nullptr;
    };
    pump_until([&] {
      if (!curl_done && ::waitpid(curl, &curl_status, WNOHANG) == curl) curl_done = true;
      // A failed transfer announces nothing more.
      return curl_done && (!curl_succeeded() || announced_and_fulfilled());
    });
    if (!curl_done) {
      ::kill(curl, SIGKILL);
      ::waitpid(curl, &curl_status, 0);
    }
    ASSERT_TRUE(curl_done) << "curl did not finish";
    ASSERT_TRUE(curl_succeeded()) << joined(args) << ": " << read_file(topology_->directory() + "/curl.out")
                                  << topology_->vsftpd_log();
    EXPECT_EQ(read_file(output), topology_->served_file());
    ASSERT_TRUE(announced_and_fulfilled()) << "no created and destroyed expectation of the data connection; events:\n"
                                           << events_text();

    const Expectation& created = *find_event(Event::created, is_the_data_connection);
    EXPECT_NE(created.master.sport, 0) << describe(created);
    EXPECT_EQ(created.master.proto, 6);
    EXPECT_EQ(created.expected.proto, 6);
    EXPECT_TRUE(created.any_source_port) << describe(created);
    EXPECT_EQ(created.expected.sport, 0) << describe(created);
    EXPECT_EQ(created.helper, "ftp");
    EXPECT_GT(created.timeout_s, 0u);
    EXPECT_LE(created.timeout_s, kFtpExpectationTimeout);
    EXPECT_NE(created.id, 0u);
    // One data connection, one expectation: nothing else was announced.
    EXPECT_EQ(events_.size(), 2u) << events_text();
    EXPECT_EQ(listener_->lost(), 0u);
    std::cout << "created " << describe(created) << "\n";
  }

  std::unique_ptr<FtpTopology> topology_;
  std::unique_ptr<NamespaceVisit> visit_;
  std::unique_ptr<ExpectationListener> listener_;
  std::vector<std::pair<Event, Expectation>> events_;
};

TEST_F(ExpectationsTest, PassiveIpv4TransferIsAnnouncedThenFulfilled) {
  // curl asks EPSV first, and the helper reads the 229 reply.
  expect_transfer_mirrored({"--ftp-pasv"}, "ftp://10.99.0.2/file", kClientV4, kServerV4, kPassiveLow, kPassiveHigh);
}

TEST_F(ExpectationsTest, PassiveIpv4TransferWithPasvIsAnnouncedThenFulfilled) {
  expect_transfer_mirrored({"--ftp-pasv", "--disable-epsv"}, "ftp://10.99.0.2/file", kClientV4, kServerV4, kPassiveLow,
                           kPassiveHigh);
}

TEST_F(ExpectationsTest, ActiveIpv4TransferIsAnnouncedThenFulfilled) {
  // The server connects back: the expected connection runs from the server to the port the client named (EPRT).
  expect_transfer_mirrored({"--ftp-port", "10.99.0.1:40000-40010"}, "ftp://10.99.0.2/file", kServerV4, kClientV4,
                           kActiveLow, kActiveHigh);
}

TEST_F(ExpectationsTest, ActiveIpv4TransferWithPortIsAnnouncedThenFulfilled) {
  expect_transfer_mirrored({"--ftp-port", "10.99.0.1:40000-40010", "--disable-eprt"}, "ftp://10.99.0.2/file", kServerV4,
                           kClientV4, kActiveLow, kActiveHigh);
}

TEST_F(ExpectationsTest, PassiveIpv6TransferIsAnnouncedThenFulfilled) {
  expect_transfer_mirrored({"--ftp-pasv", "-g"}, "ftp://[fd99::2]/file", kClientV6, kServerV6, kPassiveLow,
                           kPassiveHigh);
}

TEST_F(ExpectationsTest, ActiveIpv6TransferIsAnnouncedThenFulfilled) {
  expect_transfer_mirrored({"--ftp-port", "[fd99::1]:40000-40010", "-g"}, "ftp://[fd99::2]/file", kServerV6, kClientV6,
                           kActiveLow, kActiveHigh);
}

TEST_F(ExpectationsTest, LostEventsAreCountedAndTheHandlerIsSetRightFromADump) {
  // The smallest receive buffer the kernel allows holds about one event: announcements made without reading
  // overflow it.
  const int tiny = 1;
  ASSERT_EQ(::setsockopt(listener_->fd(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny)), 0);
  FtpControl control(kServerV4);
  ASSERT_TRUE(control.connected());
  ASSERT_TRUE(control.log_in());
  const ConntrackTuple master = control.tuple();
  uint16_t last_port = 0;
  for (int announcement = 0; announcement < 12; ++announcement) {
    last_port = passive_port(control.command("PASV"));
    ASSERT_NE(last_port, 0);
  }
  // Each reply was read, so the helper had made its expectation (and dropped the one before) by then.
  ASSERT_TRUE(pump_until([&] { return listener_->lost() > 0; })) << "no events were lost";

  // The handler's view, replayed: each expectation created once, destroyed only once created.
  std::set<Pair> view;
  for (const auto& [event, expectation] : events_) {
    if (event == Event::created) {
      EXPECT_TRUE(view.insert(pair_of(expectation)).second) << "created twice: " << describe(expectation);
    } else {
      EXPECT_EQ(view.erase(pair_of(expectation)), 1u) << "destroyed unseen: " << describe(expectation);
    }
  }
  std::set<Pair> kernel;
  for (const Expectation& expectation : listener_->dump()) kernel.insert(pair_of(expectation));
  EXPECT_EQ(view, kernel) << events_text();
  ASSERT_EQ(kernel.size(), 1u);
  EXPECT_EQ(kernel.begin()->first, master.to_string());
  EXPECT_EQ(listener_->dump().front().expected.dport, last_port);
  std::cout << "lost " << listener_->lost() << " time(s); the handler heard " << events_.size()
            << " events for 12 announcements\n";
}

class ExpectationsPerFamilyTest : public ExpectationsTest, public ::testing::WithParamInterface<IpFamily> {};

TEST_P(ExpectationsPerFamilyTest, AnnouncementNamingAnotherAddressIsNotExpectedAndALaterOneReplacesTheLast) {
  const IpFamily family = GetParam();
  const bool v4 = family == IpFamily::v4;
  FtpControl control(server_address(family));
  ASSERT_TRUE(control.connected());
  ASSERT_TRUE(control.log_in());
  const ConntrackTuple master = control.tuple();
  const auto of_master = [&](const Expectation& expectation) { return expectation.master == master; };

  // Port 40000 of an address that is not the client's: vsftpd refuses it, and so does the helper.
  EXPECT_TRUE(control.command(v4 ? "PORT 10,99,0,3,156,64" : "EPRT |2|fd99::3|40000|").starts_with("5"));
  // Port 40001 of the client's own address.
  EXPECT_TRUE(control.command(v4 ? "PORT 10,99,0,1,156,65" : "EPRT |2|fd99::1|40001|").starts_with("200"));
  ASSERT_TRUE(pump_until([&] { return find_event(Event::created, of_master) != nullptr; })) << events_text();
  const Expectation active = *find_event(Event::created, of_master);
  EXPECT_EQ(active.expected.src, server_address(family));
  EXPECT_EQ(active.expected.dst, client_address(family));
  EXPECT_EQ(active.expected.dport, 40001) << "the refused announcement left an expectation: " << events_text();

  // The helper keeps one expectation per control connection: a passive announcement replaces the active one.
  const uint16_t port = passive_port(control.command(v4 ? "PASV" : "EPSV"));
  ASSERT_NE(port, 0);
  const auto passive = [&](const Expectation& expectation) {
    return of_master(expectation) && expectation.expected.dport == port;
  };
  ASSERT_TRUE(pump_until([&] { return find_event(Event::created, passive) != nullptr; })) << events_text();
  ASSERT_EQ(events_.size(), 3u) << events_text();
  EXPECT_EQ(events_[1].first, Event::destroyed);
  EXPECT_EQ(pair_of(events_[1].second), pair_of(active));
  EXPECT_EQ(events_[2].second.expected.src, client_address(family));
  EXPECT_EQ(events_[2].second.expected.dst, server_address(family));
  std::cout << "created " << describe(active) << "\nthen    " << describe(events_[2].second) << "\n";
}

TEST_P(ExpectationsPerFamilyTest, DeletesTheExpectationsOfOneControlConnectionOnly) {
  const IpFamily family = GetParam();
  FtpControl doomed(server_address(family));
  FtpControl spared(server_address(family));
  ASSERT_TRUE(doomed.connected() && spared.connected());
  ASSERT_TRUE(doomed.log_in() && spared.log_in());
  const uint16_t doomed_port = passive_port(doomed.command("EPSV"));
  const uint16_t spared_port = passive_port(spared.command("EPSV"));
  ASSERT_NE(doomed_port, 0);
  ASSERT_NE(spared_port, 0);
  const ConntrackTuple doomed_master = doomed.tuple();
  const ConntrackTuple spared_master = spared.tuple();

  // The expectations exist once the replies are read.
  const auto masters_in_dump = [&] {
    std::set<std::string> masters;
    for (const Expectation& expectation : listener_->dump()) masters.insert(expectation.master.to_string());
    return masters;
  };
  const std::vector<Expectation> before = listener_->dump();
  ASSERT_EQ(before.size(), 2u);
  for (const Expectation& expectation : before) {
    const bool of_doomed = expectation.master == doomed_master;
    EXPECT_TRUE(of_doomed || expectation.master == spared_master) << describe(expectation);
    EXPECT_EQ(expectation.expected.src, client_address(family));
    EXPECT_EQ(expectation.expected.dst, server_address(family));
    EXPECT_EQ(expectation.expected.dport, of_doomed ? doomed_port : spared_port);
    EXPECT_TRUE(expectation.any_source_port);
    EXPECT_EQ(expectation.helper, "ftp");
  }

  EXPECT_EQ(delete_expectations_of(doomed_master), "");
  EXPECT_EQ(masters_in_dump(), std::set<std::string>{spared_master.to_string()});
  ASSERT_TRUE(pump_until([&] {
    return find_event(Event::destroyed, [&](const Expectation& e) { return e.master == doomed_master; }) != nullptr;
  })) << events_text();
  // Nothing left to delete is no error.
  EXPECT_EQ(delete_expectations_of(doomed_master), "");
  EXPECT_EQ(masters_in_dump(), std::set<std::string>{spared_master.to_string()});
}

TEST_P(ExpectationsPerFamilyTest, DeletesTheConntrackEntryOfADataConnection) {
  const IpFamily family = GetParam();
  FtpControl control(server_address(family));
  ASSERT_TRUE(control.connected());
  ASSERT_TRUE(control.log_in());
  const uint16_t port = passive_port(control.command("EPSV"));
  ASSERT_NE(port, 0);
  const TcpConnection data(server_address(family), port);
  ASSERT_TRUE(data.connected());
  const ConntrackTuple data_tuple = data.tuple();
  ASSERT_TRUE(tracked(data_tuple)) << data_tuple.to_string();
  ASSERT_TRUE(tracked(control.tuple()));

  EXPECT_EQ(delete_conntrack_entry(data_tuple), "");
  EXPECT_FALSE(tracked(data_tuple)) << data_tuple.to_string();
  EXPECT_TRUE(tracked(control.tuple())) << "only the data connection's entry goes";
  // An entry the kernel does not track is no error.
  EXPECT_EQ(delete_conntrack_entry(data_tuple), "");
}

INSTANTIATE_TEST_SUITE_P(Families, ExpectationsPerFamilyTest, ::testing::Values(IpFamily::v4, IpFamily::v6),
                         [](const ::testing::TestParamInfo<IpFamily>& info) {
                           return info.param == IpFamily::v4 ? "Ipv4" : "Ipv6";
                         });

}  // namespace
}  // namespace portcullis::conntrack
