// What the daemon makes of the policy's ftp rules and of the kernel's FTP expectations, before any of it reaches
// the kernel: the nftables table's spec, and the data plane's keys for an expected connection.
#include "conntrack/ftp_data.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "policy/policy_loader.h"
#include "support/data_path_scenario.h"

namespace portcullis::conntrack {
namespace {

policy::IpAddress address(const char* text) {
  return *policy::IpAddress::parse(text);
}

ConntrackTuple tuple(const char* src, uint16_t sport, const char* dst, uint16_t dport) {
  ConntrackTuple t;
  t.src = address(src);
  t.dst = address(dst);
  t.sport = sport;
  t.dport = dport;
  return t;
}

std::shared_ptr<const policy::CompiledPolicy> compile(const char* yaml) {
  policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
  EXPECT_TRUE(loaded.policy.has_value());
  return policy::compile_policy(std::move(*loaded.policy));
}

constexpr const char* kPolicy = R"(version: 1
rules:
  - {name: web, dst: allowed.test, proto: https}
  - {name: files, dst: [198.18.0.21, "2001:db8::21"], proto: ftp, ports: [21, 2121]}
  - {name: no-ftp-here, dst: 198.18.0.20, proto: ftp, action: deny}
groups:
  - name: sandbox
    sources: [10.88.1.0/24, "fd88:1::/64"]
    rules:
      - {name: mirror, dst: ftp.example.org, proto: ftp}
)";

TEST(FtpTableSpec, EveryFtpAllowRuleGetsTheHelperOnItsPortsDestinationsAndGroupsSources) {
  const auto policy = compile(kPolicy);
  std::vector<size_t> rule_of_entry;
  const nft::TableSpec spec = ftp_table_spec(*policy, policy::Mode::gateway, std::nullopt, &rule_of_entry);
  EXPECT_EQ(spec.hook, nft::TableSpec::Hook::prerouting);
  ASSERT_EQ(spec.ftp_rules.size(), 2u) << "the deny rule and the https rule get no helper";
  const nft::FtpRule& files = spec.ftp_rules[0];
  EXPECT_EQ(files.name, "files");
  ASSERT_EQ(files.ports.size(), 2u);
  EXPECT_EQ(files.ports[1].lo, 2121);
  ASSERT_EQ(files.destinations.size(), 2u);
  EXPECT_EQ(files.destinations[0].network.to_string(), "198.18.0.21");
  EXPECT_FALSE(files.by_name);
  EXPECT_TRUE(files.sources.empty()) << "a top-level rule applies to every source";
  const nft::FtpRule& mirror = spec.ftp_rules[1];
  EXPECT_TRUE(mirror.by_name);
  EXPECT_TRUE(mirror.destinations.empty());
  ASSERT_EQ(mirror.sources.size(), 2u);
  EXPECT_EQ(mirror.sources[0].network.to_string(), "10.88.1.0");
  EXPECT_EQ(policy->rules()[rule_of_entry[0]].name, "files");
  EXPECT_EQ(policy->rules()[rule_of_entry[1]].name, "mirror");
  EXPECT_FALSE(spec.masquerade_iface.has_value());
}

TEST(FtpTableSpec, HostModeAssignsAtOutputAndMasqueradeCoversEveryGroup) {
  const auto policy = compile(R"(version: 1
rules:
  - {name: files, dst: 198.18.0.21, proto: ftp}
groups:
  - {name: sandbox, sources: [10.88.1.0/24, "fd88:1::/64"]}
  - {name: builders, sources: [10.88.2.0/24]}
)");
  EXPECT_EQ(ftp_table_spec(*policy, policy::Mode::host).hook, nft::TableSpec::Hook::output);
  EXPECT_FALSE(ftp_table_spec(*policy, policy::Mode::host, std::string("eth0")).masquerade_iface.has_value())
      << "NAT is for gateways";
  const nft::TableSpec nat = ftp_table_spec(*policy, policy::Mode::gateway, std::string("out0"));
  EXPECT_EQ(nat.masquerade_iface, "out0");
  ASSERT_EQ(nat.masquerade_sources.size(), 3u);
  EXPECT_EQ(nat.masquerade_sources[2].network.to_string(), "10.88.2.0") << "the second group's too";
}

TEST(FtpAllowRule, IsAnAllowOfProtoFtp) {
  const auto policy = compile(kPolicy);
  EXPECT_FALSE(is_ftp_allow_rule(*policy, 0));
  EXPECT_TRUE(is_ftp_allow_rule(*policy, 1));
  EXPECT_FALSE(is_ftp_allow_rule(*policy, 2)) << "a deny";
  EXPECT_FALSE(is_ftp_allow_rule(*policy, PC_RULE_NONE));
}

TEST(ExpectKey, IsTheOpenerTheDestinationAndItsPortAnySourcePort) {
  const pc_expect_key key = expect_key_of(tuple("10.88.1.2", 0, "198.18.0.21", 30001));
  EXPECT_EQ(key.family, PC_FAMILY_IPV4);
  EXPECT_EQ(key.proto, 6);
  EXPECT_EQ(key.dport, 30001);
  EXPECT_EQ(key.src.bytes[0], 10);
  EXPECT_EQ(key.dst.bytes[3], 21);
  EXPECT_EQ(key.pad, 0u);
  const pc_expect_key v6 = expect_key_of(tuple("fd88:1::2", 0, "2001:db8::21", 30002));
  EXPECT_EQ(v6.family, PC_FAMILY_IPV6);
  EXPECT_EQ(v6.src.bytes[0], 0xfd);
}

TEST(ExpectKey, TheControlConnectionsFlowKeyIsTheDataPlanesForEitherDirection) {
  const pc_flow_key forward = flow_key_of(tuple("10.88.1.2", 40000, "198.18.0.21", 21));
  const pc_flow_key reverse = flow_key_of(tuple("198.18.0.21", 21, "10.88.1.2", 40000));
  EXPECT_EQ(std::memcmp(&forward, &reverse, sizeof(forward)), 0);
  const pc_flow_key data_plane = test::flow_key("10.88.1.2", 40000, "198.18.0.21", 21, 6);
  EXPECT_EQ(std::memcmp(&forward, &data_plane, sizeof(forward)), 0) << "the data plane's key of that connection";
}

TEST(SeenByDataPlane, PassiveAndActiveWithoutNatAreAsAnnounced) {
  Expectation passive;
  passive.master = tuple("10.88.1.2", 40000, "198.18.0.21", 21);
  passive.expected = tuple("10.88.1.2", 0, "198.18.0.21", 30001);
  EXPECT_EQ(seen_by_data_plane(passive), passive.expected);
  Expectation active;
  active.master = passive.master;
  active.expected = tuple("198.18.0.21", 0, "10.88.1.2", 40005);
  EXPECT_EQ(seen_by_data_plane(active), active.expected);
}

TEST(SeenByDataPlane, AnActiveConnectionBehindNatGoesToTheClientOnTheAnnouncedPort) {
  Expectation active;
  active.master = tuple("10.88.1.2", 40000, "198.18.0.21", 21);
  active.expected = tuple("198.18.0.21", 0, "198.18.0.1", 40005);  // to the gateway's outside address
  const ConntrackTuple seen = seen_by_data_plane(active);
  EXPECT_EQ(seen.src.to_string(), "198.18.0.21");
  EXPECT_EQ(seen.dst.to_string(), "10.88.1.2");
  EXPECT_EQ(seen.dport, 40005);
}

}  // namespace
}  // namespace portcullis::conntrack
