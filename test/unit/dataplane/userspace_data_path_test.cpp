// The data path of include/portcullis/datapath.h built for userspace, on the scenarios test/bpf/datapath_test.cpp
// runs in the kernel. No root: the same frames, the same policy tables, no BPF.
#include "dataplane/userspace_data_path.h"

#include <gtest/gtest.h>

#include <cstring>
#include <iterator>
#include <memory>
#include <ostream>
#include <string>

#include "dataplane/policy_tables.h"
#include "policy/policy_loader.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/flow.h"
#include "support/data_path_scenario.h"
#include "support/packet_builder.h"

namespace portcullis::dataplane {

void PrintTo(const PacketOutcome& outcome, std::ostream* os) {
  static const char* const kActions[] = {"pass", "drop", "reject", "punt", "hold-answer"};
  *os << (outcome.action < std::size(kActions) ? kActions[outcome.action] : "?") << " ("
      << pc_drop_reason_name(static_cast<pc_drop_reason>(outcome.reason)) << ")";
}

namespace {

using test::echo4;
using test::flow_key;
using test::icmp_error_about;
using test::kDataPathPolicy;
using test::tcp4;
using test::tcp4_data;
using test::udp4;
using test::udp_fragment;
using test::with_drop;

using test::Bytes;
using test::ipv6_address;
using test::PacketBuilder;

class UserspaceDataPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::make_unique<UserspaceDataPath>(tables(kDataPathPolicy, policy::Mode::gateway, 1));
  }

  PolicyTables tables(const std::string& yaml, policy::Mode mode, uint32_t generation) {
    policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
    EXPECT_TRUE(loaded.policy.has_value());
    compiled_ = policy::compile_policy(std::move(*loaded.policy));
    return build_policy_tables(*compiled_, mode, generation);
  }
  // A reload, as `run` does it: the next generation.
  void write_policy(const std::string& yaml, policy::Mode mode) {
    path_->load(tables(yaml, mode, path_->tables().config.generation + 1));
  }

  PacketOutcome inside(const Bytes& frame) { return path_->inside(frame); }
  PacketOutcome outside(const Bytes& frame) { return path_->outside(frame); }
  uint64_t counter(uint32_t slot) const { return path_->counter(slot); }
  std::string rule_name(uint32_t rule_id) const {
    return rule_id == PC_RULE_NONE ? "none" : compiled_->rules().at(rule_id).name;
  }

  std::unique_ptr<UserspaceDataPath> path_;
  std::shared_ptr<const policy::CompiledPolicy> compiled_;
};

const PacketOutcome kPass{kActionPass, PC_DROP_NONE};
PacketOutcome drop(pc_drop_reason reason) {
  return PacketOutcome{kActionDrop, reason};
}
PacketOutcome reject(pc_drop_reason reason) {
  return PacketOutcome{kActionReject, reason};
}

TEST_F(UserspaceDataPathTest, AllowedFlowPassesAndIsRecordedWithItsRule) {
  path_->set_now_ns(1000);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40000, 8042)), kPass);
  const pc_flow_key key = flow_key("10.88.1.2", 40000, "198.18.0.10", 8042, 6);
  const pc_flow* flow = path_->flow(key);
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(rule_name(flow->rule_id), "web");
  EXPECT_EQ(flow->scope, group_scope(0));
  EXPECT_EQ(flow->generation, 1u);
  EXPECT_EQ(flow->packets[flow->initiator], 1u);
  EXPECT_EQ(flow->tcp_flags[flow->initiator], test::kTcpSyn);
  EXPECT_EQ(flow->first_seen_ns, 1000u);
  // The reply comes back through the outside path and counts in the other direction.
  path_->advance_ns(500);
  const Bytes reply = tcp4("198.18.0.10", "10.88.1.2", 8042, 40000, test::kTcpSyn | test::kTcpAck);
  EXPECT_EQ(outside(reply), kPass);
  EXPECT_EQ(flow->packets[1 - flow->initiator], 1u);
  EXPECT_EQ(flow->bytes[1 - flow->initiator], reply.size());
  EXPECT_EQ(flow->tcp_flags[1 - flow->initiator], test::kTcpSyn | test::kTcpAck);
  EXPECT_EQ(flow->last_seen_ns, 1500u);
  EXPECT_EQ(counter(PC_COUNTER_PASS), 2u);
  EXPECT_EQ(counter(PC_COUNTER_NEW_FLOW), 1u);
  // One verdict event, for the new flow, as the initiator sent it.
  ASSERT_EQ(path_->events().size(), 1u);
  const pc_verdict_event& event = path_->events()[0];
  EXPECT_EQ(event.timestamp_ns, 1000u);
  EXPECT_EQ(Bytes(event.src.bytes, event.src.bytes + 4), (Bytes{10, 88, 1, 2}));
  EXPECT_EQ(event.sport, 40000);
  EXPECT_EQ(event.dport, 8042);
  EXPECT_EQ(event.proto, 6);
  EXPECT_EQ(event.verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(rule_name(event.rule_id), "web");
  EXPECT_EQ(path_->take_events().size(), 1u);
  EXPECT_TRUE(path_->events().empty());
}

TEST_F(UserspaceDataPathTest, DeniedFlowsAreRejectedAndRecorded) {
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40001, 8080)), reject(PC_DROP_DENIED_BY_RULE));
  const pc_flow* flow = path_->flow(flow_key("10.88.1.2", 40001, "198.18.0.10", 8080, 6));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->verdict, PC_VERDICT_DENY);
  EXPECT_EQ(rule_name(flow->rule_id), "blocked");
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_RULE), 1u);
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 0u);  // userspace builds no rejects
  // The flow's next packet follows the stored verdict.
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40001, 8080, test::kTcpAck)), reject(PC_DROP_DENIED_BY_RULE));
  EXPECT_EQ(flow->packets[flow->initiator], 2u);
  EXPECT_EQ(counter(PC_COUNTER_NEW_FLOW), 1u);
  // A reply from outside on a denied flow is dropped, never rejected.
  EXPECT_EQ(outside(tcp4("198.18.0.10", "10.88.1.2", 8080, 40001, test::kTcpAck)), drop(PC_DROP_DENIED_BY_RULE));

  EXPECT_EQ(inside(udp4("10.88.1.2", "198.18.0.10", 40002, 9999)), reject(PC_DROP_DENIED_BY_DEFAULT));
  EXPECT_EQ(path_->flow(flow_key("10.88.1.2", 40002, "198.18.0.10", 9999, 17))->rule_id, PC_RULE_NONE);
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_DEFAULT), 1u);
}

TEST_F(UserspaceDataPathTest, IPv6FlowsAreDecidedLikeIPv4) {
  const auto v6 = [](uint16_t sport, uint16_t dport, bool udp) {
    PacketBuilder b;
    b.ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("2001:db8::10")});
    if (udp) {
      b.udp({.sport = sport, .dport = dport, .payload = {1, 2, 3}});
    } else {
      b.tcp({.sport = sport, .dport = dport, .flags = test::kTcpSyn});
    }
    return b.frame();
  };
  EXPECT_EQ(inside(v6(40003, 81, false)), reject(PC_DROP_DENIED_BY_DEFAULT));
  EXPECT_EQ(inside(v6(40004, 9999, true)), reject(PC_DROP_DENIED_BY_DEFAULT));
  EXPECT_EQ(inside(v6(40005, 80, false)), kPass);
  const pc_flow* flow = path_->flow(flow_key("fd88:1::2", 40005, "2001:db8::10", 80, 6));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(rule_name(flow->rule_id), "v6-web");
}

TEST_F(UserspaceDataPathTest, DropModeIsSilent) {
  write_policy(with_drop(kDataPathPolicy), policy::Mode::gateway);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40006, 8080)), drop(PC_DROP_DENIED_BY_RULE));
}

TEST_F(UserspaceDataPathTest, PendingFlowsPassTheirHandshakeAndPuntTheirFirstData) {
  path_->set_now_ns(5'000'000'000);
  path_->set_punt_config({.heartbeat_ns = 5'000'000'000, .flow_hold_bytes = 65536, .rate_per_sec = 100, .burst = 10});
  // The handshake passes both ways while the flow waits for its name.
  EXPECT_EQ(inside(tcp4("10.88.1.2", "203.0.113.5", 40007, 443)), kPass);
  EXPECT_EQ(outside(tcp4("203.0.113.5", "10.88.1.2", 443, 40007, test::kTcpSyn | test::kTcpAck)), kPass);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "203.0.113.5", 40007, 443, test::kTcpAck)), kPass);
  const pc_flow* flow = path_->flow(flow_key("10.88.1.2", 40007, "203.0.113.5", 443, 6));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(flow->held_bytes, 0u);
  // The first data is punted and held; so is everything from the client after it, in order.
  const Bytes hello = tcp4_data("10.88.1.2", "203.0.113.5", 40007, 443, Bytes(300, 0x16));
  EXPECT_EQ(inside(hello), (PacketOutcome{kActionPunt, PC_DROP_NEEDS_L7}));
  EXPECT_EQ(inside(tcp4("10.88.1.2", "203.0.113.5", 40007, 443, test::kTcpAck)),
            (PacketOutcome{kActionPunt, PC_DROP_NEEDS_L7}));
  EXPECT_EQ(flow->held_bytes, hello.size() + 54u);
  // The server's packets are not held.
  EXPECT_EQ(outside(tcp4("203.0.113.5", "10.88.1.2", 443, 40007, test::kTcpAck)), kPass);
}

TEST_F(UserspaceDataPathTest, ASynOnAClosedFlowIsANewConnectionDecidedAfresh) {
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40030, 8042)), kPass);
  // The policy that allowed it goes; the allowed connection itself lives on, until it closes.
  write_policy(R"(version: 1
defaults: {action: deny, on_deny: reject}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
               policy::Mode::gateway);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40030, 8042, test::kTcpAck)), kPass);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40030, 8042, test::kTcpFin | test::kTcpAck)), kPass);
  // Reopening the same addresses and ports is a new flow under the policy in force.
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40030, 8042)), reject(PC_DROP_DENIED_BY_DEFAULT));
  EXPECT_EQ(path_->flow(flow_key("10.88.1.2", 40030, "198.18.0.10", 8042, 6))->verdict, PC_VERDICT_DENY);
}

TEST_F(UserspaceDataPathTest, UnderFilterQueriesEveryQueryIsReadAndEveryAnswerHeld) {
  write_policy(R"(version: 1
defaults: {action: deny}
dns: {resolvers: [198.18.0.53]}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
               policy::Mode::gateway);
  path_->set_now_ns(5'000'000'000);
  path_->set_punt_config({.heartbeat_ns = 5'000'000'000, .flow_hold_bytes = 65536, .rate_per_sec = 100, .burst = 10});
  const Bytes query = udp4("10.88.1.2", "198.18.0.53", 40100, 53);
  EXPECT_EQ(inside(query).action, kActionPunt);
  const pc_flow* flow = path_->flow(flow_key("10.88.1.2", 40100, "198.18.0.53", 53, 17));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->verdict, PC_VERDICT_INSPECT);
  EXPECT_EQ(inside(query).action, kActionPunt) << "the next query on the flow too";
  EXPECT_EQ(outside(udp4("198.18.0.53", "10.88.1.2", 53, 40100)).action, kActionHoldAnswer);
  // Without filtering, the resolver flow is simply allowed; its answers are still held.
  write_policy(R"(version: 1
defaults: {action: deny}
dns: {resolvers: [198.18.0.53], filter_queries: false}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
               policy::Mode::gateway);
  EXPECT_EQ(inside(udp4("10.88.1.2", "198.18.0.53", 40101, 53)), kPass);
  EXPECT_EQ(outside(udp4("198.18.0.53", "10.88.1.2", 53, 40101)).action, kActionHoldAnswer);
}

TEST_F(UserspaceDataPathTest, PendingFlowsAreDeniedPastEveryHoldBound) {
  const Bytes hello = tcp4_data("10.88.1.2", "203.0.113.5", 40010, 443, Bytes(300, 0x16));
  path_->set_now_ns(5'000'000'000);
  // No daemon: fail closed, rejected at once.
  EXPECT_EQ(inside(hello), reject(PC_DROP_NO_DAEMON));
  EXPECT_EQ(path_->flow(flow_key("10.88.1.2", 40010, "203.0.113.5", 443, 6))->verdict, PC_VERDICT_DENY);
  EXPECT_EQ(counter(PC_DROP_NO_DAEMON), 1u);
  // A daemon whose heartbeat stopped is as good as none.
  path_->set_punt_config({.heartbeat_ns = 1'000'000'000, .flow_hold_bytes = 65536, .rate_per_sec = 0, .burst = 2});
  EXPECT_EQ(inside(tcp4_data("10.88.1.2", "203.0.113.5", 40011, 443, {1})), reject(PC_DROP_NO_DAEMON));
  // Held bytes per flow.
  path_->set_punt_config({.heartbeat_ns = 5'000'000'000, .flow_hold_bytes = 400, .rate_per_sec = 0, .burst = 2});
  EXPECT_EQ(inside(tcp4_data("10.88.1.2", "203.0.113.5", 40012, 443, Bytes(300, 1))).action, kActionPunt);
  EXPECT_EQ(inside(tcp4_data("10.88.1.2", "203.0.113.5", 40012, 443, Bytes(300, 1))), reject(PC_DROP_HOLD_LIMIT));
  // Punts per source: the bucket held two tokens and does not refill.
  EXPECT_EQ(inside(tcp4_data("10.88.1.2", "203.0.113.5", 40013, 443, {1})).action, kActionPunt);
  EXPECT_EQ(inside(tcp4_data("10.88.1.2", "203.0.113.5", 40014, 443, {1})), reject(PC_DROP_PUNT_RATE));
  // Another source has a bucket of its own.
  EXPECT_EQ(inside(tcp4_data("10.88.1.3", "203.0.113.5", 40014, 443, {1})).action, kActionPunt);
  // Every refusal was logged as the flow's verdict.
  size_t denials = 0;
  for (const pc_verdict_event& event : path_->events()) denials += event.verdict == PC_VERDICT_DENY;
  EXPECT_EQ(denials, 4u);
}

TEST_F(UserspaceDataPathTest, SpoofedSourcesAreDroppedWithoutAFlowEntry) {
  EXPECT_EQ(inside(tcp4("10.99.0.2", "198.18.0.10", 40008, 80)), drop(PC_DROP_SOURCE_NOT_IN_GROUP));
  EXPECT_EQ(counter(PC_DROP_SOURCE_NOT_IN_GROUP), 1u);
  EXPECT_EQ(path_->flow(flow_key("10.99.0.2", 40008, "198.18.0.10", 80, 6)), nullptr);
  EXPECT_EQ(path_->flow_count(), 0u);
  EXPECT_TRUE(path_->events().empty());
}

TEST_F(UserspaceDataPathTest, GatewayDropsUnsolicitedInboundHostModeAdmitsIt) {
  const Bytes inbound = tcp4("198.18.0.10", "10.88.1.2", 5555, 22);
  EXPECT_EQ(outside(inbound), drop(PC_DROP_UNSOLICITED_INBOUND));
  EXPECT_EQ(counter(PC_DROP_UNSOLICITED_INBOUND), 1u);
  EXPECT_EQ(path_->flow_count(), 0u);
  write_policy(kDataPathPolicy, policy::Mode::host);
  EXPECT_EQ(outside(inbound), kPass);
  const pc_flow* flow = path_->flow(flow_key("198.18.0.10", 5555, "10.88.1.2", 22, 6));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(flow->rule_id, PC_RULE_INBOUND);  // not egress: no reload judges it
  // The host's answer to that connection finds the flow, though no rule allows it.
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 22, 5555, test::kTcpSyn | test::kTcpAck)), kPass);
  EXPECT_EQ(flow->packets[1 - flow->initiator], 1u);
  // Host mode decides flows from sources in no group with the top-level rules.
  EXPECT_EQ(inside(tcp4("10.99.0.2", "198.18.0.10", 40009, 80)), kPass);
  EXPECT_EQ(path_->flow(flow_key("10.99.0.2", 40009, "198.18.0.10", 80, 6))->scope,
            static_cast<uint32_t>(PC_SCOPE_TOP_LEVEL));
}

TEST_F(UserspaceDataPathTest, PingRequestAndReplyShareOneFlow) {
  EXPECT_EQ(inside(echo4("10.88.1.2", "198.18.0.20", test::kIcmpEchoRequest)), kPass);
  EXPECT_EQ(outside(echo4("198.18.0.20", "10.88.1.2", test::kIcmpEchoReply)), kPass);
  EXPECT_EQ(path_->flow_count(), 1u);
  const pc_flow* flow = path_->flow(flow_key("10.88.1.2", 77, "198.18.0.20", 77, 1));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(rule_name(flow->rule_id), "ping");
  EXPECT_EQ(flow->packets[0] + flow->packets[1], 2u);
  EXPECT_EQ(path_->events().at(0).dport, test::kIcmpEchoRequest);  // ICMP: the type
  // Outside the ping rule's prefix the request is refused.
  EXPECT_EQ(inside(echo4("10.88.1.2", "198.18.1.20", test::kIcmpEchoRequest)), reject(PC_DROP_DENIED_BY_DEFAULT));
}

TEST_F(UserspaceDataPathTest, IcmpErrorsPassOnlyForAllowedFlows) {
  const Bytes allowed = tcp4("10.88.1.2", "198.18.0.10", 40010, 80);
  ASSERT_EQ(inside(allowed), kPass);
  EXPECT_EQ(outside(icmp_error_about(allowed)), kPass);
  EXPECT_EQ(outside(icmp_error_about(tcp4("10.88.1.2", "198.18.0.10", 40011, 80))), drop(PC_DROP_ICMP_ERROR_NO_FLOW));
  // About a denied flow: dropped too.
  const Bytes denied = tcp4("10.88.1.2", "198.18.0.10", 40012, 8080);
  inside(denied);
  EXPECT_EQ(outside(icmp_error_about(denied)), drop(PC_DROP_ICMP_ERROR_NO_FLOW));
  EXPECT_EQ(counter(PC_DROP_ICMP_ERROR_NO_FLOW), 2u);
  // Errors create no flow of their own.
  EXPECT_EQ(path_->flow_count(), 2u);
}

TEST_F(UserspaceDataPathTest, LaterFragmentsFollowTheirFirstFragment) {
  EXPECT_EQ(inside(udp_fragment(7, 0, true, 5353)), kPass);
  EXPECT_EQ(path_->fragment_count(), 1u);
  EXPECT_EQ(inside(udp_fragment(7, 5, false, 0)), kPass);
  EXPECT_EQ(inside(udp_fragment(8, 5, false, 0)), drop(PC_DROP_FRAGMENT_NO_FIRST));
  EXPECT_EQ(counter(PC_DROP_FRAGMENT_NO_FIRST), 1u);
  // A denied datagram's later fragments are dropped with the first fragment's reason.
  EXPECT_EQ(inside(udp_fragment(9, 0, true, 9999)), reject(PC_DROP_DENIED_BY_DEFAULT));
  EXPECT_EQ(inside(udp_fragment(9, 5, false, 0)), drop(PC_DROP_DENIED_BY_DEFAULT));
  EXPECT_EQ(path_->fragment_count(), 2u);
}

TEST_F(UserspaceDataPathTest, ArpAndNeighbourDiscoveryPassWithoutRules) {
  EXPECT_EQ(inside(PacketBuilder().arp().frame()), kPass);
  const Bytes solicitation =
      PacketBuilder()
          .ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("ff02::1:ff00:1"), .hop_limit = 255})
          .icmp({.type = test::kIcmpv6NeighborSolicitation, .body = Bytes(20, 0)})
          .frame();
  EXPECT_EQ(inside(solicitation), kPass);
  EXPECT_EQ(outside(solicitation), kPass);
  EXPECT_EQ(path_->flow_count(), 0u);
}

TEST_F(UserspaceDataPathTest, MalformedPacketsAreDroppedAndCountedByReason) {
  Bytes truncated = tcp4("10.88.1.2", "198.18.0.10", 40013, 80);
  truncated.resize(14 + 20 + 10);
  const PacketOutcome out = inside(truncated);
  EXPECT_EQ(out.action, kActionDrop);
  EXPECT_TRUE(out.reason == PC_DROP_TCP_TRUNCATED || out.reason == PC_DROP_IPV4_BAD_LENGTH) << out.reason;
  EXPECT_EQ(counter(out.reason), 1u);
  EXPECT_EQ(inside(Bytes{}), drop(PC_DROP_ETH_TRUNCATED));
  EXPECT_EQ(path_->flow_count(), 0u);
}

TEST_F(UserspaceDataPathTest, AReloadThatOpensADeniedFlowTakesEffectOnItsNextPacket) {
  const Bytes syn = tcp4("10.88.1.2", "198.18.0.10", 40016, 9000);
  EXPECT_EQ(inside(syn), reject(PC_DROP_DENIED_BY_DEFAULT));
  const Bytes web = tcp4("10.88.1.2", "198.18.0.10", 40017, 80);
  EXPECT_EQ(inside(web), kPass);
  write_policy(test::data_path_policy_opened(), policy::Mode::gateway);
  EXPECT_EQ(path_->tables().config.generation, 2u);
  EXPECT_EQ(inside(syn), kPass);
  const pc_flow* flow = path_->flow(flow_key("10.88.1.2", 40016, "198.18.0.10", 9000, 6));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(rule_name(flow->rule_id), "opened");
  EXPECT_EQ(flow->generation, 2u);
  EXPECT_EQ(flow->packets[flow->initiator], 1u);  // a new entry
  // Allowed flows are kept as they were decided, under the old generation.
  EXPECT_EQ(inside(web), kPass);
  EXPECT_EQ(path_->flow(flow_key("10.88.1.2", 40017, "198.18.0.10", 80, 6))->generation, 1u);
  EXPECT_EQ(counter(PC_COUNTER_NEW_FLOW), 3u);
}

TEST_F(UserspaceDataPathTest, AFullFlowTableEvictsTheLeastRecentlyUsedFlow) {
  UserspaceDataPath small(tables(kDataPathPolicy, policy::Mode::gateway, 1), 2);
  const Bytes a = tcp4("10.88.1.2", "198.18.0.10", 41000, 80);
  const Bytes b = tcp4("10.88.1.2", "198.18.0.10", 41001, 80);
  const Bytes c = tcp4("10.88.1.2", "198.18.0.10", 41002, 80);
  small.inside(a);
  small.inside(b);
  small.inside(a);  // a is used again: b is now the oldest
  small.inside(c);
  EXPECT_EQ(small.flow_count(), 2u);
  EXPECT_NE(small.flow(flow_key("10.88.1.2", 41000, "198.18.0.10", 80, 6)), nullptr);
  EXPECT_EQ(small.flow(flow_key("10.88.1.2", 41001, "198.18.0.10", 80, 6)), nullptr);
  EXPECT_NE(small.flow(flow_key("10.88.1.2", 41002, "198.18.0.10", 80, 6)), nullptr);
}

TEST_F(UserspaceDataPathTest, InstancesKeepTheirOwnState) {
  UserspaceDataPath other(tables(with_drop(kDataPathPolicy), policy::Mode::gateway, 1));
  const Bytes denied = tcp4("10.88.1.2", "198.18.0.10", 42000, 8080);
  EXPECT_EQ(inside(denied), reject(PC_DROP_DENIED_BY_RULE));
  EXPECT_EQ(other.inside(denied), drop(PC_DROP_DENIED_BY_RULE));
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_RULE), 1u);
  EXPECT_EQ(other.counter(PC_DROP_DENIED_BY_RULE), 1u);
  EXPECT_EQ(path_->flow_count(), 1u);
  EXPECT_EQ(other.flow_count(), 1u);
}

// DNS answers (include/portcullis/punt.h): the sandbox's resolver flow is allowed, and its answers are held for
// the daemon while it lives.
constexpr const char* kResolverPolicy = R"(version: 1
defaults: {action: deny}
dns: {resolvers: [198.18.0.53], filter_queries: false}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)";
constexpr uint64_t kNow = 5'000'000'000;
constexpr uint64_t kDaemonStaleNs = 2'000'000'000;

pc_punt_config live_daemon(uint64_t heartbeat_ns, uint32_t burst = 10) {
  return {.heartbeat_ns = heartbeat_ns, .flow_hold_bytes = 65536, .rate_per_sec = 0, .burst = burst};
}

// A fragment of a UDP answer 198.18.0.53:53 -> 10.88.1.2:`dport`; the first (offset 0) carries the header.
Bytes answer_fragment(uint16_t id, uint16_t offset, bool more, uint16_t dport) {
  PacketBuilder b;
  b.ipv4({.src = test::ipv4_address("198.18.0.53"),
          .dst = test::ipv4_address("10.88.1.2"),
          .id = id,
          .more_fragments = more,
          .fragment_offset = offset});
  if (offset == 0) {
    b.udp({.sport = 53, .dport = dport, .payload = Bytes(32, 0xab), .length = 1000});
  } else {
    b.l4({.protocol = test::kProtoUdp, .bytes = Bytes(64, 0xcd)});
  }
  return b.frame();
}

TEST_F(UserspaceDataPathTest, ADnsAnswerIsHeldWhileTheDaemonLivesAndDroppedWithoutIt) {
  write_policy(kResolverPolicy, policy::Mode::gateway);
  path_->set_now_ns(kNow);
  ASSERT_EQ(inside(udp4("10.88.1.2", "198.18.0.53", 40200, 53)), kPass);
  const Bytes answer = udp4("198.18.0.53", "10.88.1.2", 53, 40200);
  // No daemon configured: the answer is dropped, and the client asks again.
  EXPECT_EQ(outside(answer), drop(PC_DROP_NO_DAEMON));
  EXPECT_EQ(counter(PC_DROP_NO_DAEMON), 1u);
  path_->set_punt_config(live_daemon(kNow));
  EXPECT_EQ(outside(answer), (PacketOutcome{kActionHoldAnswer, PC_DROP_NONE}));
  // A heartbeat as old as the bound still counts; older does not.
  path_->set_now_ns(kNow + kDaemonStaleNs);
  EXPECT_EQ(outside(answer).action, kActionHoldAnswer);
  path_->set_now_ns(kNow + kDaemonStaleNs + 1);
  EXPECT_EQ(outside(answer), drop(PC_DROP_NO_DAEMON));
  EXPECT_EQ(counter(PC_DROP_NO_DAEMON), 2u);
  // The flow itself stands: only its answers wait for the daemon.
  EXPECT_EQ(path_->flow(flow_key("10.88.1.2", 40200, "198.18.0.53", 53, 17))->verdict, PC_VERDICT_ALLOW);
}

TEST_F(UserspaceDataPathTest, OnlyAFlowTheProtectedSideOpenedGetsAnswers) {
  write_policy(kResolverPolicy, policy::Mode::host);
  path_->set_now_ns(kNow);
  path_->set_punt_config(live_daemon(kNow));
  // Host mode admits a flow from outside; from port 53 it is still no answer to anything the host asked.
  const Bytes from_outside = udp4("198.18.0.20", "10.88.1.2", 53, 40300);
  EXPECT_EQ(outside(from_outside), kPass);
  EXPECT_EQ(outside(from_outside), kPass) << "its next datagram is not held as an answer either";
  ASSERT_EQ(inside(udp4("10.88.1.2", "198.18.0.53", 40301, 53)), kPass);
  EXPECT_EQ(outside(udp4("198.18.0.53", "10.88.1.2", 53, 40301)).action, kActionHoldAnswer);
}

TEST_F(UserspaceDataPathTest, AFragmentedDnsAnswerIsDroppedWithItsLaterFragments) {
  write_policy(kResolverPolicy, policy::Mode::gateway);
  path_->set_now_ns(kNow);
  path_->set_punt_config(live_daemon(kNow));
  ASSERT_EQ(inside(udp4("10.88.1.2", "198.18.0.53", 40201, 53)), kPass);
  EXPECT_EQ(outside(answer_fragment(21, 0, true, 40201)), drop(PC_DROP_ANSWER_FRAGMENTED));
  EXPECT_EQ(outside(answer_fragment(21, 5, false, 0)), drop(PC_DROP_ANSWER_FRAGMENTED));
  EXPECT_EQ(counter(PC_DROP_ANSWER_FRAGMENTED), 2u);
  // Whole answers on the same flow are still held.
  EXPECT_EQ(outside(udp4("198.18.0.53", "10.88.1.2", 53, 40201)).action, kActionHoldAnswer);
}

TEST_F(UserspaceDataPathTest, HeldAnswersSpendTheClientsPuntBucket) {
  write_policy(kResolverPolicy, policy::Mode::gateway);
  path_->set_now_ns(kNow);
  path_->set_punt_config(live_daemon(kNow, /*burst=*/2));
  ASSERT_EQ(inside(udp4("10.88.1.2", "198.18.0.53", 40202, 53)), kPass);
  ASSERT_EQ(inside(udp4("10.88.1.3", "198.18.0.53", 40202, 53)), kPass);
  const Bytes answer = udp4("198.18.0.53", "10.88.1.2", 53, 40202);
  EXPECT_EQ(outside(answer).action, kActionHoldAnswer);
  EXPECT_EQ(outside(answer).action, kActionHoldAnswer);
  EXPECT_EQ(outside(answer), drop(PC_DROP_PUNT_RATE));
  // The bucket is the client's, not the resolver's: another client's answers are held.
  EXPECT_EQ(outside(udp4("198.18.0.53", "10.88.1.3", 53, 40202)).action, kActionHoldAnswer);
}

// pc_bound_names (include/portcullis/bound_names.h): the default allows, and the daemon has bound
// 198.18.0.10 to a name a deny rule names.
constexpr const char* kAllowingPolicy = R"(version: 1
defaults: {action: allow, on_deny: reject}
rules:
  - {name: blocked, dst: 198.18.0.10, proto: tcp, ports: [8080], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)";

pc_bound_key bound_key(const char* address, uint32_t scope) {
  pc_bound_key key{};
  const test::Ipv4Address bytes = test::ipv4_address(address);
  std::memcpy(key.addr.bytes, bytes.data(), bytes.size());
  key.scope = scope;
  key.family = PC_FAMILY_IPV4;
  return key;
}

class BoundNameDataPathTest : public UserspaceDataPathTest {
 protected:
  void SetUp() override {
    UserspaceDataPathTest::SetUp();
    write_policy(kAllowingPolicy, policy::Mode::gateway);
    path_->set_now_ns(kNow);
    path_->set_punt_config(live_daemon(kNow));
  }
  void bind(const char* address, uint32_t scope, uint8_t l4_mask, uint64_t expires_ns) {
    const pc_bound_name name{.expires_ns = expires_ns, .l4_mask = l4_mask, .pad = {}};
    path_->set_bound_name(bound_key(address, scope), &name);
  }
};

TEST_F(BoundNameDataPathTest, AnAllowedFlowToABoundAddressIsPendingAndHeldFromItsSyn) {
  bind("198.18.0.10", group_scope(0), PC_L4_TCP, kNow + 60'000'000'000);
  const Bytes syn = tcp4("10.88.1.2", "198.18.0.10", 40300, 443);
  EXPECT_EQ(inside(syn).action, kActionPunt);
  const pc_flow* flow = path_->flow(flow_key("10.88.1.2", 40300, "198.18.0.10", 443, 6));
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(flow->reason, static_cast<uint32_t>(PC_DROP_BOUND_NAME));
  EXPECT_EQ(flow->rule_id, PC_RULE_NONE);
  EXPECT_EQ(flow->held_bytes, syn.size());
  // Its retransmission waits behind it.
  EXPECT_EQ(inside(syn).action, kActionPunt);
  // A binding ending now still holds.
  bind("198.18.0.10", group_scope(0), PC_L4_TCP, kNow);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40301, 443)).action, kActionPunt);
}

TEST_F(BoundNameDataPathTest, ARuleDenyStandsOnABoundAddress) {
  bind("198.18.0.10", group_scope(0), PC_L4_TCP, kNow + 60'000'000'000);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40310, 8080)), reject(PC_DROP_DENIED_BY_RULE));
}

TEST_F(BoundNameDataPathTest, AnExpiredOtherScopesOrOtherProtocolsEntryLetsTheFlowPass) {
  const auto passes_allowed = [&](uint16_t sport) {
    const bool passed = inside(tcp4("10.88.1.2", "198.18.0.10", sport, 443)) == kPass;
    const pc_flow* flow = path_->flow(flow_key("10.88.1.2", sport, "198.18.0.10", 443, 6));
    return passed && flow != nullptr && flow->verdict == PC_VERDICT_ALLOW;
  };
  EXPECT_TRUE(passes_allowed(40320)) << "no entry";
  bind("198.18.0.10", group_scope(0), PC_L4_TCP, kNow - 1);
  EXPECT_TRUE(passes_allowed(40321)) << "expired";
  bind("198.18.0.10", group_scope(0), PC_L4_UDP, kNow + 60'000'000'000);
  EXPECT_TRUE(passes_allowed(40322)) << "a UDP deny's entry";
  path_->set_bound_name(bound_key("198.18.0.10", group_scope(0)), nullptr);
  bind("198.18.0.10", group_scope(1), PC_L4_TCP, kNow + 60'000'000'000);
  bind("198.18.0.10", PC_SCOPE_TOP_LEVEL, PC_L4_TCP, kNow + 60'000'000'000);
  EXPECT_TRUE(passes_allowed(40323)) << "other scopes' entries";
  EXPECT_EQ(path_->bound_name_count(), 2u);
  // The UDP entry holds a UDP flow.
  bind("198.18.0.10", group_scope(0), PC_L4_UDP, kNow + 60'000'000'000);
  EXPECT_EQ(inside(udp4("10.88.1.2", "198.18.0.10", 40324, 443)).action, kActionPunt);
  EXPECT_EQ(path_->flow(flow_key("10.88.1.2", 40324, "198.18.0.10", 443, 17))->reason,
            static_cast<uint32_t>(PC_DROP_BOUND_NAME));
}

}  // namespace
}  // namespace portcullis::dataplane
