// The batch that replaces table inet portcullis, as libnftnl prints it, for specs without the kernel. The
// expected text was checked against `nft --debug=netlink -f` for the same rules written in nft's language:
// line for line the same, but for two things nft does that we do not. nft turns a one-element set into a
// comparison (`ip6 saddr fd88:1::/64`), and joins adjacent prefixes of an anonymous set into one range (listed as
// `10.88.1.0-10.88.2.255`); sources stay a set of the prefixes the policy named, which lists as written.
#include "nft/ftp_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "support/ftp_table_spec.h"

namespace portcullis::nft {
namespace {

using test::cidr;
using test::gateway_spec;
using test::group_sources;

std::string joined(const std::vector<std::string>& messages) {
  std::string text;
  for (const std::string& message : messages) text += message + "\n";
  return text;
}

std::vector<std::string> starting(const std::vector<std::string>& messages, const std::string& prefix) {
  std::vector<std::string> found;
  for (const std::string& message : messages) {
    if (message.rfind(prefix, 0) == 0) found.push_back(message);
  }
  return found;
}

// nft -f of:
//   table inet portcullis {
//     ct helper ftp { type "ftp" protocol tcp; l3proto inet; }
//     set ftp0_v4 { type ipv4_addr; flags interval; elements = { 198.18.0.0/24 } }
//     set ftp0_v6 { type ipv6_addr; flags interval; elements = { 2001:db8::21 } }
//     set ftp1_dns_v4 { type ipv4_addr; flags timeout; }
//     set ftp1_dns_v6 { type ipv6_addr; flags timeout; }
//     chain ftp_helpers {
//       type filter hook prerouting priority filter; policy accept;
//       ip saddr { 10.88.1.0/24, 10.88.2.0/24 } ip daddr @ftp0_v4 tcp dport { 21, 2121 } ct helper set "ftp" counter
//       ip6 saddr { fd88:1::/64 } ip6 daddr @ftp0_v6 tcp dport { 21, 2121 } ct helper set "ftp" counter
//       ip daddr @ftp1_dns_v4 tcp dport 21 ct helper set "ftp" counter
//       ip6 daddr @ftp1_dns_v6 tcp dport 21 ct helper set "ftp" counter
//     }
//     chain gateway_masquerade {
//       type nat hook postrouting priority srcnat; policy accept;
//       oifname "eth0" ip saddr { 10.88.1.0/24, 10.88.2.0/24 } counter masquerade
//       oifname "eth0" ip6 saddr { fd88:1::/64 } counter masquerade
//     }
//   }
// with the comments below.
TEST(FtpTableBatch, IsWhatNftSendsForTheSameRules) {
  const std::vector<std::string> messages = render_batch(gateway_spec());
  EXPECT_EQ(joined(messages), R"(NEWTABLE table portcullis inet flags 0 use 0 handle 0
DELTABLE table portcullis inet flags 0 use 0 handle 0
NEWTABLE table portcullis inet flags 0 use 0 handle 0
NEWOBJ table portcullis name ftp use 0 [ ct_helper name ftp family 1 protocol 6 ]
NEWSET ftp0_v4 portcullis 4
NEWSETELEM ftp0_v4 portcullis 0
  element 00000000  : 1 [end]
  element 000012c6  : 0 [end]
  element 000112c6  : 1 [end]
NEWSET ftp0_v6 portcullis 4
NEWSETELEM ftp0_v6 portcullis 0
  element 00000000 00000000 00000000 00000000  : 1 [end]
  element b80d0120 00000000 00000000 21000000  : 0 [end]
  element b80d0120 00000000 00000000 22000000  : 1 [end]
NEWSET ftp1_dns_v4 portcullis 10
NEWSET ftp1_dns_v6 portcullis 10
NEWCHAIN inet portcullis ftp_helpers use 0 type filter hook prerouting prio 0 policy accept packets 0 bytes 0
NEWSET __set%d portcullis 7 size 5
NEWSETELEM __set%d portcullis 0
  element 00000000  : 1 [end]
  element 0001580a  : 0 [end]
  element 0002580a  : 1 [end]
  element 0002580a  : 0 [end]
  element 0003580a  : 1 [end]
NEWSET __set%d portcullis 3 size 2
NEWSETELEM __set%d portcullis 0
  element 00001500  : 0 [end]
  element 00004908  : 0 [end]
NEWRULE inet portcullis ftp_helpers
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  [ payload load 4b @ network header + 16 => reg 1 ]
  [ lookup reg 1 set ftp0_v4 ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  [ objref type 3 name ftp ]
  [ counter pkts 0 bytes 0 ]
  userdata = { \x00Kportcullis rule files: FTP control, its data connections follow the helper\x00 }
NEWSET __set%d portcullis 7 size 3
NEWSETELEM __set%d portcullis 0
  element 00000000 00000000 00000000 00000000  : 1 [end]
  element 010088fd 00000000 00000000 00000000  : 0 [end]
  element 010088fd 01000000 00000000 00000000  : 1 [end]
NEWSET __set%d portcullis 3 size 2
NEWSETELEM __set%d portcullis 0
  element 00001500  : 0 [end]
  element 00004908  : 0 [end]
NEWRULE inet portcullis ftp_helpers
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x0000000a ]
  [ payload load 16b @ network header + 8 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  [ payload load 16b @ network header + 24 => reg 1 ]
  [ lookup reg 1 set ftp0_v6 ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  [ objref type 3 name ftp ]
  [ counter pkts 0 bytes 0 ]
  userdata = { \x00Kportcullis rule files: FTP control, its data connections follow the helper\x00 }
NEWRULE inet portcullis ftp_helpers
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 16 => reg 1 ]
  [ lookup reg 1 set ftp1_dns_v4 ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ cmp eq reg 1 0x00001500 ]
  [ objref type 3 name ftp ]
  [ counter pkts 0 bytes 0 ]
  userdata = { \x00Lportcullis rule mirror: FTP control, its data connections follow the helper\x00 }
NEWRULE inet portcullis ftp_helpers
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x0000000a ]
  [ payload load 16b @ network header + 24 => reg 1 ]
  [ lookup reg 1 set ftp1_dns_v6 ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ cmp eq reg 1 0x00001500 ]
  [ objref type 3 name ftp ]
  [ counter pkts 0 bytes 0 ]
  userdata = { \x00Lportcullis rule mirror: FTP control, its data connections follow the helper\x00 }
NEWCHAIN inet portcullis gateway_masquerade use 0 type nat hook postrouting prio 100 policy accept packets 0 bytes 0
NEWSET __set%d portcullis 7 size 5
NEWSETELEM __set%d portcullis 0
  element 00000000  : 1 [end]
  element 0001580a  : 0 [end]
  element 0002580a  : 1 [end]
  element 0002580a  : 0 [end]
  element 0003580a  : 1 [end]
NEWRULE inet portcullis gateway_masquerade
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  [ counter pkts 0 bytes 0 ]
  [ masq ]
  userdata = { \x00$portcullis: masquerade through eth0\x00 }
NEWSET __set%d portcullis 7 size 3
NEWSETELEM __set%d portcullis 0
  element 00000000 00000000 00000000 00000000  : 1 [end]
  element 010088fd 00000000 00000000 00000000  : 0 [end]
  element 010088fd 01000000 00000000 00000000  : 1 [end]
NEWRULE inet portcullis gateway_masquerade
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x0000000a ]
  [ payload load 16b @ network header + 8 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  [ counter pkts 0 bytes 0 ]
  [ masq ]
  userdata = { \x00$portcullis: masquerade through eth0\x00 }
)");
  EXPECT_EQ(messages.size(), 30u);
}

TEST(FtpTableBatch, EmptySpecStillMakesTheTableAndTheHelper) {
  EXPECT_EQ(joined(render_batch(TableSpec{})), R"(NEWTABLE table portcullis inet flags 0 use 0 handle 0
DELTABLE table portcullis inet flags 0 use 0 handle 0
NEWTABLE table portcullis inet flags 0 use 0 handle 0
NEWOBJ table portcullis name ftp use 0 [ ct_helper name ftp family 1 protocol 6 ]
NEWCHAIN inet portcullis ftp_helpers use 0 type filter hook prerouting prio 0 policy accept packets 0 bytes 0
)");
}

TEST(FtpTableBatch, HostModeHooksOutputAndDefaultsToPort21) {
  TableSpec spec;
  spec.hook = TableSpec::Hook::output;
  spec.ftp_rules = {{"files", {}, {cidr("198.18.0.0/24")}, false, {}}};
  const std::vector<std::string> messages = render_batch(spec);
  EXPECT_EQ(starting(messages, "NEWCHAIN"),
            std::vector<std::string>{"NEWCHAIN inet portcullis ftp_helpers use 0 type filter hook output prio 0 "
                                     "policy accept packets 0 bytes 0"});
  EXPECT_EQ(starting(messages, "NEWRULE"), std::vector<std::string>{R"(NEWRULE inet portcullis ftp_helpers
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 16 => reg 1 ]
  [ lookup reg 1 set ftp0_v4 ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ cmp eq reg 1 0x00001500 ]
  [ objref type 3 name ftp ]
  [ counter pkts 0 bytes 0 ]
  userdata = { \x00Kportcullis rule files: FTP control, its data connections follow the helper\x00 })"});
}

// The port match of the only rule of a spec with these control ports.
std::string port_match(const std::vector<PortRange>& ports) {
  TableSpec spec;
  spec.ftp_rules = {{"r", ports, {cidr("198.18.0.21")}, false, {}}};
  const std::vector<std::string> messages = render_batch(spec);
  std::string match;
  for (const std::string& message : messages) {
    if (message.rfind("NEWSET __set%d", 0) == 0 || message.rfind("NEWSETELEM __set%d", 0) == 0) match += message + "\n";
  }
  const std::string rule = starting(messages, "NEWRULE").at(0);
  const size_t from = rule.find("[ payload load 2b @ transport header + 2 => reg 1 ]");
  const size_t to = rule.find("[ objref");
  return match + rule.substr(from, to - from);
}

TEST(FtpTableBatch, PortsMatchAsNftMatchesThem) {
  EXPECT_EQ(port_match({{2121, 2121}, {2121, 2121}}),
            "[ payload load 2b @ transport header + 2 => reg 1 ]\n  [ cmp eq reg 1 0x00004908 ]\n  ");
  EXPECT_EQ(port_match({{21, 25}}),
            "[ payload load 2b @ transport header + 2 => reg 1 ]\n  [ cmp gte reg 1 0x00001500 ]\n  "
            "[ cmp lte reg 1 0x00001900 ]\n  ");
  EXPECT_EQ(port_match({{25, 21}}), port_match({{21, 25}}));
  EXPECT_EQ(port_match({{2121, 2121}, {21, 21}}), R"(NEWSET __set%d portcullis 3 size 2
NEWSETELEM __set%d portcullis 0
  element 00001500  : 0 [end]
  element 00004908  : 0 [end]
[ payload load 2b @ transport header + 2 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  )");
  // Overlapping ranges are joined: the kernel refuses overlapping intervals. The elements are nft's; its size
  // (a hint for the kernel's choice of set type) counts one more.
  EXPECT_EQ(port_match({{21, 21}, {2121, 2130}, {2125, 2140}, {65535, 65535}}), R"(NEWSET __set%d portcullis 7 size 6
NEWSETELEM __set%d portcullis 0
  element 00000000  : 1 [end]
  element 00001500  : 0 [end]
  element 00001600  : 1 [end]
  element 00004908  : 0 [end]
  element 00005d08  : 1 [end]
  element 0000ffff  : 0 [end]
[ payload load 2b @ transport header + 2 => reg 1 ]
  [ lookup reg 1 set __set%d ]
  )");
}

TEST(FtpTableBatch, OverlappingDestinationsAreJoinedAndAdjacentOnesKept) {
  TableSpec spec;
  spec.ftp_rules = {{"r", {}, {cidr("11.0.0.0/8"), cidr("10.1.0.0/16"), cidr("10.0.0.0/8")}, false, {}}};
  EXPECT_EQ(starting(render_batch(spec), "NEWSETELEM ftp0_v4"),
            std::vector<std::string>{R"(NEWSETELEM ftp0_v4 portcullis 0
  element 00000000  : 1 [end]
  element 0000000a  : 0 [end]
  element 0000000b  : 1 [end]
  element 0000000b  : 0 [end]
  element 0000000c  : 1 [end])"});

  spec.ftp_rules = {{"r", {}, {cidr("0.0.0.0/0")}, false, {}}};
  EXPECT_EQ(starting(render_batch(spec), "NEWSETELEM ftp0_v4"),
            std::vector<std::string>{"NEWSETELEM ftp0_v4 portcullis 0\n  element 00000000  : 0 [end]"});
}

TEST(FtpTableBatch, SourcesOfOneFamilyLeaveTheOtherFamilyWithoutHelper) {
  TableSpec spec;
  spec.ftp_rules = {{"r", {}, {cidr("198.18.0.21"), cidr("2001:db8::21")}, true, {cidr("10.88.1.0/24")}}};
  const std::vector<std::string> messages = render_batch(spec);
  EXPECT_EQ(starting(messages, "NEWSET ftp"),
            (std::vector<std::string>{"NEWSET ftp0_v4 portcullis 4", "NEWSET ftp0_dns_v4 portcullis 10"}));
  const std::vector<std::string> rules = starting(messages, "NEWRULE");
  ASSERT_EQ(rules.size(), 2u);
  for (const std::string& rule : rules) {
    EXPECT_NE(rule.find("[ cmp eq reg 1 0x00000002 ]"), std::string::npos) << rule;
    EXPECT_NE(rule.find("[ payload load 4b @ network header + 12 => reg 1 ]"), std::string::npos) << rule;
  }
  EXPECT_NE(rules[0].find("set ftp0_v4 ]"), std::string::npos);
  EXPECT_NE(rules[1].find("set ftp0_dns_v4 ]"), std::string::npos);
}

TEST(FtpTableBatch, ByNameRuleHasEmptyTimeoutSetsOfBothFamilies) {
  TableSpec spec;
  spec.ftp_rules = {{"a", {}, {cidr("198.18.0.21")}, false, {}}, {"b", {}, {}, true, {}}};
  const std::vector<std::string> messages = render_batch(spec);
  EXPECT_EQ(starting(messages, "NEWSET "),
            (std::vector<std::string>{"NEWSET ftp0_v4 portcullis 4", "NEWSET ftp1_dns_v4 portcullis 10",
                                      "NEWSET ftp1_dns_v6 portcullis 10"}));
  EXPECT_EQ(starting(messages, "NEWSETELEM ftp1_dns").size(), 0u);
  EXPECT_EQ(starting(messages, "NEWRULE").size(), 3u);
}

TEST(FtpTableBatch, MasqueradeWithoutSourcesIsOneRuleForBothFamilies) {
  TableSpec spec;
  spec.masquerade_iface = "outside0";
  const std::vector<std::string> messages = render_batch(spec);
  EXPECT_EQ(starting(messages, "NEWCHAIN inet portcullis gateway_masquerade"),
            std::vector<std::string>{"NEWCHAIN inet portcullis gateway_masquerade use 0 type nat hook postrouting "
                                     "prio 100 policy accept packets 0 bytes 0"});
  EXPECT_EQ(starting(messages, "NEWRULE"), std::vector<std::string>{R"(NEWRULE inet portcullis gateway_masquerade
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x7374756f 0x30656469 0x00000000 0x00000000 ]
  [ counter pkts 0 bytes 0 ]
  [ masq ]
  userdata = { \x00(portcullis: masquerade through outside0\x00 })"});
}

TEST(FtpTableBatch, LongRuleNamesAreCutInCommentsBetweenCharacters) {
  // "portcullis rule " and 110 x's are 126 bytes: the é that follows would end past nft's 127.
  TableSpec spec;
  spec.ftp_rules = {{std::string(110, 'x') + "\xc3\xa9 and more", {}, {cidr("198.18.0.21")}, false, {}}};
  const std::string rule = starting(render_batch(spec), "NEWRULE").at(0);
  EXPECT_NE(rule.find("userdata = { \\x00\\x7fportcullis rule " + std::string(110, 'x') + "\\x00 }"), std::string::npos)
      << rule;
}

TEST(FtpTableBatch, SetNamesSayTheRuleAndFamily) {
  EXPECT_EQ(address_set_name(0, policy::IpFamily::v4), "ftp0_v4");
  EXPECT_EQ(address_set_name(12, policy::IpFamily::v6), "ftp12_v6");
  EXPECT_EQ(dns_set_name(3, policy::IpFamily::v4), "ftp3_dns_v4");
  EXPECT_EQ(dns_set_name(3, policy::IpFamily::v6), "ftp3_dns_v6");
}

}  // namespace
}  // namespace portcullis::nft
