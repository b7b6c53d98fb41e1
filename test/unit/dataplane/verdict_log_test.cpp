// The `run` log's verdict lines, counter summary and attachment plan: pure, no kernel.
#include "dataplane/verdict_log.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <regex>

#include "dataplane/attacher.h"
#include "dataplane/counters.h"
#include "policy/policy_loader.h"
#include "portcullis/drop_reasons.h"

namespace portcullis::dataplane {
namespace {

std::shared_ptr<const policy::CompiledPolicy> compile(const std::string& yaml) {
  policy::LoadResult result = policy::load_policy(yaml, "test.yaml");
  if (!result.policy) {
    for (const auto& d : result.diagnostics) ADD_FAILURE() << policy::format_diagnostic("test.yaml", d);
    return nullptr;
  }
  return policy::compile_policy(std::move(*result.policy));
}

const char* const kPolicy = R"(version: 1
defaults: {action: deny}
rules:
  - {name: web, dst: 198.18.0.10, proto: tcp, ports: [8080]}
groups:
  - name: sandbox
    sources: [10.88.1.0/24, "fd88:1::/64"]
    rules:
      - {name: ping, dst: 198.18.0.0/24, proto: icmp}
)";

pc_verdict_event event(const char* src, const char* dst, uint8_t proto, uint16_t sport, uint16_t dport) {
  pc_verdict_event e{};
  const bool v6 = std::string(src).find(':') != std::string::npos;
  e.family = v6 ? PC_FAMILY_IPV6 : PC_FAMILY_IPV4;
  inet_pton(v6 ? AF_INET6 : AF_INET, src, e.src.bytes);
  inet_pton(v6 ? AF_INET6 : AF_INET, dst, e.dst.bytes);
  e.proto = proto;
  e.sport = sport;
  e.dport = dport;
  e.rule_id = PC_RULE_NONE;
  e.scope = 1;
  e.generation = 7;
  return e;
}

TEST(VerdictJson, AllowByRuleNamesTheRuleAndTheSourcesGroup) {
  const auto policy = compile(kPolicy);
  pc_verdict_event e = event("10.88.1.2", "198.18.0.10", 6, 40000, 8080);
  e.verdict = PC_VERDICT_ALLOW;
  e.rule_id = 0;
  EXPECT_EQ(verdict_json(e, policy.get(), "T").dump(),
            R"({"event":"verdict","ts":"T","group":"sandbox","proto":"tcp","src":"10.88.1.2","sport":40000,)"
            R"("dst":"198.18.0.10","dport":8080,"l7":"none","name":null,"verdict":"allow","rule":"web",)"
            R"("reason":"rule","generation":7})");
}

TEST(VerdictJson, DenyByDefaultHasNoRuleAndTheDropReason) {
  const auto policy = compile(kPolicy);
  pc_verdict_event e = event("fd88:1::2", "2001:db8::20", 17, 5000, 53);
  e.verdict = PC_VERDICT_DENY;
  e.reason = PC_DROP_DENIED_BY_DEFAULT;
  const auto json = verdict_json(e, policy.get(), "T");
  EXPECT_EQ(json["proto"], "udp");
  EXPECT_EQ(json["src"], "fd88:1::2");
  EXPECT_EQ(json["dst"], "2001:db8::20");
  EXPECT_EQ(json["verdict"], "deny");
  EXPECT_TRUE(json["rule"].is_null());
  EXPECT_EQ(json["reason"], "denied-by-default");
}

TEST(VerdictJson, AllowByDefaultSaysSo) {
  const auto policy = compile(kPolicy);
  pc_verdict_event e = event("10.88.1.2", "198.18.0.99", 6, 1, 2);
  e.verdict = PC_VERDICT_ALLOW;
  EXPECT_EQ(verdict_json(e, policy.get(), "T")["reason"], "default");
}

TEST(VerdictJson, PendingFlowIsLoggedAsDeniedForWantOfAName) {
  const auto policy = compile(kPolicy);
  pc_verdict_event e = event("10.88.1.2", "198.18.0.10", 6, 40000, 443);
  e.verdict = PC_VERDICT_PENDING;
  e.reason = PC_DROP_NEEDS_L7;
  const auto json = verdict_json(e, policy.get(), "T");
  EXPECT_EQ(json["verdict"], "deny");
  EXPECT_EQ(json["reason"], "needs-l7");
}

TEST(VerdictJson, IcmpHasNoPortsButItsType) {
  const auto policy = compile(kPolicy);
  pc_verdict_event e = event("10.88.1.2", "198.18.0.10", 1, 77, 8);
  e.verdict = PC_VERDICT_ALLOW;
  e.rule_id = 1;
  const auto json = verdict_json(e, policy.get(), "T");
  EXPECT_EQ(json["proto"], "icmp");
  EXPECT_TRUE(json["sport"].is_null());
  EXPECT_TRUE(json["dport"].is_null());
  EXPECT_EQ(json["icmp_type"], 8);
  EXPECT_EQ(json["rule"], "ping");

  e = event("fd88:1::2", "2001:db8::10", 58, 77, 128);
  EXPECT_EQ(verdict_json(e, policy.get(), "T")["proto"], "icmpv6");
}

TEST(VerdictJson, OtherProtocolsAreNamedByNumber) {
  pc_verdict_event e = event("10.88.1.2", "198.18.0.10", 132, 0, 0);
  EXPECT_EQ(verdict_json(e, nullptr, "T")["proto"], 132);
}

TEST(VerdictJson, WithoutItsPolicyAnEventHasNoRuleOrGroup) {
  pc_verdict_event e = event("10.88.1.2", "198.18.0.10", 6, 40000, 8080);
  e.rule_id = 0;
  const auto json = verdict_json(e, nullptr, "T");
  EXPECT_TRUE(json["rule"].is_null());
  EXPECT_TRUE(json["group"].is_null());
  EXPECT_EQ(json["reason"], "rule");
}

TEST(VerdictJson, TopLevelScopeHasNoGroup) {
  const auto policy = compile(kPolicy);
  pc_verdict_event e = event("10.88.1.2", "198.18.0.10", 6, 40000, 8080);
  e.scope = PC_SCOPE_TOP_LEVEL;
  EXPECT_TRUE(verdict_json(e, policy.get(), "T")["group"].is_null());
}

TEST(PolicyGenerations, KeepsTheLastTwo) {
  const auto policy = compile(kPolicy);
  PolicyGenerations generations;
  generations.add(1, policy);
  generations.add(2, policy);
  generations.add(3, policy);
  EXPECT_EQ(generations.find(1), nullptr);
  EXPECT_EQ(generations.find(2), policy.get());
  EXPECT_EQ(generations.find(3), policy.get());
}

TEST(WallClock, FormatsIso8601UtcWithMicroseconds) {
  const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)");
  EXPECT_TRUE(std::regex_match(WallClock::now_iso8601(), iso));
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const uint64_t monotonic = static_cast<uint64_t>(now.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(now.tv_nsec);
  const std::string converted = WallClock().iso8601(monotonic);
  EXPECT_TRUE(std::regex_match(converted, iso));
  EXPECT_EQ(converted.substr(0, 16), WallClock::now_iso8601().substr(0, 16));  // same minute, give or take
}

TEST(CountersJson, NamesTheSlotsAndOnlyTheDropsThatHappened) {
  std::vector<uint64_t> counters(PC_COUNTER_MAX, 0);
  counters[PC_COUNTER_PASS] = 10;
  counters[PC_COUNTER_REJECT_SENT] = 2;
  counters[PC_DROP_DENIED_BY_RULE] = 3;
  counters[PC_COUNTER_PUNTED] = 4;
  counters[25] = 1;  // a slot this build has no name for
  EXPECT_EQ(counters_json(counters).dump(),
            R"({"passed":10,"new_flows":0,"rejects_sent":2,"rejects_unsupported":0,"events_lost":0,"punted":4,)"
            R"("reinjected":0,"drops":{"reason-25":1,"denied-by-rule":3}})");
}

TEST(PlanAttachments, GatewayWithoutXdpPutsOnlyTcOnTheInside) {
  const auto plan = plan_attachments(policy::Mode::gateway, {"in0"}, {"out0"}, XdpMode::off);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].point, AttachPoint::tc_ingress);
  EXPECT_EQ(plan[0].program, DataPlaneProgram::inside);
  EXPECT_EQ(plan[1].point, AttachPoint::tc_egress);
  EXPECT_EQ(plan[1].program, DataPlaneProgram::reinject);
  EXPECT_EQ(plan[2].iface, "out0");
  EXPECT_EQ(plan[3].iface, "out0");
}

TEST(PlanAttachments, GatewayPutsXdpAndTcOnTheInsideAndTcOnTheOutside) {
  const auto plan = plan_attachments(policy::Mode::gateway, {"in0", "in1"}, {"out0"}, XdpMode::native);
  ASSERT_EQ(plan.size(), 8u);
  EXPECT_EQ(plan[0].iface, "in0");
  EXPECT_EQ(plan[0].point, AttachPoint::xdp);
  EXPECT_EQ(plan[0].program, DataPlaneProgram::xdp);
  EXPECT_EQ(plan[1].point, AttachPoint::tc_ingress);
  EXPECT_EQ(plan[1].program, DataPlaneProgram::inside);
  EXPECT_EQ(plan[2].point, AttachPoint::tc_egress);
  EXPECT_EQ(plan[2].program, DataPlaneProgram::reinject);
  EXPECT_EQ(plan[3].iface, "in1");
  EXPECT_EQ(plan[6].iface, "out0");
  EXPECT_EQ(plan[6].point, AttachPoint::tc_ingress);
  EXPECT_EQ(plan[6].program, DataPlaneProgram::outside);
  // Held DNS answers go back in through the outside interface's egress.
  EXPECT_EQ(plan[7].iface, "out0");
  EXPECT_EQ(plan[7].point, AttachPoint::tc_egress);
  EXPECT_EQ(plan[7].program, DataPlaneProgram::reinject);
}

TEST(PlanAttachments, AMasqueradingGatewayWatchesAnswersOnTheInsideAndNothingOnTheOutside) {
  const auto plan = plan_attachments(policy::Mode::gateway, {"in0"}, {"out0"}, XdpMode::off, true);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].iface, "in0");
  EXPECT_EQ(plan[0].point, AttachPoint::tc_ingress);
  EXPECT_EQ(plan[0].program, DataPlaneProgram::inside);
  EXPECT_EQ(plan[1].iface, "in0");
  EXPECT_EQ(plan[1].point, AttachPoint::tc_egress);
  EXPECT_EQ(plan[1].program, DataPlaneProgram::outside);
}

TEST(PlanAttachments, HostPolicesEgressAndAdmitsRepliesOnEveryUplink) {
  const auto plan = plan_attachments(policy::Mode::host, {"eth0"}, {}, XdpMode::native);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].point, AttachPoint::tc_egress);
  EXPECT_EQ(plan[0].program, DataPlaneProgram::inside);
  EXPECT_EQ(plan[1].point, AttachPoint::tc_ingress);
  EXPECT_EQ(plan[1].program, DataPlaneProgram::outside);
}

}  // namespace
}  // namespace portcullis::dataplane
