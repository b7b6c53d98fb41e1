// The FTP table in the kernel (root): applied, replaced, refused, filled with DNS bindings and removed, each test
// in a network namespace of its own (unshare), and read back the way an operator reads it: `nft -j list
// ruleset` for the structure, `nft list ruleset` for the comments. The last test sends real SYNs and asks
// conntrack which connections got the FTP helper.
#include "nft/ftp_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/ftp_table_spec.h"

namespace portcullis::nft {
namespace {

using test::cidr;
using test::gateway_spec;
using test::group_sources;

using nlohmann::json;

policy::IpAddress address(const char* text) {
  return *policy::IpAddress::parse(text);
}

int run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

std::string output_of(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return output;
  std::array<char, 4096> chunk{};
  size_t read = 0;
  while ((read = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0) output.append(chunk.data(), read);
  ::pclose(pipe);
  return output;
}

std::string listing() {
  return output_of("nft list ruleset");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The objects of one kind ("table", "set", "chain", "rule", "ct helper") in `nft -j list ruleset`.
std::vector<json> objects(const std::string& kind) {
  const json ruleset = json::parse(output_of("nft -j list ruleset"));
  std::vector<json> found;
  for (const json& entry : ruleset.at("nftables")) {
    if (entry.contains(kind)) found.push_back(entry.at(kind));
  }
  return found;
}

json named(const std::string& kind, const std::string& name) {
  for (const json& object : objects(kind)) {
    if (object.at("name") == name) return object;
  }
  return json();
}

std::vector<json> rules_of(const std::string& chain) {
  std::vector<json> found;
  for (const json& rule : objects("rule")) {
    if (rule.at("chain") == chain) found.push_back(rule);
  }
  return found;
}

// Address to timeout (seconds) of a set whose elements have timeouts.
std::map<std::string, int64_t> timeouts(const std::string& set) {
  std::map<std::string, int64_t> found;
  const json object = named("set", set);
  if (!object.contains("elem")) return found;
  for (const json& element : object.at("elem")) {
    found[element.at("elem").at("val").get<std::string>()] = element.at("elem").at("timeout").get<int64_t>();
  }
  return found;
}

TableSpec host_spec() {
  TableSpec spec;
  spec.hook = TableSpec::Hook::output;
  spec.ftp_rules = {{"other", {}, {cidr("198.18.0.0/24")}, false, {}}};
  return spec;
}

class FtpTableKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "nftables needs root";
    if (run("nft --version") != 0) GTEST_SKIP() << "no nft to read the table back with";
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << "cannot make a network namespace: " << std::strerror(errno);
    // The socket belongs to the namespace it is opened in: this test's.
    table_ = std::make_unique<FtpTable>();
  }

  std::unique_ptr<FtpTable> table_;
};

TEST_F(FtpTableKernelTest, AppliedTableHoldsTheHelperTheSetsAndTheChains) {
  EXPECT_FALSE(table_->exists());
  ASSERT_EQ(table_->apply(gateway_spec()), "");
  EXPECT_TRUE(table_->exists());

  const std::vector<json> tables = objects("table");
  ASSERT_EQ(tables.size(), 1u);
  EXPECT_EQ(tables[0].at("family"), "inet");
  EXPECT_EQ(tables[0].at("name"), "portcullis");

  const json helper = named("ct helper", "ftp");
  ASSERT_FALSE(helper.is_null());
  EXPECT_EQ(helper.at("type"), "ftp");
  EXPECT_EQ(helper.at("protocol"), "tcp");
  EXPECT_EQ(helper.at("l3proto"), "inet");

  EXPECT_EQ(named("set", "ftp0_v4").at("elem"), json::parse(R"([{"prefix": {"addr": "198.18.0.0", "len": 24}}])"));
  EXPECT_EQ(named("set", "ftp0_v4").at("flags"), json::parse(R"(["interval"])"));
  EXPECT_EQ(named("set", "ftp0_v6").at("elem"), json::parse(R"(["2001:db8::21"])"));
  for (const char* dns_set : {"ftp1_dns_v4", "ftp1_dns_v6"}) {
    const json set = named("set", dns_set);
    ASSERT_FALSE(set.is_null()) << dns_set;
    EXPECT_EQ(set.at("flags"), json::parse(R"(["timeout"])"));
    EXPECT_FALSE(set.contains("elem"));
  }

  const json helpers = named("chain", "ftp_helpers");
  EXPECT_EQ(helpers.at("type"), "filter");
  EXPECT_EQ(helpers.at("hook"), "prerouting");
  EXPECT_EQ(helpers.at("prio"), 0);
  EXPECT_EQ(helpers.at("policy"), "accept");
  const json masquerade = named("chain", "gateway_masquerade");
  EXPECT_EQ(masquerade.at("type"), "nat");
  EXPECT_EQ(masquerade.at("hook"), "postrouting");
  EXPECT_EQ(masquerade.at("prio"), 100);

  // Per rule and family: files' v4 and v6 addresses, mirror's v4 and v6 DNS sets.
  const std::vector<json> helper_rules = rules_of("ftp_helpers");
  ASSERT_EQ(helper_rules.size(), 4u);
  for (const json& rule : helper_rules) {
    EXPECT_TRUE(contains(rule.at("comment").get<std::string>(), "portcullis rule ")) << rule;
    const json& expressions = rule.at("expr");
    EXPECT_NE(std::find(expressions.begin(), expressions.end(), json::parse(R"({"ct helper": "ftp"})")),
              expressions.end())
        << rule;
    EXPECT_NE(
        std::find(expressions.begin(), expressions.end(), json::parse(R"({"counter": {"packets": 0, "bytes": 0}})")),
        expressions.end())
        << rule;
  }
  EXPECT_EQ(rules_of("gateway_masquerade").size(), 2u);

  // What an operator reads: comments everywhere, and the rules as the policy said them.
  const std::string text = listing();
  EXPECT_TRUE(contains(text,
                       "comment \"owned by portcullis: FTP helper assignment and gateway NAT, replaced whole "
                       "on each reload\""))
      << text;
  EXPECT_TRUE(contains(text, "comment \"portcullis: the FTP helper on forwarded control connections of ftp rules\""))
      << text;
  EXPECT_TRUE(contains(text, "comment \"portcullis rule files: FTP servers by address\"")) << text;
  EXPECT_TRUE(contains(text,
                       "ip saddr { 10.88.1.0/24, 10.88.2.0/24 } ip daddr @ftp0_v4 tcp dport { 21, 2121 } ct helper "
                       "set \"ftp\" counter packets 0 bytes 0 comment \"portcullis rule files: FTP control, its data "
                       "connections follow the helper\""))
      << text;
  EXPECT_TRUE(contains(text,
                       "ip6 daddr @ftp1_dns_v6 tcp dport 21 ct helper set \"ftp\" counter packets 0 bytes 0 comment "
                       "\"portcullis rule mirror: FTP control, its data connections follow the helper\""))
      << text;
  EXPECT_TRUE(contains(text,
                       "oifname \"eth0\" ip6 saddr { fd88:1::/64 } counter packets 0 bytes 0 masquerade comment "
                       "\"portcullis: masquerade through eth0\""))
      << text;
}

TEST_F(FtpTableKernelTest, HostModeHooksOutputWithoutNat) {
  ASSERT_EQ(table_->apply(host_spec()), "");
  EXPECT_EQ(named("chain", "ftp_helpers").at("hook"), "output");
  EXPECT_TRUE(named("chain", "gateway_masquerade").is_null());
}

TEST_F(FtpTableKernelTest, ApplyingAnotherSpecReplacesTheWholeTable) {
  ASSERT_EQ(table_->apply(gateway_spec()), "");
  ASSERT_EQ(table_->apply(host_spec()), "");

  EXPECT_EQ(objects("table").size(), 1u);
  EXPECT_EQ(named("chain", "ftp_helpers").at("hook"), "output");
  EXPECT_TRUE(named("chain", "gateway_masquerade").is_null());
  EXPECT_TRUE(named("set", "ftp0_v6").is_null());
  EXPECT_TRUE(named("set", "ftp1_dns_v4").is_null());
  EXPECT_EQ(named("set", "ftp0_v4").at("elem"), json::parse(R"([{"prefix": {"addr": "198.18.0.0", "len": 24}}])"));
  const std::vector<json> rules = rules_of("ftp_helpers");
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_TRUE(contains(rules[0].at("comment").get<std::string>(), "portcullis rule other:"));
  const std::string text = listing();
  EXPECT_FALSE(contains(text, "files")) << text;
  EXPECT_FALSE(contains(text, "mirror")) << text;
}

TEST_F(FtpTableKernelTest, RefusedSpecLeavesThePreviousTableAsItWas) {
  ASSERT_EQ(table_->apply(gateway_spec()), "");
  const std::string before = listing();

  // The kernel compares an interface name in at most 16 bytes; it refuses this rule, after the batch has
  // deleted the table and made most of the new one.
  TableSpec refused = host_spec();
  refused.masquerade_iface = "a-name-past-ifnamsiz";
  const std::string error = table_->apply(refused);
  EXPECT_TRUE(contains(error, "gateway_masquerade")) << error;
  EXPECT_TRUE(contains(error, std::strerror(EOVERFLOW))) << error;

  EXPECT_EQ(listing(), before);
  // And the table applied last is still the one bindings go to.
  EXPECT_EQ(table_->add_bound_address(1, address("198.18.0.21"), 60), "");
}

TEST_F(FtpTableKernelTest, BoundAddressesGoIntoTheDnsSetsWithTheirTimeouts) {
  ASSERT_EQ(table_->apply(gateway_spec()), "");
  EXPECT_EQ(table_->add_bound_address(1, address("198.18.0.21"), 60), "");
  EXPECT_EQ(table_->add_bound_address(1, address("::ffff:198.18.0.22"), 90), "");
  EXPECT_EQ(table_->add_bound_address(1, address("2001:db8::21"), 120), "");
  EXPECT_EQ(timeouts("ftp1_dns_v4"), (std::map<std::string, int64_t>{{"198.18.0.21", 60}, {"198.18.0.22", 90}}));
  EXPECT_EQ(timeouts("ftp1_dns_v6"), (std::map<std::string, int64_t>{{"2001:db8::21", 120}}));

  // A new answer for an address already there: its new TTL counts.
  EXPECT_EQ(table_->add_bound_address(1, address("198.18.0.21"), 300), "");
  EXPECT_EQ(timeouts("ftp1_dns_v4").at("198.18.0.21"), 300);

  // Rule 0 names its servers by address; there is no rule 2.
  EXPECT_NE(table_->add_bound_address(0, address("198.18.0.23"), 60), "");
  EXPECT_NE(table_->add_bound_address(2, address("198.18.0.23"), 60), "");

  // A reload starts the sets empty.
  ASSERT_EQ(table_->apply(gateway_spec()), "");
  EXPECT_TRUE(timeouts("ftp1_dns_v4").empty());
}

TEST_F(FtpTableKernelTest, RemoveDeletesTheTableAndRemovingAgainIsNoError) {
  ASSERT_EQ(table_->apply(gateway_spec()), "");
  EXPECT_EQ(table_->remove(), "");
  EXPECT_FALSE(table_->exists());
  EXPECT_TRUE(objects("table").empty());
  EXPECT_EQ(table_->remove(), "");
  EXPECT_NE(table_->add_bound_address(1, address("198.18.0.21"), 60), "");
}

// A SYN from this host to `server`:`port`, left in SYN_SENT: a conntrack entry that shows its helper.
int connect_to(const char* server, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, server, &to.sin_addr);
  (void)::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  return fd;
}

// The conntrack -L line of the TCP connection to `server`:`port`.
std::string conntrack_entry(const std::string& conntrack, const std::string& server, uint16_t port) {
  size_t start = 0;
  while (start < conntrack.size()) {
    size_t end = conntrack.find('\n', start);
    if (end == std::string::npos) end = conntrack.size();
    std::string line = conntrack.substr(start, end - start);
    if (contains(line, " dst=" + server + " ") && contains(line, " dport=" + std::to_string(port) + " ")) {
      return line;
    }
    start = end + 1;
  }
  return {};
}

TEST_F(FtpTableKernelTest, HelperFollowsControlConnectionsOfFtpRulesOnly) {
  if (run("conntrack --version") != 0) GTEST_SKIP() << "no conntrack to read the helpers with";
  ASSERT_EQ(table_->apply(host_spec()), "");
  ASSERT_EQ(run("ip link add pc0 type veth peer name pc1 && ip addr add 10.88.1.2/24 dev pc0 && ip link set pc0 up "
                "&& ip link set pc1 up && ip route add 198.18.0.0/15 dev pc0"),
            0);

  const std::vector<int> sockets = {connect_to("198.18.0.21", 21), connect_to("198.18.0.21", 2121),
                                    connect_to("198.18.1.21", 21)};
  const std::string conntrack = output_of("conntrack -L -p tcp 2>/dev/null");
  for (const int fd : sockets) ::close(fd);

  const std::string control = conntrack_entry(conntrack, "198.18.0.21", 21);
  ASSERT_FALSE(control.empty()) << conntrack;
  EXPECT_TRUE(contains(control, "helper=ftp")) << control;
  const std::string other_port = conntrack_entry(conntrack, "198.18.0.21", 2121);
  ASSERT_FALSE(other_port.empty()) << conntrack;
  EXPECT_FALSE(contains(other_port, "helper=")) << other_port;
  const std::string other_server = conntrack_entry(conntrack, "198.18.1.21", 21);
  ASSERT_FALSE(other_server.empty()) << conntrack;
  EXPECT_FALSE(contains(other_server, "helper=")) << other_server;

  const json counter = rules_of("ftp_helpers").at(0).at("expr").back();
  EXPECT_EQ(counter.at("counter").at("packets"), 1) << counter;
}

}  // namespace
}  // namespace portcullis::nft
