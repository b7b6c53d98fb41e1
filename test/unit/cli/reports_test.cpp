// What the daemon reports of itself: a flow as `portcullis flows` prints it, and the metrics as Prometheus reads
// them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <regex>
#include <sstream>
#include <string>

#include "cli/flow_report.h"
#include "cli/metrics_report.h"
#include "policy/policy_loader.h"

namespace portcullis::cli {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;

conntrack::TrackedFlow tls_flow() {
  pc_verdict_event event{};
  event.timestamp_ns = kSecond;
  event.family = PC_FAMILY_IPV4;
  event.proto = 6;
  event.src.bytes[0] = 10, event.src.bytes[1] = 88, event.src.bytes[2] = 1, event.src.bytes[3] = 2;
  event.dst.bytes[0] = 198, event.dst.bytes[1] = 18, event.dst.bytes[2] = 0, event.dst.bytes[3] = 10;
  event.sport = 40000;
  event.dport = 443;
  event.scope = 1;
  event.generation = 1;
  conntrack::FlowTable table;
  punt::FlowIdentity identity;
  identity.state = punt::FlowIdentity::State::identified;
  identity.l7 = policy::L7Proto::tls;
  identity.name = "allowed.test";
  table.on_decision(event, identity, {});
  conntrack::TrackedFlow flow = *table.find(conntrack::key_of(event));
  const uint8_t out = flow.data.initiator, in = out ^ 1;
  flow.data.packets[out] = 5, flow.data.bytes[out] = 517;
  flow.data.packets[in] = 4, flow.data.bytes[in] = 4100;
  flow.data.tcp_flags[out] = flow.data.tcp_flags[in] = PC_TCP_SYN | PC_TCP_ACK;
  flow.data.last_seen_ns = 3 * kSecond;
  return flow;
}

TEST(FlowReport, AFlowReadsAsOneLineWithItsNameRuleStateAndCounters) {
  policy::LoadResult loaded = policy::load_policy(R"(version: 1
rules:
  - {name: web, dst: allowed.test, proto: https}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
                                                  "test.yaml");
  ASSERT_TRUE(loaded.policy.has_value());
  const auto policy = policy::compile_policy(std::move(*loaded.policy));
  conntrack::TrackedFlow flow = tls_flow();
  flow.data.rule_id = 0;
  const nlohmann::ordered_json json = flow_json(flow, policy.get(), dataplane::WallClock(), 10 * kSecond);
  EXPECT_EQ(json["event"], "flow");
  EXPECT_EQ(json["name"], "allowed.test");
  EXPECT_EQ(json["rule"], "web");
  EXPECT_EQ(json["group"], "sandbox");
  EXPECT_EQ(json["state"], "established");
  EXPECT_EQ(json["bytes_in"], 4100u);
  EXPECT_EQ(json["idle_s"], 7u);
  EXPECT_EQ(flow_text(nlohmann::json::parse(json.dump())),
            "tcp 10.88.1.2:40000 -> 198.18.0.10:443 tls allowed.test allow rule=web reason=rule established "
            "out=5/517B in=4/4.1kB idle=7s group=sandbox");
}

TEST(MetricsReport, EveryLineIsPrometheusTextAndTheFamiliesAreThere) {
  MetricsSnapshot snapshot;
  snapshot.counters.assign(PC_COUNTER_MAX, 0);
  snapshot.counters[PC_COUNTER_PASS] = 42;
  snapshot.counters[PC_DROP_REVOKED] = 3;
  snapshot.verdicts[{"allow", "web", "rule", "tcp"}] = 7;
  snapshot.punts.latency_us[1] = 2;
  snapshot.punts.latency_sum_us = 150;
  snapshot.punts.parser_outcomes[{"tls", "malformed", "bad \"length\""}] = 1;
  snapshot.flows_by_state[static_cast<size_t>(conntrack::FlowState::established)] = 9;
  const std::string text = render_metrics(snapshot);
  const std::regex line(
      R"(# (HELP|TYPE) .*|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? ([0-9.e+-]+|\+Inf|NaN))");
  std::istringstream lines(text);
  for (std::string each; std::getline(lines, each);) EXPECT_TRUE(std::regex_match(each, line)) << each;
  for (const char* expected : {
           "portcullis_packets_total{outcome=\"passed\"} 42\n",
           "portcullis_drops_total{reason=\"revoked\"} 3\n",
           "portcullis_verdicts_total{verdict=\"allow\",rule=\"web\",reason=\"rule\",proto=\"tcp\"} 7\n",
           "portcullis_punt_to_verdict_seconds_bucket{le=\"0.0001\"} 2\n",
           "portcullis_punt_to_verdict_seconds_count 2\n",
           "portcullis_parser_outcomes_total{parser=\"tls\",outcome=\"malformed\",reason=\"bad \\\"length\\\"\"} 1\n",
           "portcullis_flows{state=\"established\"} 9\n",
       }) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected;
  }
}

}  // namespace
}  // namespace portcullis::cli
