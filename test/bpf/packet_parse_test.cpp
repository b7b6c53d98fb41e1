// The shared packet parser (include/portcullis/parse.h) in both of its builds: every packet goes through
// the userspace build and through the kernel build, from TC and from XDP, with BPF_PROG_TEST_RUN on
// test/bpf/parse_test.bpf.c. Each test asserts that the three agree byte for byte and that the result is
// what the packet holds. Needs root.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "portcullis/parse.h"
#include "portcullis_parse_test.skel.h"
#include "support/packet_builder.h"

namespace portcullis::test {
namespace {

constexpr size_t kEthernetHeader = 14;

struct ParseOutcome {
  pc_drop_reason reason = PC_DROP_NONE;
  pc_packet packet{};
  int key_status = 0;
  pc_flow_key key{};
  uint8_t direction = 0;
  int quoted_status = 0;
  pc_flow_key quoted_key{};
  uint8_t quoted_direction = 0;
};

std::string address_text(const pc_addr& address, uint8_t family) {
  if (family == PC_FAMILY_NONE) return "-";
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == PC_FAMILY_IPV4 ? AF_INET : AF_INET6, address.bytes, text, sizeof(text));
  return text;
}

std::string describe(const pc_flow_key& key, int status, uint8_t direction) {
  if (status != 0) return "none";
  std::ostringstream out;
  out << "family=" << int{key.family} << " proto=" << int{key.proto} << " lo=" << address_text(key.lo_addr, key.family)
      << ":" << key.lo_port << " hi=" << address_text(key.hi_addr, key.family) << ":" << key.hi_port
      << " direction=" << (direction == PC_FLOW_FROM_LO ? "from-lo" : "from-hi");
  return out.str();
}

// Every field, one per line, so a disagreement between the builds reads as a diff.
std::string describe(const ParseOutcome& outcome) {
  const pc_packet& p = outcome.packet;
  std::ostringstream out;
  out << "reason=" << pc_drop_reason_name(outcome.reason) << "\n"
      << "ethertype=0x" << std::hex << p.ethertype << std::dec << " vlans=" << int{p.vlan_count} << "[" << p.vlan_id[0]
      << "," << p.vlan_id[1] << "]\n"
      << "family=" << int{p.family} << " proto=" << int{p.proto} << "\n"
      << "src=" << address_text(p.src, p.family) << ":" << p.sport << " dst=" << address_text(p.dst, p.family) << ":"
      << p.dport << "\n"
      << "tcp_flags=0x" << std::hex << int{p.tcp_flags} << std::dec << " icmp=" << int{p.icmp_type} << "/"
      << int{p.icmp_code} << "\n"
      << "fragment=" << int{p.is_fragment} << " first=" << int{p.is_first_fragment} << " id=" << p.frag_id << "\n"
      << "l3=" << p.l3_off << " l4=" << p.l4_off << " payload=" << p.payload_off << "+" << p.payload_len << "\n"
      << "inner: family=" << int{p.inner_family} << " proto=" << int{p.inner_proto}
      << " src=" << address_text(p.inner_src, p.inner_family) << ":" << p.inner_sport
      << " dst=" << address_text(p.inner_dst, p.inner_family) << ":" << p.inner_dport
      << " fragment=" << int{p.inner_is_fragment} << "\n"
      << "key: " << describe(outcome.key, outcome.key_status, outcome.direction) << "\n"
      << "quoted key: " << describe(outcome.quoted_key, outcome.quoted_status, outcome.quoted_direction) << "\n";
  return out.str();
}

// BPF_PROG_TEST_RUN takes nothing shorter than an Ethernet header, and its skb flavour (TC) also refuses
// a frame whose EtherType announces IPv4 or IPv6 without a whole IP header behind it.
bool xdp_test_run_accepts(const Bytes& frame) {
  return frame.size() >= kEthernetHeader;
}

bool skb_test_run_accepts(const Bytes& frame) {
  if (!xdp_test_run_accepts(frame)) return false;
  const uint16_t ethertype = static_cast<uint16_t>(frame[12] << 8 | frame[13]);
  if (ethertype == kEtherTypeIpv4) return frame.size() >= kEthernetHeader + 20;
  if (ethertype == kEtherTypeIpv6) return frame.size() >= kEthernetHeader + 40;
  return true;
}

ParseOutcome parse_in_userspace(const Bytes& frame) {
  ParseOutcome outcome;
  outcome.reason = pc_parse_packet(frame.data(), frame.data() + frame.size(), &outcome.packet);
  outcome.key_status = pc_flow_key_from_packet(&outcome.packet, &outcome.key, &outcome.direction);
  outcome.quoted_status = pc_flow_key_from_quoted(&outcome.packet, &outcome.quoted_key, &outcome.quoted_direction);
  return outcome;
}

class PacketParse : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() == 0) skeleton_ = portcullis_parse_test::open_and_load();
  }

  static void TearDownTestSuite() {
    portcullis_parse_test::destroy(skeleton_);
    skeleton_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "BPF_PROG_TEST_RUN needs root";
    ASSERT_NE(skeleton_, nullptr) << "the parse test program did not load; the verifier log is above";
  }

  // The frame through the userspace build and the kernel build (TC and XDP, each when the kernel takes
  // the frame). Asserts that they agree and returns what they found.
  static ParseOutcome parse(const Bytes& frame) {
    const ParseOutcome user = parse_in_userspace(frame);
    if (skb_test_run_accepts(frame)) expect_same(user, parse_in_kernel(skeleton_->progs.parse_test_tc, frame), "tc");
    if (xdp_test_run_accepts(frame)) expect_same(user, parse_in_kernel(skeleton_->progs.parse_test_xdp, frame), "xdp");
    return user;
  }

  static ParseOutcome parse_in_kernel(bpf_program* program, const Bytes& frame) {
    std::memset(skeleton_->bss, 0, sizeof(*skeleton_->bss));
    LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame.data(), .data_size_in = static_cast<uint32_t>(frame.size()));
    EXPECT_EQ(bpf_prog_test_run_opts(bpf_program__fd(program), &run), 0) << bpf_program__name(program);
    ParseOutcome outcome;
    outcome.reason = static_cast<pc_drop_reason>(skeleton_->bss->drop_reason);
    outcome.packet = skeleton_->bss->packet;
    outcome.key_status = skeleton_->bss->flow_key_status;
    outcome.key = skeleton_->bss->flow_key;
    outcome.direction = skeleton_->bss->direction;
    outcome.quoted_status = skeleton_->bss->quoted_key_status;
    outcome.quoted_key = skeleton_->bss->quoted_key;
    outcome.quoted_direction = skeleton_->bss->quoted_direction;
    return outcome;
  }

  static void expect_same(const ParseOutcome& user, const ParseOutcome& kernel, const char* attach_point) {
    EXPECT_EQ(describe(user), describe(kernel)) << "userspace and " << attach_point << " disagree";
    // Byte for byte, padding included: these layouts are map keys.
    EXPECT_EQ(std::memcmp(&user.packet, &kernel.packet, sizeof(pc_packet)), 0) << attach_point;
    EXPECT_EQ(std::memcmp(&user.key, &kernel.key, sizeof(pc_flow_key)), 0) << attach_point;
    EXPECT_EQ(std::memcmp(&user.quoted_key, &kernel.quoted_key, sizeof(pc_flow_key)), 0) << attach_point;
  }

  static ParseOutcome expect_drop(const Bytes& frame, pc_drop_reason reason) {
    ParseOutcome outcome = parse(frame);
    EXPECT_STREQ(pc_drop_reason_name(outcome.reason), pc_drop_reason_name(reason));
    return outcome;
  }

  static portcullis_parse_test* skeleton_;
};

portcullis_parse_test* PacketParse::skeleton_ = nullptr;

const Ipv4Address kClient4 = ipv4_address("10.88.1.5");
const Ipv4Address kServer4 = ipv4_address("198.18.0.10");
const Ipv4Address kRouter4 = ipv4_address("198.18.0.1");
const Ipv6Address kClient6 = ipv6_address("fd88:1::5");
const Ipv6Address kServer6 = ipv6_address("2001:db8::10");
const Ipv6Address kRouter6 = ipv6_address("2001:db8::1");

std::string src_of(const pc_packet& p) {
  return address_text(p.src, p.family);
}
std::string dst_of(const pc_packet& p) {
  return address_text(p.dst, p.family);
}

bool same_key(const pc_flow_key& a, const pc_flow_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

Bytes payload(size_t length) {
  return Bytes(length, 0xAB);
}

PacketBuilder tcp4(Tcp segment, Ipv4 header = {.src = kClient4, .dst = kServer4}) {
  return std::move(PacketBuilder().ipv4(header).tcp(std::move(segment)));
}

PacketBuilder tcp6(Tcp segment, Ipv6 header = {.src = kClient6, .dst = kServer6}) {
  return std::move(PacketBuilder().ipv6(header).tcp(std::move(segment)));
}

// ---- the build itself ----

TEST_F(PacketParse, BothAttachPointsPassTheVerifier) {
  EXPECT_GE(bpf_program__fd(skeleton_->progs.parse_test_tc), 0);
  EXPECT_GE(bpf_program__fd(skeleton_->progs.parse_test_xdp), 0);
}

// ---- Ethernet and VLAN ----

TEST_F(PacketParse, FrameShorterThanEthernetHeaderIsDropped) {
  expect_drop(head(tcp4({}).frame(), kEthernetHeader - 1), PC_DROP_ETH_TRUNCATED);
}

TEST_F(PacketParse, ArpIsNotIpAndNotDropped) {
  const ParseOutcome out = parse(PacketBuilder().arp().frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.family, PC_FAMILY_NONE);
  EXPECT_EQ(out.packet.ethertype, kEtherTypeArp);
  EXPECT_EQ(out.packet.l3_off, 14);
  EXPECT_EQ(out.key_status, -1);
}

TEST_F(PacketParse, VlanTagIsReadAndSkipped) {
  const ParseOutcome out = parse(tcp4({.sport = 40000, .dport = 443}).vlan(100).frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.vlan_count, 1);
  EXPECT_EQ(out.packet.vlan_id[0], 100);
  EXPECT_EQ(out.packet.ethertype, kEtherTypeIpv4);
  EXPECT_EQ(out.packet.l3_off, 18);
  EXPECT_EQ(out.packet.dport, 443);
}

TEST_F(PacketParse, QinQTagsAreReadOutermostFirst) {
  const ParseOutcome out =
      parse(tcp6({.sport = 40000, .dport = 443}).vlan(10, kEtherTypeQinQ).vlan(20, kEtherTypeVlan).frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.vlan_count, 2);
  EXPECT_EQ(out.packet.vlan_id[0], 10);
  EXPECT_EQ(out.packet.vlan_id[1], 20);
  EXPECT_EQ(out.packet.l3_off, 22);
  EXPECT_EQ(out.packet.family, PC_FAMILY_IPV6);
  EXPECT_EQ(out.packet.dport, 443);
}

TEST_F(PacketParse, ThirdVlanTagIsDropped) {
  expect_drop(tcp4({}).vlan(1, kEtherTypeQinQ).vlan(2).vlan(3).frame(), PC_DROP_VLAN_TOO_MANY_TAGS);
}

TEST_F(PacketParse, TruncatedVlanTagIsDropped) {
  expect_drop(head(tcp4({}).vlan(100).frame(), kEthernetHeader + 2), PC_DROP_VLAN_TRUNCATED);
}

// ---- IPv4 ----

TEST_F(PacketParse, TcpOverIpv4GivesTupleFlagsAndPayload) {
  const ParseOutcome out =
      parse(tcp4({.sport = 40000, .dport = 443, .flags = kTcpPsh | kTcpAck, .payload = payload(5)}).frame());
  const pc_packet& p = out.packet;
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(p.family, PC_FAMILY_IPV4);
  EXPECT_EQ(p.proto, PC_IPPROTO_TCP);
  EXPECT_EQ(src_of(p), "10.88.1.5");
  EXPECT_EQ(dst_of(p), "198.18.0.10");
  EXPECT_EQ(p.sport, 40000);
  EXPECT_EQ(p.dport, 443);
  EXPECT_EQ(p.tcp_flags, PC_TCP_PSH | PC_TCP_ACK);
  EXPECT_EQ(p.l3_off, 14);
  EXPECT_EQ(p.l4_off, 34);
  EXPECT_EQ(p.payload_off, 54);
  EXPECT_EQ(p.payload_len, 5);
  EXPECT_EQ(p.is_fragment, 0);
  EXPECT_EQ(p.inner_family, PC_FAMILY_NONE);
  EXPECT_EQ(out.key_status, 0);
}

TEST_F(PacketParse, Ipv4OptionsAreSkipped) {
  const Bytes router_alert = {0x94, 0x04, 0x00, 0x00};
  const ParseOutcome out =
      parse(tcp4({.sport = 1, .dport = 2}, {.src = kClient4, .dst = kServer4, .options = router_alert}).frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.l4_off, 38);
  EXPECT_EQ(out.packet.dport, 2);
}

TEST_F(PacketParse, TcpOptionsMoveThePayload) {
  const Bytes mss_and_sack_permitted = {0x02, 0x04, 0x05, 0xB4, 0x04, 0x02};
  const ParseOutcome out = parse(tcp4({.options = mss_and_sack_permitted, .payload = payload(3)}).frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.payload_off, 14 + 20 + 28);
  EXPECT_EQ(out.packet.payload_len, 3);
}

TEST_F(PacketParse, PaddedShortFrameTakesPayloadLengthFromIp) {
  const Bytes frame = pad_to_minimum_frame(PacketBuilder()
                                               .ipv4({.src = kClient4, .dst = kServer4})
                                               .udp({.sport = 5353, .dport = 53, .payload = payload(2)})
                                               .frame());
  ASSERT_EQ(frame.size(), 60u);
  const ParseOutcome out = parse(frame);
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.proto, PC_IPPROTO_UDP);
  EXPECT_EQ(out.packet.payload_off, 42);
  EXPECT_EQ(out.packet.payload_len, 2);
}

TEST_F(PacketParse, UnknownProtocolHasNoPortsButAPayload) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv4({.src = kClient4, .dst = kServer4})
                                     .l4({.protocol = kProtoGre, .bytes = payload(12)})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.proto, kProtoGre);
  EXPECT_EQ(out.packet.sport, 0);
  EXPECT_EQ(out.packet.dport, 0);
  EXPECT_EQ(out.packet.payload_off, 34);
  EXPECT_EQ(out.packet.payload_len, 12);
  EXPECT_EQ(out.key_status, 0);
}

TEST_F(PacketParse, TruncatedIpv4HeaderIsDropped) {
  expect_drop(head(tcp4({}).frame(), kEthernetHeader + 19), PC_DROP_IPV4_TRUNCATED);
}

TEST_F(PacketParse, Ipv4OptionsPastTheDataAreDropped) {
  const Ipv4 with_options = {.src = kClient4, .dst = kServer4, .options = Bytes(40, 1)};
  expect_drop(head(tcp4({}, with_options).frame(), kEthernetHeader + 40), PC_DROP_IPV4_TRUNCATED);
}

TEST_F(PacketParse, Ipv4VersionOtherThanFourIsDropped) {
  expect_drop(tcp4({}, {.src = kClient4, .dst = kServer4, .version = 5}).frame(), PC_DROP_IPV4_BAD_HEADER);
}

TEST_F(PacketParse, Ipv4IhlBelowFiveIsDropped) {
  expect_drop(tcp4({}, {.src = kClient4, .dst = kServer4, .ihl = 4}).frame(), PC_DROP_IPV4_BAD_HEADER);
}

TEST_F(PacketParse, Ipv4TotalLengthShorterThanHeaderIsDropped) {
  expect_drop(tcp4({}, {.src = kClient4, .dst = kServer4, .total_length = 19}).frame(), PC_DROP_IPV4_BAD_LENGTH);
}

TEST_F(PacketParse, Ipv4TotalLengthShorterThanTcpHeaderIsDropped) {
  expect_drop(tcp4({}, {.src = kClient4, .dst = kServer4, .total_length = 30}).frame(), PC_DROP_IPV4_BAD_LENGTH);
}

// ---- IPv4 fragments ----

TEST_F(PacketParse, Ipv4FirstFragmentCarriesPortsAndFragmentId) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv4({.src = kClient4, .dst = kServer4, .id = 0x1234, .more_fragments = true})
                                     .udp({.sport = 5000, .dport = 443, .payload = payload(100), .length = 3000})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.is_fragment, 1);
  EXPECT_EQ(out.packet.is_first_fragment, 1);
  EXPECT_EQ(out.packet.frag_id, 0x1234u);
  EXPECT_EQ(out.packet.sport, 5000);
  EXPECT_EQ(out.packet.dport, 443);
  EXPECT_EQ(out.packet.payload_len, 100);  // what this fragment holds, not the datagram's length
  EXPECT_EQ(out.key_status, 0);
}

TEST_F(PacketParse, Ipv4LaterFragmentHasNoPortsAndNoFlowKey) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv4({.src = kClient4, .dst = kServer4, .id = 0x1234, .fragment_offset = 185})
                                     .l4({.protocol = kProtoUdp, .bytes = payload(100)})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.is_fragment, 1);
  EXPECT_EQ(out.packet.is_first_fragment, 0);
  EXPECT_EQ(out.packet.frag_id, 0x1234u);
  EXPECT_EQ(out.packet.proto, PC_IPPROTO_UDP);
  EXPECT_EQ(out.packet.sport, 0);
  EXPECT_EQ(out.packet.dport, 0);
  EXPECT_EQ(out.packet.l4_off, 34);
  EXPECT_EQ(out.packet.payload_off, 34);
  EXPECT_EQ(out.packet.payload_len, 100);
  EXPECT_EQ(out.key_status, -1);
}

TEST_F(PacketParse, Ipv4FirstFragmentWithoutWholeTcpHeaderIsDropped) {
  const Bytes first_eight_bytes_of_tcp = head(tcp4({.sport = 1, .dport = 2}).ip_packet(), 28);
  const Bytes frame = PacketBuilder()
                          .ipv4({.src = kClient4, .dst = kServer4, .more_fragments = true})
                          .l4({.protocol = kProtoTcp,
                               .bytes = Bytes(first_eight_bytes_of_tcp.begin() + 20, first_eight_bytes_of_tcp.end())})
                          .frame();
  expect_drop(frame, PC_DROP_FRAGMENT_L4_TRUNCATED);
  // Ethernet padding after the fragment must not pass for the rest of the header.
  expect_drop(pad_to_minimum_frame(frame), PC_DROP_FRAGMENT_L4_TRUNCATED);
}

TEST_F(PacketParse, Ipv4TcpFragmentStartingInsideTheTcpHeaderIsDropped) {
  expect_drop(PacketBuilder()
                  .ipv4({.src = kClient4, .dst = kServer4, .fragment_offset = 1})
                  .l4({.protocol = kProtoTcp, .bytes = payload(16)})
                  .frame(),
              PC_DROP_FRAGMENT_OVERLAPS_L4);
}

TEST_F(PacketParse, Ipv4UdpFragmentAtOffsetEightIsNotAnOverlap) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv4({.src = kClient4, .dst = kServer4, .fragment_offset = 1})
                                     .l4({.protocol = kProtoUdp, .bytes = payload(16)})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.is_fragment, 1);
}

// ---- TCP, UDP, ICMP headers ----

TEST_F(PacketParse, TruncatedTcpHeaderIsDropped) {
  expect_drop(head(tcp4({}).frame(), kEthernetHeader + 20 + 10), PC_DROP_TCP_TRUNCATED);
}

TEST_F(PacketParse, TcpOptionsPastTheDataAreDropped) {
  expect_drop(head(tcp4({.options = Bytes(20, 1)}).frame(), kEthernetHeader + 20 + 30), PC_DROP_TCP_TRUNCATED);
}

TEST_F(PacketParse, TcpDataOffsetBelowFiveIsDropped) {
  expect_drop(tcp4({.data_offset = 4}).frame(), PC_DROP_TCP_BAD_DATA_OFFSET);
}

TEST_F(PacketParse, TcpDataOffsetPastTheSegmentIsDropped) {
  expect_drop(tcp4({.payload = payload(8), .data_offset = 15}).frame(), PC_DROP_TCP_BAD_DATA_OFFSET);
}

TEST_F(PacketParse, TruncatedUdpHeaderIsDropped) {
  const Bytes frame = PacketBuilder().ipv4({.src = kClient4, .dst = kServer4}).udp({.sport = 1, .dport = 53}).frame();
  expect_drop(head(frame, kEthernetHeader + 20 + 4), PC_DROP_UDP_TRUNCATED);
}

TEST_F(PacketParse, UdpLengthPastTheDatagramIsDropped) {
  expect_drop(PacketBuilder()
                  .ipv4({.src = kClient4, .dst = kServer4})
                  .udp({.sport = 1, .dport = 53, .payload = payload(10), .length = 100})
                  .frame(),
              PC_DROP_UDP_BAD_LENGTH);
}

TEST_F(PacketParse, UdpLengthBelowItsHeaderIsDropped) {
  expect_drop(PacketBuilder()
                  .ipv4({.src = kClient4, .dst = kServer4})
                  .udp({.sport = 1, .dport = 53, .payload = payload(10), .length = 4})
                  .frame(),
              PC_DROP_UDP_BAD_LENGTH);
}

TEST_F(PacketParse, UdpPayloadEndsWhereTheUdpLengthSays) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv4({.src = kClient4, .dst = kServer4})
                                     .udp({.sport = 1, .dport = 53, .payload = payload(10), .length = 12})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.payload_len, 4);
}

TEST_F(PacketParse, TruncatedIcmpHeaderIsDropped) {
  const Bytes frame = PacketBuilder()
                          .ipv4({.src = kClient4, .dst = kServer4})
                          .icmp({.type = kIcmpEchoRequest, .rest = echo_word(7, 1)})
                          .frame();
  expect_drop(head(frame, kEthernetHeader + 20 + 4), PC_DROP_ICMP_TRUNCATED);
}

// ---- IPv6 and its extension headers ----

TEST_F(PacketParse, TcpOverIpv6GivesTupleAndPayload) {
  const ParseOutcome out = parse(tcp6({.sport = 40000, .dport = 443, .flags = kTcpSyn, .payload = payload(7)}).frame());
  const pc_packet& p = out.packet;
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(p.family, PC_FAMILY_IPV6);
  EXPECT_EQ(p.ethertype, kEtherTypeIpv6);
  EXPECT_EQ(src_of(p), "fd88:1::5");
  EXPECT_EQ(dst_of(p), "2001:db8::10");
  EXPECT_EQ(p.sport, 40000);
  EXPECT_EQ(p.dport, 443);
  EXPECT_EQ(p.tcp_flags, PC_TCP_SYN);
  EXPECT_EQ(p.l4_off, 54);
  EXPECT_EQ(p.payload_off, 74);
  EXPECT_EQ(p.payload_len, 7);
}

TEST_F(PacketParse, UdpOverIpv6GivesPorts) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv6({.src = kClient6, .dst = kServer6})
                                     .udp({.sport = 5353, .dport = 53, .payload = payload(30)})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.proto, PC_IPPROTO_UDP);
  EXPECT_EQ(out.packet.sport, 5353);
  EXPECT_EQ(out.packet.dport, 53);
  EXPECT_EQ(out.packet.payload_len, 30);
}

TEST_F(PacketParse, Ipv6HopByHopRoutingDestinationOptionsAndFragmentAreWalked) {
  const ParseOutcome out = parse(tcp6({.sport = 40000, .dport = 443, .payload = payload(9)})
                                     .extension({.type = kProtoHopByHop, .length = 8})
                                     .extension({.type = kProtoRouting, .length = 24})
                                     .extension({.type = kProtoDestinationOptions, .length = 16})
                                     .fragment({.offset = 0, .more_fragments = true, .id = 0xDEADBEEF})
                                     .frame());
  const pc_packet& p = out.packet;
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(p.proto, PC_IPPROTO_TCP);
  EXPECT_EQ(p.l4_off, 14 + 40 + 8 + 24 + 16 + 8);
  EXPECT_EQ(p.sport, 40000);
  EXPECT_EQ(p.dport, 443);
  EXPECT_EQ(p.is_fragment, 1);
  EXPECT_EQ(p.is_first_fragment, 1);
  EXPECT_EQ(p.frag_id, 0xDEADBEEFu);
  EXPECT_EQ(p.payload_len, 9);
  EXPECT_EQ(out.key_status, 0);
}

TEST_F(PacketParse, Ipv6AuthenticationHeaderIsWalkedInFourByteUnits) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv6({.src = kClient6, .dst = kServer6})
                                     .extension({.type = kProtoAuthentication, .length = 28})
                                     .udp({.sport = 500, .dport = 4500})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.l4_off, 14 + 40 + 28);
  EXPECT_EQ(out.packet.dport, 4500);
}

TEST_F(PacketParse, Ipv6LaterFragmentHasNoPorts) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv6({.src = kClient6, .dst = kServer6})
                                     .extension({.type = kProtoDestinationOptions, .length = 8})
                                     .fragment({.offset = 181, .more_fragments = false, .id = 77})
                                     .l4({.protocol = kProtoUdp, .bytes = payload(40)})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.is_fragment, 1);
  EXPECT_EQ(out.packet.is_first_fragment, 0);
  EXPECT_EQ(out.packet.frag_id, 77u);
  EXPECT_EQ(out.packet.proto, PC_IPPROTO_UDP);
  EXPECT_EQ(out.packet.l4_off, 14 + 40 + 8 + 8);
  EXPECT_EQ(out.packet.payload_len, 40);
  EXPECT_EQ(out.packet.sport, 0);
  EXPECT_EQ(out.key_status, -1);
}

TEST_F(PacketParse, Ipv6AtomicFragmentIsAWholePacket) {
  const ParseOutcome out =
      parse(tcp6({.sport = 1, .dport = 2}).fragment({.offset = 0, .more_fragments = false, .id = 5}).frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.is_fragment, 0);
  EXPECT_EQ(out.packet.dport, 2);
}

TEST_F(PacketParse, Ipv6FirstFragmentWithoutWholeTcpHeaderIsDropped) {
  expect_drop(PacketBuilder()
                  .ipv6({.src = kClient6, .dst = kServer6})
                  .fragment({.offset = 0, .more_fragments = true, .id = 1})
                  .l4({.protocol = kProtoTcp, .bytes = payload(8)})
                  .frame(),
              PC_DROP_FRAGMENT_L4_TRUNCATED);
}

TEST_F(PacketParse, Ipv6TcpFragmentStartingInsideTheTcpHeaderIsDropped) {
  expect_drop(PacketBuilder()
                  .ipv6({.src = kClient6, .dst = kServer6})
                  .fragment({.offset = 2, .more_fragments = true, .id = 1})
                  .l4({.protocol = kProtoTcp, .bytes = payload(16)})
                  .frame(),
              PC_DROP_FRAGMENT_OVERLAPS_L4);
}

TEST_F(PacketParse, Ipv6NoNextHeaderEndsTheChain) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv6({.src = kClient6, .dst = kServer6})
                                     .extension({.type = kProtoDestinationOptions, .length = 8})
                                     .l4({.protocol = kProtoNoNextHeader})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.proto, PC_IPPROTO_NONE);
  EXPECT_EQ(out.packet.payload_len, 0);
}

PacketBuilder with_destination_options(PacketBuilder builder, int count) {
  for (int i = 0; i < count; ++i) builder.extension({.type = kProtoDestinationOptions, .length = 8});
  return builder;
}

TEST_F(PacketParse, Ipv6ChainOfEightExtensionHeadersIsWalked) {
  const ParseOutcome out =
      parse(with_destination_options(tcp6({.sport = 1, .dport = 2}), PC_MAX_IPV6_EXT_HEADERS).frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.l4_off, 14 + 40 + 8 * PC_MAX_IPV6_EXT_HEADERS);
  EXPECT_EQ(out.packet.dport, 2);
}

TEST_F(PacketParse, Ipv6ChainOfNineExtensionHeadersIsDropped) {
  expect_drop(with_destination_options(tcp6({}), PC_MAX_IPV6_EXT_HEADERS + 1).frame(), PC_DROP_IPV6_EXT_CHAIN_TOO_LONG);
}

TEST_F(PacketParse, TruncatedIpv6ExtensionHeaderIsDropped) {
  const Bytes frame = tcp6({}).extension({.type = kProtoHopByHop, .length = 16}).frame();
  expect_drop(head(frame, kEthernetHeader + 40 + 4), PC_DROP_IPV6_EXT_TRUNCATED);
  expect_drop(head(frame, kEthernetHeader + 40 + 12), PC_DROP_IPV6_EXT_TRUNCATED);
}

TEST_F(PacketParse, TruncatedIpv6HeaderIsDropped) {
  expect_drop(head(tcp6({}).frame(), kEthernetHeader + 39), PC_DROP_IPV6_TRUNCATED);
}

TEST_F(PacketParse, Ipv6VersionOtherThanSixIsDropped) {
  expect_drop(tcp6({}, {.src = kClient6, .dst = kServer6, .version = 4}).frame(), PC_DROP_IPV6_BAD_VERSION);
}

TEST_F(PacketParse, Ipv6PayloadLengthShorterThanExtensionChainIsDropped) {
  expect_drop(tcp6({}, {.src = kClient6, .dst = kServer6, .payload_length = 8})
                  .extension({.type = kProtoDestinationOptions, .length = 16})
                  .frame(),
              PC_DROP_IPV6_BAD_LENGTH);
}

TEST_F(PacketParse, Ipv6PayloadLengthShorterThanTcpHeaderIsDropped) {
  expect_drop(tcp6({}, {.src = kClient6, .dst = kServer6, .payload_length = 10}).frame(), PC_DROP_IPV6_BAD_LENGTH);
}

// ---- flow keys ----

TEST_F(PacketParse, BothDirectionsOfATcpFlowShareAKey) {
  const ParseOutcome syn = parse(tcp4({.sport = 40000, .dport = 443, .flags = kTcpSyn}).frame());
  const ParseOutcome syn_ack = parse(
      tcp4({.sport = 443, .dport = 40000, .flags = kTcpSyn | kTcpAck}, {.src = kServer4, .dst = kClient4}).frame());
  ASSERT_EQ(syn.key_status, 0);
  ASSERT_EQ(syn_ack.key_status, 0);
  EXPECT_TRUE(same_key(syn.key, syn_ack.key)) << describe(syn) << describe(syn_ack);
  EXPECT_NE(syn.direction, syn_ack.direction);
  // 10.88.1.5 is numerically below 198.18.0.10: the client is the low endpoint.
  EXPECT_EQ(address_text(syn.key.lo_addr, PC_FAMILY_IPV4), "10.88.1.5");
  EXPECT_EQ(syn.key.lo_port, 40000);
  EXPECT_EQ(address_text(syn.key.hi_addr, PC_FAMILY_IPV4), "198.18.0.10");
  EXPECT_EQ(syn.key.hi_port, 443);
  EXPECT_EQ(syn.direction, PC_FLOW_FROM_LO);
}

TEST_F(PacketParse, BothDirectionsOfAnIpv6TcpFlowShareAKey) {
  const ParseOutcome out = parse(tcp6({.sport = 40000, .dport = 443}).frame());
  const ParseOutcome back = parse(tcp6({.sport = 443, .dport = 40000}, {.src = kServer6, .dst = kClient6}).frame());
  EXPECT_TRUE(same_key(out.key, back.key)) << describe(out) << describe(back);
  EXPECT_NE(out.direction, back.direction);
  EXPECT_EQ(out.direction, PC_FLOW_FROM_HI);  // fd88:1::5 is above 2001:db8::10
}

TEST_F(PacketParse, FlowBetweenTwoSocketsOfOneHostIsOrderedByPort) {
  const ParseOutcome out = parse(tcp4({.sport = 50000, .dport = 8080}, {.src = kClient4, .dst = kClient4}).frame());
  const ParseOutcome back = parse(tcp4({.sport = 8080, .dport = 50000}, {.src = kClient4, .dst = kClient4}).frame());
  EXPECT_TRUE(same_key(out.key, back.key));
  EXPECT_EQ(out.key.lo_port, 8080);
  EXPECT_EQ(out.direction, PC_FLOW_FROM_HI);
  EXPECT_EQ(back.direction, PC_FLOW_FROM_LO);
}

TEST_F(PacketParse, IcmpEchoRequestAndReplyShareAKeyByIdentifier) {
  const ParseOutcome request =
      parse(PacketBuilder()
                .ipv4({.src = kClient4, .dst = kServer4})
                .icmp({.type = kIcmpEchoRequest, .rest = echo_word(0x4242, 1), .body = payload(56)})
                .frame());
  const ParseOutcome reply =
      parse(PacketBuilder()
                .ipv4({.src = kServer4, .dst = kClient4})
                .icmp({.type = kIcmpEchoReply, .rest = echo_word(0x4242, 1), .body = payload(56)})
                .frame());
  EXPECT_EQ(request.reason, PC_DROP_NONE);
  EXPECT_EQ(request.packet.icmp_type, kIcmpEchoRequest);
  EXPECT_EQ(request.packet.sport, 0x4242);
  EXPECT_EQ(request.packet.dport, 0x4242);
  EXPECT_EQ(request.packet.payload_len, 56);
  ASSERT_EQ(request.key_status, 0);
  ASSERT_EQ(reply.key_status, 0);
  EXPECT_TRUE(same_key(request.key, reply.key)) << describe(request) << describe(reply);
  EXPECT_NE(request.direction, reply.direction);
}

TEST_F(PacketParse, Icmpv6EchoRequestAndReplyShareAKeyByIdentifier) {
  const ParseOutcome request = parse(PacketBuilder()
                                         .ipv6({.src = kClient6, .dst = kServer6})
                                         .icmp({.type = kIcmpv6EchoRequest, .rest = echo_word(9, 3)})
                                         .frame());
  const ParseOutcome reply = parse(PacketBuilder()
                                       .ipv6({.src = kServer6, .dst = kClient6})
                                       .icmp({.type = kIcmpv6EchoReply, .rest = echo_word(9, 3)})
                                       .frame());
  EXPECT_EQ(request.packet.proto, PC_IPPROTO_ICMPV6);
  EXPECT_EQ(request.packet.sport, 9);
  EXPECT_TRUE(same_key(request.key, reply.key)) << describe(request) << describe(reply);
  EXPECT_NE(request.direction, reply.direction);
}

TEST_F(PacketParse, Icmpv6NeighborSolicitationIsNeitherEchoNorError) {
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv6({.src = kClient6, .dst = ipv6_address("ff02::1:ff00:10"), .hop_limit = 255})
                                     .icmp({.type = kIcmpv6NeighborSolicitation, .body = Bytes(16, 0)})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.icmp_type, kIcmpv6NeighborSolicitation);
  EXPECT_EQ(out.packet.sport, 0);
  EXPECT_EQ(out.packet.inner_family, PC_FAMILY_NONE);
  EXPECT_EQ(out.quoted_status, -1);
}

// ---- ICMP errors: the flow they belong to ----

TEST_F(PacketParse, IcmpDestinationUnreachableQuotingTcpBelongsToTheTcpFlow) {
  const PacketBuilder syn = tcp4({.sport = 40000, .dport = 443, .flags = kTcpSyn});
  const ParseOutcome original = parse(syn.frame());
  const ParseOutcome error =
      parse(PacketBuilder()
                .ipv4({.src = kRouter4, .dst = kClient4})
                .icmp({.type = kIcmpDestUnreachable, .code = 1, .body = head(syn.ip_packet(), 28)})
                .frame());
  const pc_packet& p = error.packet;
  EXPECT_EQ(error.reason, PC_DROP_NONE);
  EXPECT_EQ(p.icmp_type, kIcmpDestUnreachable);
  EXPECT_EQ(p.icmp_code, 1);
  EXPECT_EQ(p.inner_family, PC_FAMILY_IPV4);
  EXPECT_EQ(p.inner_proto, PC_IPPROTO_TCP);
  EXPECT_EQ(address_text(p.inner_src, PC_FAMILY_IPV4), "10.88.1.5");
  EXPECT_EQ(address_text(p.inner_dst, PC_FAMILY_IPV4), "198.18.0.10");
  EXPECT_EQ(p.inner_sport, 40000);
  EXPECT_EQ(p.inner_dport, 443);
  ASSERT_EQ(error.quoted_status, 0);
  EXPECT_TRUE(same_key(error.quoted_key, original.key)) << describe(error) << describe(original);
  EXPECT_EQ(error.quoted_direction, original.direction);
}

TEST_F(PacketParse, Icmpv6PacketTooBigQuotingTcpBelongsToTheTcpFlow) {
  const PacketBuilder segment = tcp6({.sport = 40000, .dport = 443, .flags = kTcpAck, .payload = payload(1400)});
  const ParseOutcome original = parse(segment.frame());
  const ParseOutcome error =
      parse(PacketBuilder()
                .ipv6({.src = kRouter6, .dst = kClient6})
                .icmp({.type = kIcmpv6PacketTooBig, .rest = 1280, .body = head(segment.ip_packet(), 1280 - 48)})
                .frame());
  EXPECT_EQ(error.reason, PC_DROP_NONE);
  EXPECT_EQ(error.packet.icmp_type, kIcmpv6PacketTooBig);
  EXPECT_EQ(error.packet.inner_family, PC_FAMILY_IPV6);
  EXPECT_EQ(error.packet.inner_dport, 443);
  ASSERT_EQ(error.quoted_status, 0);
  EXPECT_TRUE(same_key(error.quoted_key, original.key)) << describe(error) << describe(original);
  EXPECT_EQ(error.quoted_direction, original.direction);
}

TEST_F(PacketParse, Icmpv6ErrorQuotingExtensionHeadersFindsTheUdpPorts) {
  const PacketBuilder datagram = PacketBuilder()
                                     .ipv6({.src = kClient6, .dst = kServer6})
                                     .extension({.type = kProtoDestinationOptions, .length = 16})
                                     .fragment({.offset = 0, .more_fragments = true, .id = 9})
                                     .udp({.sport = 5000, .dport = 443, .payload = payload(64)});
  const ParseOutcome original = parse(datagram.frame());
  const ParseOutcome error = parse(PacketBuilder()
                                       .ipv6({.src = kRouter6, .dst = kClient6})
                                       .icmp({.type = kIcmpv6DestUnreachable, .code = 1, .body = datagram.ip_packet()})
                                       .frame());
  EXPECT_EQ(error.reason, PC_DROP_NONE);
  EXPECT_EQ(error.packet.inner_proto, PC_IPPROTO_UDP);
  EXPECT_EQ(error.packet.inner_sport, 5000);
  EXPECT_TRUE(same_key(error.quoted_key, original.key)) << describe(error) << describe(original);
}

TEST_F(PacketParse, TimeExceededQuotingEchoRequestBelongsToThePing) {
  const PacketBuilder request = PacketBuilder()
                                    .ipv4({.src = kClient4, .dst = kServer4, .ttl = 1})
                                    .icmp({.type = kIcmpEchoRequest, .rest = echo_word(77, 1), .body = payload(56)});
  const ParseOutcome original = parse(request.frame());
  const ParseOutcome error = parse(PacketBuilder()
                                       .ipv4({.src = kRouter4, .dst = kClient4})
                                       .icmp({.type = kIcmpTimeExceeded, .body = head(request.ip_packet(), 28)})
                                       .frame());
  EXPECT_EQ(error.reason, PC_DROP_NONE);
  EXPECT_EQ(error.packet.inner_proto, PC_IPPROTO_ICMP);
  EXPECT_EQ(error.packet.inner_sport, 77);
  ASSERT_EQ(error.quoted_status, 0);
  EXPECT_TRUE(same_key(error.quoted_key, original.key)) << describe(error) << describe(original);
}

TEST_F(PacketParse, IcmpErrorQuotingLessThanHeaderAndEightBytesIsDropped) {
  const Bytes quoted = tcp4({.sport = 1, .dport = 2}).ip_packet();
  expect_drop(PacketBuilder()
                  .ipv4({.src = kRouter4, .dst = kClient4})
                  .icmp({.type = kIcmpDestUnreachable, .body = head(quoted, 24)})
                  .frame(),
              PC_DROP_ICMP_QUOTE_TRUNCATED);
  // The same cut made by the end of the data rather than by the IP length.
  const Bytes whole = PacketBuilder()
                          .ipv4({.src = kRouter4, .dst = kClient4})
                          .icmp({.type = kIcmpDestUnreachable, .body = head(quoted, 28)})
                          .frame();
  expect_drop(head(whole, whole.size() - 2), PC_DROP_ICMP_QUOTE_TRUNCATED);
}

TEST_F(PacketParse, IcmpErrorQuotingAnotherIpVersionIsDropped) {
  expect_drop(PacketBuilder()
                  .ipv4({.src = kRouter4, .dst = kClient4})
                  .icmp({.type = kIcmpDestUnreachable, .body = head(tcp6({}).ip_packet(), 48)})
                  .frame(),
              PC_DROP_ICMP_QUOTE_MALFORMED);
}

TEST_F(PacketParse, IcmpErrorQuotingALaterFragmentHasNoQuotedKey) {
  const Bytes later_fragment = PacketBuilder()
                                   .ipv4({.src = kClient4, .dst = kServer4, .id = 3, .fragment_offset = 100})
                                   .l4({.protocol = kProtoUdp, .bytes = payload(8)})
                                   .ip_packet();
  const ParseOutcome out = parse(PacketBuilder()
                                     .ipv4({.src = kRouter4, .dst = kClient4})
                                     .icmp({.type = kIcmpTimeExceeded, .code = 1, .body = later_fragment})
                                     .frame());
  EXPECT_EQ(out.reason, PC_DROP_NONE);
  EXPECT_EQ(out.packet.inner_family, PC_FAMILY_IPV4);
  EXPECT_EQ(out.packet.inner_is_fragment, 1);
  EXPECT_EQ(out.quoted_status, -1);
}

// ---- names for counters and logs (no kernel needed) ----

TEST(DropReasonName, EveryReasonHasAUniqueKebabCaseName) {
  const std::regex kebab_case("[a-z0-9]+(-[a-z0-9]+)*");
  std::set<std::string> seen;
  for (int value = 0; value < PC_DROP_MAX; ++value) {
    const std::string name = pc_drop_reason_name(static_cast<pc_drop_reason>(value));
    if (name == "unknown") continue;  // a free slot
    EXPECT_TRUE(std::regex_match(name, kebab_case)) << name;
    EXPECT_TRUE(seen.insert(name).second) << "duplicate name " << name;
  }
  EXPECT_STREQ(pc_drop_reason_name(PC_DROP_IPV6_EXT_CHAIN_TOO_LONG), "ipv6-ext-chain-too-long");
  EXPECT_STREQ(pc_drop_reason_name(PC_DROP_SOURCE_NOT_IN_GROUP), "source-not-in-group");
  EXPECT_STREQ(pc_drop_reason_name(PC_DROP_MAX), "unknown");
}

}  // namespace
}  // namespace portcullis::test
