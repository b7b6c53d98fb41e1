#include "dataplane/table_classifier.h"

#include <gtest/gtest.h>

#include <random>

#include "policy/policy_loader.h"

namespace portcullis::dataplane {
namespace {

using policy::Action;
using policy::CompiledPolicy;
using policy::IpAddress;
using policy::L4Proto;
using policy::L7Proto;
using policy::Mode;

std::shared_ptr<const CompiledPolicy> compile(const std::string& yaml) {
  policy::LoadResult result = policy::load_policy(yaml, "test.yaml");
  if (!result.policy) {
    for (const auto& d : result.diagnostics) ADD_FAILURE() << policy::format_diagnostic("test.yaml", d);
    return nullptr;
  }
  return policy::compile_policy(std::move(*result.policy));
}

NewFlow flow(const std::string& src, const std::string& dst, uint8_t l4_bit, uint16_t port) {
  return NewFlow{*IpAddress::parse(src), *IpAddress::parse(dst), l4_bit, port};
}

const char* const kPolicy = R"(version: 1
defaults: {action: deny}
dns: {resolvers: [198.18.0.53, "2001:db8::53"]}
rules:
  - {name: lan, dst: 10.0.0.0/8, proto: any}
  - {name: no-db, dst: 10.1.0.0/16, proto: tcp, ports: [5432], action: deny}
  - {name: web-net, dst: 198.18.0.0/24, proto: https}
  - {name: api, dst: api.example.com, proto: https}
  - {name: bound-db, dst: db.example.com, proto: tcp, ports: ["5000-6000"]}
  - {name: evil, dst: .evil.example.com, proto: any, action: deny}
  - {name: ping, dst: [198.18.0.0/15, "2001:db8::/32"], proto: icmp}
  - {name: ntp, dst: 198.18.1.0/24, proto: udp, ports: [123]}
  - {name: other-dns, dst: 10.2.0.53, proto: dns}
groups:
  - name: a
    sources: [10.88.1.0/24, "fd88:1::/64"]
    rules:
      - {name: a-ssh, dst: 198.18.0.22, proto: ssh}
      - {name: a-range, dst: "2001:db8:1::/48", proto: tcp, ports: ["1000-2000"]}
      - {name: a-block, dst: 198.18.0.128/25, proto: any, action: deny}
  - name: b
    sources: [10.88.2.0/24]
    rules:
      - {name: b-all, dst: 198.18.0.0/16, proto: tcp, ports: ["1-65535"]}
)";

TEST(PolicyTables, NestedPrefixesCarryTheRulesOfEveryEnclosingPrefix) {
  const auto policy = compile(kPolicy);
  const PolicyTables tables = build_policy_tables(*policy, Mode::host, 1);
  const TableClassifier classifier(tables);
  // 10.1.2.3 is under 10.0.0.0/8 (lan, allow any) and 10.1.0.0/16 (no-db, deny tcp/5432).
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "10.1.2.3", PC_L4_TCP, 5432)).verdict, PC_VERDICT_DENY);
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "10.1.2.3", PC_L4_TCP, 5433)).verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "10.9.2.3", PC_L4_TCP, 5432)).verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(tables.overflowing_rule_sets, 0u);
}

TEST(PolicyTables, IdenticalRuleSetsAreStoredOnce) {
  const auto policy = compile(R"(version: 1
rules:
  - {dst: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24], proto: tcp, ports: [22]}
)");
  const PolicyTables tables = build_policy_tables(*policy, Mode::host, 1);
  EXPECT_EQ(tables.dst4.size(), 3u);
  EXPECT_EQ(tables.rule_sets.size(), 2u);  // the empty set and the shared one
}

TEST(PolicyTables, RuleSetsThatDoNotFitAreLeftToTheDaemon) {
  std::string yaml = "version: 1\nrules:\n  - {dst: 192.0.2.1, proto: tcp, ports: [";
  for (int port = 1; port <= PC_RULE_SET_CAPACITY + 1; ++port)
    yaml += (port > 1 ? ", " : "") + std::to_string(port * 2);
  yaml += "]}\n";
  const auto policy = compile(yaml);
  const TableClassifier classifier(build_policy_tables(*policy, Mode::host, 1));
  EXPECT_EQ(classifier.tables().overflowing_rule_sets, 1u);
  const pc_decision d = classifier.classify(flow("10.0.0.1", "192.0.2.1", PC_L4_TCP, 4));
  EXPECT_EQ(d.verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(d.reason, PC_DROP_NEEDS_L7);
}

TEST(PolicyTables, GatewayDeniesSourcesInNoGroupHostModeDoesNot) {
  const auto policy = compile(kPolicy);
  const TableClassifier gateway(build_policy_tables(*policy, Mode::gateway, 1));
  const TableClassifier host(build_policy_tables(*policy, Mode::host, 1));
  EXPECT_EQ(gateway.classify(flow("10.99.0.1", "10.1.2.3", PC_L4_TCP, 80)).reason, PC_DROP_SOURCE_NOT_IN_GROUP);
  EXPECT_EQ(host.classify(flow("10.99.0.1", "10.1.2.3", PC_L4_TCP, 80)).verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(gateway.scope_of_source(*IpAddress::parse("fd88:1::9")), group_scope(0));
}

TEST(PolicyTables, NameAndProtocolRulesMakeFlowsPending) {
  const auto policy = compile(kPolicy);
  const TableClassifier classifier(build_policy_tables(*policy, Mode::gateway, 1));
  // https to a prefix: only a ClientHello or a QUIC Initial can tell.
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "198.18.0.10", PC_L4_TCP, 443)).verdict, PC_VERDICT_PENDING);
  // Anywhere on 443 could be api.example.com.
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "203.0.113.9", PC_L4_UDP, 443)).verdict, PC_VERDICT_PENDING);
  // Nothing could allow tcp/444 to an address no rule names: decided now.
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "203.0.113.9", PC_L4_TCP, 444)).verdict, PC_VERDICT_DENY);
  // Rules of L4 protocols to a name (.evil.example.com, any) match only addresses DNS bound to it: an
  // unbound address allowed by its prefix is decided at once.
  EXPECT_EQ(classifier.classify(flow("10.88.1.2", "10.9.9.9", PC_L4_TCP, 80)).verdict, PC_VERDICT_ALLOW);
}

// For every flow the tables decide now, the policy must decide the same whatever the flow later shows
// (protocol, SNI or Host); a pending flow must have a rule that depends on what it shows. No address is
// bound to a name by DNS here, as in a data plane that has seen no answers.
TEST(PolicyTables, DecisionsAgreeWithThePolicyForEveryProtocolAndName) {
  std::string yaml = kPolicy;
  yaml.replace(yaml.find("defaults: {action: deny}"), 24, "defaults: {action: deny, sni_ip_binding: \"off\"}");
  const auto policy = compile(yaml);
  ASSERT_NE(policy, nullptr);
  for (const Mode mode : {Mode::gateway, Mode::host}) {
    const TableClassifier classifier(build_policy_tables(*policy, mode, 1));
    const std::vector<std::string> sources = {"10.88.1.2", "10.88.2.7", "10.99.0.1", "fd88:1::2", "fd99::1"};
    const std::vector<std::string> v4 = {"10.1.2.3",    "10.9.9.9",     "10.2.0.53",  "198.18.0.10", "198.18.0.22",
                                         "198.18.0.53", "198.18.0.200", "198.18.1.5", "198.19.0.1",  "203.0.113.9"};
    const std::vector<std::string> v6 = {"2001:db8::10", "2001:db8::53", "2001:db8:1::5", "2001:db9::1"};
    const std::vector<uint16_t> ports = {22, 53, 80, 123, 443, 999, 1000, 1500, 2001, 5432, 5500, 6001};
    const std::vector<std::optional<std::string>> names = {std::nullopt, "api.example.com", "db.example.com",
                                                           "www.evil.example.com", "other.test"};
    size_t decided = 0;
    size_t pending = 0;
    for (const std::string& src : sources) {
      const bool src_v6 = src.find(':') != std::string::npos;
      for (const std::string& dst : src_v6 ? v6 : v4) {
        std::vector<std::pair<L4Proto, uint16_t>> l4s;
        for (uint16_t port : ports) {
          l4s.emplace_back(L4Proto::tcp, port);
          l4s.emplace_back(L4Proto::udp, port);
        }
        l4s.emplace_back(src_v6 ? L4Proto::icmpv6 : L4Proto::icmp, src_v6 ? 128 : 8);
        l4s.emplace_back(src_v6 ? L4Proto::icmpv6 : L4Proto::icmp, src_v6 ? 129 : 0);
        for (const auto& [l4, port] : l4s) {
          const uint8_t bit = l4 == L4Proto::tcp    ? PC_L4_TCP
                              : l4 == L4Proto::udp  ? PC_L4_UDP
                              : l4 == L4Proto::icmp ? PC_L4_ICMP
                                                    : PC_L4_ICMPV6;
          const pc_decision tables = classifier.classify(flow(src, dst, bit, port));
          SCOPED_TRACE(src + " -> " + dst + " " + std::string(to_string(l4)) + "/" + std::to_string(port));

          policy::FlowQuery q;
          q.src = *IpAddress::parse(src);
          q.dst = *IpAddress::parse(dst);
          q.proto = l4;
          q.dport = port;
          q.icmp_type = static_cast<uint8_t>(port);
          std::vector<L7Proto> shows = {L7Proto::none};
          if (l4 == L4Proto::tcp) shows.insert(shows.end(), {L7Proto::tls, L7Proto::http, L7Proto::ssh});
          if (l4 == L4Proto::udp) shows.push_back(L7Proto::quic);
          bool depends = false;
          for (L7Proto l7 : shows) {
            for (const auto& name : names) {
              q.l7 = l7;
              q.name = name;
              q.name_bound = false;
              const policy::Decision d = policy->evaluate(q, mode);
              const uint8_t verdict = d.verdict == Action::allow ? PC_VERDICT_ALLOW : PC_VERDICT_DENY;
              if (tables.verdict == PC_VERDICT_PENDING) {
                // What the flow shows, or a name DNS bound its address to, may decide it: an allow by name.
                q.name_bound = true;
                const policy::Decision bound = policy->evaluate(q, mode);
                depends = depends || (d.rule != nullptr && (d.needs_dns_binding || l7 != L7Proto::none)) ||
                          (bound.rule != nullptr && bound.needs_dns_binding && bound.verdict == Action::allow);
                continue;
              }
              if (name && verdict != tables.verdict && d.rule != nullptr && d.rule->action == Action::deny &&
                  !policy::proto_matches_shown_name(d.rule->proto)) {
                continue;  // a deny of a bound name by an L4 rule: the daemon applies it to what it decides
              }
              EXPECT_EQ(verdict, tables.verdict) << "shows " << to_string(l7) << " " << name.value_or("-");
              if (l7 == L7Proto::none && !name) {
                const uint32_t rule = d.rule ? static_cast<uint32_t>(d.rule - policy->rules().data()) : PC_RULE_NONE;
                EXPECT_EQ(rule, tables.rule_id);
              }
            }
          }
          if (tables.verdict == PC_VERDICT_PENDING) {
            EXPECT_TRUE(depends) << "pending, but no rule depends on what the flow shows";
            ++pending;
          } else {
            ++decided;
          }
        }
      }
    }
    EXPECT_GT(decided, 200u);
    EXPECT_GT(pending, 20u);
  }
}

}  // namespace
}  // namespace portcullis::dataplane
