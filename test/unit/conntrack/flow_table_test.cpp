// The daemon's flow table: states from the data plane's flags, timeouts like the kernel's, the sync that adopts,
// forgets and expires entries; and what a reloaded policy says of open flows.
#include "conntrack/flow_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "conntrack/revocation.h"
#include "dataplane/policy_tables.h"
#include "dataplane/table_classifier.h"
#include "policy/policy_loader.h"
#include "punt/dns_bindings.h"

namespace portcullis::conntrack {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kIcmp = 1;

pc_addr v4(const char* text) {
  pc_addr addr{};
  const auto parsed = policy::IpAddress::parse(text);
  std::copy_n(parsed->bytes.begin(), 4, addr.bytes);
  return addr;
}

pc_verdict_event event(uint8_t proto, const char* src, uint16_t sport, const char* dst, uint16_t dport,
                       uint8_t verdict = PC_VERDICT_ALLOW, uint64_t first_seen = kSecond) {
  pc_verdict_event e{};
  e.timestamp_ns = first_seen;
  e.src = v4(src);
  e.dst = v4(dst);
  e.sport = sport;
  e.dport = dport;
  e.family = PC_FAMILY_IPV4;
  e.proto = proto;
  e.verdict = verdict;
  e.rule_id = 0;
  e.generation = 1;
  return e;
}

// The data plane's entry for `e`, as it would hold it after `packets_out` and `packets_in` packets.
FlowTable::Entry entry_of(const pc_verdict_event& e, uint64_t last_seen, uint8_t flags_out = 0, uint8_t flags_in = 0,
                          uint64_t packets_in = 0) {
  pc_flow flow{};
  uint8_t direction = 0;
  const pc_flow_key key = key_of(e, &direction);
  flow.first_seen_ns = e.timestamp_ns;
  flow.last_seen_ns = last_seen;
  flow.initiator = direction;
  flow.verdict = e.verdict;
  flow.rule_id = e.rule_id;
  flow.generation = e.generation;
  flow.packets[direction] = 3;
  flow.packets[direction ^ 1] = packets_in;
  flow.tcp_flags[direction] = flags_out;
  flow.tcp_flags[direction ^ 1] = flags_in;
  return {key, flow};
}

TEST(FlowState, TcpFollowsTheFlagsEachSideSent) {
  const pc_verdict_event e = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 443);
  EXPECT_EQ(state_of(entry_of(e, kSecond, PC_TCP_SYN).second, kTcp), FlowState::handshake);
  EXPECT_EQ(state_of(entry_of(e, kSecond, PC_TCP_SYN, PC_TCP_SYN | PC_TCP_ACK).second, kTcp), FlowState::handshake);
  EXPECT_EQ(state_of(entry_of(e, kSecond, PC_TCP_SYN | PC_TCP_ACK, PC_TCP_SYN | PC_TCP_ACK).second, kTcp),
            FlowState::established);
  EXPECT_EQ(state_of(entry_of(e, kSecond, PC_TCP_ACK | PC_TCP_FIN, PC_TCP_ACK).second, kTcp), FlowState::closing);
  EXPECT_EQ(state_of(entry_of(e, kSecond, PC_TCP_ACK, PC_TCP_ACK | PC_TCP_RST).second, kTcp), FlowState::closed);
}

TEST(FlowState, UdpAndIcmpAreRepliedOnceTheOtherSideAnswers) {
  const pc_verdict_event udp = event(kUdp, "10.88.1.2", 40000, "198.18.0.10", 7000);
  EXPECT_EQ(state_of(entry_of(udp, kSecond).second, kUdp), FlowState::one_way);
  EXPECT_EQ(state_of(entry_of(udp, kSecond, 0, 0, 1).second, kUdp), FlowState::replied);
  pc_flow denied = entry_of(udp, kSecond, 0, 0, 1).second;
  denied.verdict = PC_VERDICT_DENY;
  EXPECT_EQ(state_of(denied, kUdp), FlowState::denied);
  denied.verdict = PC_VERDICT_PENDING;
  EXPECT_EQ(state_of(denied, kUdp), FlowState::pending);
}

TEST(FlowTimeouts, AreTheKernelsAndCanBeSetByName) {
  Timeouts timeouts;
  EXPECT_EQ(timeout_seconds(timeouts, FlowState::established, kTcp), 432000u);
  EXPECT_EQ(timeout_seconds(timeouts, FlowState::handshake, kTcp), 120u);
  EXPECT_EQ(timeout_seconds(timeouts, FlowState::one_way, kUdp), 30u);
  EXPECT_EQ(timeout_seconds(timeouts, FlowState::replied, kUdp), 120u);
  EXPECT_EQ(timeout_seconds(timeouts, FlowState::replied, kIcmp), 30u);
  EXPECT_EQ(timeout_seconds(timeouts, FlowState::pending, kTcp), 0u) << "pending flows are the punt path's";
  EXPECT_EQ(set_timeout(timeouts, "tcp_established=3600"), "");
  EXPECT_EQ(timeouts.tcp_established, 3600u);
  EXPECT_NE(set_timeout(timeouts, "tcp_established=0").find("above 0"), std::string::npos);
  EXPECT_NE(set_timeout(timeouts, "tcp_established=1h").find("not a number"), std::string::npos);
  EXPECT_NE(set_timeout(timeouts, "tcp_forever=10").find("no timeout is called tcp_forever"), std::string::npos);
  EXPECT_NE(set_timeout(timeouts, "udp").find("NAME=SECONDS"), std::string::npos);
}

TEST(FlowTable, SyncTakesCountersFromTheDataPlaneAndKeepsWhatTheDaemonKnows) {
  FlowTable table;
  const pc_verdict_event e = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 443);
  punt::FlowIdentity identity;
  identity.state = punt::FlowIdentity::State::identified;
  identity.l7 = policy::L7Proto::tls;
  identity.name = "allowed.test";
  table.on_decision(e, identity, {});
  const std::vector<FlowTable::Entry> entries = {
      entry_of(e, 2 * kSecond, PC_TCP_SYN | PC_TCP_ACK, PC_TCP_SYN | PC_TCP_ACK, 5)};
  const FlowTable::SyncResult result = table.sync(entries, 3 * kSecond);
  EXPECT_EQ(result.adopted, 0u);
  EXPECT_EQ(result.forgotten, 0u);
  EXPECT_TRUE(result.expired.empty());
  const TrackedFlow* flow = table.find(entries[0].first);
  ASSERT_NE(flow, nullptr);
  EXPECT_EQ(flow->identity->name, "allowed.test");
  EXPECT_EQ(flow->state(), FlowState::established);
  EXPECT_EQ(flow->data.packets[flow->data.initiator ^ 1], 5u);
  EXPECT_FALSE(flow->adopted);
}

TEST(FlowTable, EntriesTheTableLacksAreAdoptedAndEntriesTheDataPlaneLostAreForgotten) {
  FlowTable table;
  const pc_verdict_event gone = event(kUdp, "10.88.1.2", 40001, "198.18.0.10", 7000);
  table.on_verdict(gone);
  const pc_verdict_event found = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 9001);
  const std::vector<FlowTable::Entry> entries = {entry_of(found, kSecond, PC_TCP_ACK, PC_TCP_ACK, 1)};
  const FlowTable::SyncResult result = table.sync(entries, 2 * kSecond);
  EXPECT_EQ(result.adopted, 1u);
  EXPECT_EQ(result.forgotten, 1u);
  EXPECT_EQ(table.size(), 1u);
  const TrackedFlow* flow = table.find(entries[0].first);
  ASSERT_NE(flow, nullptr);
  EXPECT_TRUE(flow->adopted);
  // Rebuilt from the entry alone: the initiator's side of the key is the source.
  EXPECT_EQ(flow->src().to_string(), "10.88.1.2");
  EXPECT_EQ(flow->event.sport, 40000);
  EXPECT_EQ(flow->dst().to_string(), "198.18.0.10");
  EXPECT_EQ(flow->event.dport, 9001);
  // Its verdict event arriving late makes it a flow seen decided, counters kept.
  table.on_verdict(found);
  EXPECT_FALSE(table.find(entries[0].first)->adopted);
  EXPECT_EQ(table.find(entries[0].first)->data.packets[flow->data.initiator ^ 1], 1u);
}

TEST(FlowTable, IdleFlowsExpireAfterTheirStatesTimeout) {
  Timeouts timeouts;
  timeouts.udp = 5;
  timeouts.tcp_established = 100;
  FlowTable table(timeouts);
  const pc_verdict_event udp = event(kUdp, "10.88.1.2", 40001, "198.18.0.10", 7000);
  const pc_verdict_event tcp = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 9001);
  const std::vector<FlowTable::Entry> entries = {entry_of(udp, kSecond),
                                                 entry_of(tcp, kSecond, PC_TCP_ACK, PC_TCP_ACK, 1)};
  EXPECT_TRUE(table.sync(entries, 5 * kSecond).expired.empty());
  const FlowTable::SyncResult later = table.sync(entries, 7 * kSecond);
  ASSERT_EQ(later.expired.size(), 1u);
  EXPECT_EQ(later.expired[0].proto, kUdp);
  EXPECT_EQ(table.size(), 1u) << "the expired flow leaves the table";
  const pc_verdict_event pending = event(kTcp, "10.88.1.2", 40002, "198.18.0.10", 443, PC_VERDICT_PENDING);
  const std::vector<FlowTable::Entry> waiting = {entry_of(pending, kSecond)};
  EXPECT_TRUE(table.sync(waiting, 1000 * kSecond).expired.empty()) << "a pending flow is never expired here";
}

TEST(FlowTable, ANewFlowOnTheSameAddressesAndPortsReplacesTheOld) {
  FlowTable table;
  const pc_verdict_event first = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 443);
  punt::FlowIdentity identity;
  identity.state = punt::FlowIdentity::State::identified;
  identity.name = "allowed.test";
  table.on_decision(first, identity, {});
  const pc_verdict_event again = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 443, PC_VERDICT_ALLOW, 9 * kSecond);
  table.on_verdict(again);
  const TrackedFlow* flow = table.find(key_of(again));
  ASSERT_NE(flow, nullptr);
  EXPECT_FALSE(flow->identity.has_value()) << "what the old flow showed is not the new one's";
  EXPECT_EQ(table.size(), 1u);
}

class Reevaluate : public ::testing::Test {
 protected:
  void load(const char* yaml) {
    policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
    ASSERT_TRUE(loaded.policy.has_value());
    policy_ = policy::compile_policy(std::move(*loaded.policy));
    classifier_.emplace(dataplane::build_policy_tables(*policy_, policy::Mode::gateway, 2));
  }
  Reevaluation judge(const TrackedFlow& flow) const {
    return reevaluate(flow, *policy_, policy::Mode::gateway, *classifier_, bindings_, kSecond);
  }
  static TrackedFlow flow_of(const pc_verdict_event& e) {
    TrackedFlow flow;
    flow.key = key_of(e);
    flow.event = e;
    flow.data = entry_of(e, kSecond).second;
    return flow;
  }
  std::string rule_name(uint32_t id) const {
    return id < policy_->rules().size() ? policy_->rules()[id].name : "(none)";
  }

  std::shared_ptr<const policy::CompiledPolicy> policy_;
  std::optional<dataplane::TableClassifier> classifier_;
  punt::DnsBindings bindings_;
};

constexpr const char* kReloaded = R"(version: 1
defaults: {action: deny, sni_ip_binding: dns}
rules:
  - {name: kept, dst: 198.18.0.10, proto: tcp, ports: [9001]}
  - {name: web, dst: allowed.test, proto: https}
  - {name: ntp, dst: time.test, proto: udp, ports: [123]}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)";

TEST_F(Reevaluate, AnAddressFlowIsClassifiedAsTheDataPlaneWouldClassifyItNew) {
  load(kReloaded);
  const Reevaluation kept = judge(flow_of(event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 9001)));
  EXPECT_TRUE(kept.allow);
  EXPECT_EQ(rule_name(kept.rule_id), "kept");
  const Reevaluation cut = judge(flow_of(event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 9000)));
  EXPECT_FALSE(cut.allow);
  EXPECT_EQ(cut.reason, PC_DROP_DENIED_BY_DEFAULT);
}

TEST_F(Reevaluate, ADenyOfItsProtocolToANameItsAddressIsBoundToCutsAFlowWhateverAllowedIt) {
  load(R"(version: 1
defaults: {action: allow, sni_ip_binding: off}
rules:
  - {name: kept, dst: 198.18.0.10, proto: tcp, ports: [9001]}
  - {name: no-evil, action: deny, dst: evil.test, proto: tcp, ports: [9001, 443]}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)");
  const pc_verdict_event by_address = event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 9001);
  TrackedFlow named = flow_of(event(kTcp, "10.88.1.2", 40001, "198.18.0.10", 443));
  named.identity.emplace();
  named.identity->state = punt::FlowIdentity::State::identified;
  named.identity->l7 = policy::L7Proto::tls;
  named.identity->name = "good.test";
  EXPECT_TRUE(judge(flow_of(by_address)).allow) << "its address is bound to no name";
  EXPECT_TRUE(judge(named).allow);
  bindings_.bind(0, {"evil.test"}, *policy::IpAddress::parse("198.18.0.10"), 60, 0);
  const Reevaluation cut = judge(flow_of(by_address));
  EXPECT_FALSE(cut.allow);
  EXPECT_EQ(rule_name(cut.rule_id), "no-evil");
  const Reevaluation cut_named = judge(named);
  EXPECT_FALSE(cut_named.allow) << "the name it shows does not save it";
  EXPECT_EQ(rule_name(cut_named.rule_id), "no-evil");
  EXPECT_TRUE(judge(flow_of(event(kUdp, "10.88.1.2", 40002, "198.18.0.10", 9001))).allow) << "udp: no deny of it";
}

TEST_F(Reevaluate, ANamedFlowIsJudgedByTheNameItShowedAndItsBindingThen) {
  load(kReloaded);
  TrackedFlow flow = flow_of(event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 443));
  flow.identity.emplace();
  flow.identity->state = punt::FlowIdentity::State::identified;
  flow.identity->l7 = policy::L7Proto::tls;
  flow.identity->name = "allowed.test";
  // No binding now (it expired since, or was never asked again): the flow was allowed with one, and stays.
  const Reevaluation allowed = judge(flow);
  EXPECT_TRUE(allowed.allow);
  EXPECT_EQ(rule_name(allowed.rule_id), "web");
  flow.identity->name = "other.test";
  EXPECT_FALSE(judge(flow).allow);
}

TEST_F(Reevaluate, AFlowDecidedByBoundNamesKeepsThemAfterTheirExpiry) {
  load(kReloaded);
  TrackedFlow flow = flow_of(event(kUdp, "10.88.1.2", 40000, "198.18.0.30", 123));
  flow.identity.emplace();
  flow.identity->state = punt::FlowIdentity::State::unknown;
  EXPECT_FALSE(judge(flow).allow) << "no name bound to the address";
  flow.bound_names = {"time.test"};
  const Reevaluation allowed = judge(flow);
  EXPECT_TRUE(allowed.allow);
  EXPECT_EQ(rule_name(allowed.rule_id), "ntp");
}

TEST_F(Reevaluate, AnAdoptedFlowWhoseNameTheNewPolicyNeedsIsLeftAlone) {
  load(kReloaded);
  TrackedFlow flow = flow_of(event(kTcp, "10.88.1.2", 40000, "198.18.0.10", 443));
  const Reevaluation unread = judge(flow);
  EXPECT_FALSE(unread.allow) << "seen decided without a name: the new policy wants one";
  flow.adopted = true;
  const Reevaluation adopted = judge(flow);
  EXPECT_TRUE(adopted.allow);
  EXPECT_TRUE(adopted.unverifiable);
}

}  // namespace
}  // namespace portcullis::conntrack
