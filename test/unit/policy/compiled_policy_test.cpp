#include "policy/compiled_policy.h"

#include <gtest/gtest.h>

#include "policy/domain_name.h"
#include "policy/policy_loader.h"

namespace portcullis::policy {
namespace {

std::shared_ptr<const CompiledPolicy> compile(const std::string& yaml) {
  LoadResult result = load_policy(yaml, "test.yaml");
  if (!result.policy) {
    for (const Diagnostic& d : result.diagnostics) ADD_FAILURE() << format_diagnostic("test.yaml", d);
    return nullptr;
  }
  return compile_policy(std::move(*result.policy));
}

struct Flow {
  std::string src = "10.0.0.2";
  std::string dst;
  L4Proto proto = L4Proto::tcp;
  uint16_t dport = 443;
  L7Proto l7 = L7Proto::tls;
  std::string name;
  uint8_t icmp_type = 8;
};

Decision decide(const CompiledPolicy& policy, const Flow& f, Mode mode = Mode::host) {
  FlowQuery q;
  q.src = *IpAddress::parse(f.src);
  q.dst = *IpAddress::parse(f.dst);
  q.proto = f.proto;
  q.dport = f.dport;
  q.l7 = f.l7;
  q.icmp_type = f.icmp_type;
  if (!f.name.empty()) q.name = normalize_domain_name(f.name).name;
  return policy.evaluate(q, mode);
}

// The name of the deciding rule, "default:allow|deny" when defaults decided, or the reason otherwise.
std::string decided_by(const CompiledPolicy& policy, const Flow& f, Mode mode = Mode::host) {
  const Decision d = decide(policy, f, mode);
  if (d.rule) return std::string(to_string(d.verdict)) + ":" + d.rule->name;
  return std::string(to_string(d.reason)) + ":" + std::string(to_string(d.verdict));
}

TEST(NameMatching, ExactNameMatchesOnlyItselfCaseAndTrailingDotIgnored) {
  const auto p = compile("version: 1\nrules:\n  - {name: r, dst: Example.COM, proto: https}\n");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "example.com"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "EXAMPLE.com."}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "www.example.com"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "notexample.com"}), "default:deny");
}

TEST(NameMatching, SingleStarIsExactlyOneLabelBelowNotTheApex) {
  const auto p = compile("version: 1\nrules:\n  - {name: r, dst: \"*.example.com\", proto: https}\n");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "www.example.com"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "example.com"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "a.www.example.com"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "wwwexample.com"}), "default:deny");
}

TEST(NameMatching, DoubleStarIsAnyDepthBelowNotTheApex) {
  const auto p = compile("version: 1\nrules:\n  - {name: r, dst: \"**.example.com\", proto: https}\n");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "www.example.com"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "a.b.c.example.com"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "example.com"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "badexample.com"}), "default:deny");
}

TEST(NameMatching, LeadingDotIsTheApexAndAnyDepthBelow) {
  const auto p = compile("version: 1\nrules:\n  - {name: r, dst: \".example.com\", proto: https}\n");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "example.com"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "a.b.example.com"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "example.com.evil.test"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "xexample.com"}), "default:deny");
}

TEST(NameMatching, InternationalizedNamesCompareAsALabels) {
  const auto p = compile("version: 1\nrules:\n  - {name: r, dst: \"bücher.example\", proto: https}\n");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "xn--bcher-kva.example"}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "BÜCHER.example."}), "allow:r");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "bucher.example"}), "default:deny");
}

TEST(AddressMatching, PrefixesOfBothFamiliesMatchAndV4MappedIsV4) {
  const auto p = compile(R"(version: 1
rules:
  - {name: v4, dst: 192.0.2.0/24, proto: tcp, ports: [5432]}
  - {name: v6, dst: "2001:db8:1::/48", proto: tcp, ports: [5432]}
)");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.200", .dport = 5432, .l7 = L7Proto::none}), "allow:v4");
  EXPECT_EQ(decided_by(*p, {.dst = "::ffff:192.0.2.200", .dport = 5432, .l7 = L7Proto::none}), "allow:v4");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.3.1", .dport = 5432, .l7 = L7Proto::none}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.src = "fd00::2", .dst = "2001:db8:1:ffff::1", .dport = 5432, .l7 = L7Proto::none}),
            "allow:v6");
  EXPECT_EQ(decided_by(*p, {.src = "fd00::2", .dst = "2001:db8:2::1", .dport = 5432, .l7 = L7Proto::none}),
            "default:deny");
  // A v6 prefix never covers IPv4, even ::/0.
  const auto all6 = compile("version: 1\nrules:\n  - {name: all6, dst: \"::/0\"}\n");
  EXPECT_EQ(decided_by(*all6, {.dst = "192.0.2.1"}), "default:deny");
  EXPECT_EQ(decided_by(*all6, {.src = "fd00::2", .dst = "2001:db8::1"}), "allow:all6");
}

TEST(Decisions, DenyWinsOverAllowWhateverTheOrder) {
  const auto p = compile(R"(version: 1
rules:
  - {name: block, dst: ".example.com", proto: any, action: deny}
  - {name: api, dst: "api.example.com", proto: https}
  - {name: net, dst: "192.0.2.0/24"}
)");
  const Decision d = decide(*p, {.dst = "192.0.2.1", .name = "api.example.com"});
  EXPECT_EQ(d.verdict, Action::deny);
  ASSERT_NE(d.rule, nullptr);
  EXPECT_EQ(d.rule->name, "block");
  EXPECT_EQ(d.matched.size(), 3u);
}

TEST(Decisions, DefaultActionDecidesWhenNoRuleMatches) {
  const auto deny = compile("version: 1\nrules:\n  - {dst: a.example, proto: https}\n");
  const auto allow =
      compile("version: 1\ndefaults: {action: allow}\nrules:\n  - {dst: a.example, proto: https, action: deny}\n");
  EXPECT_EQ(decided_by(*deny, {.dst = "192.0.2.1", .name = "b.example"}), "default:deny");
  EXPECT_EQ(decided_by(*allow, {.dst = "192.0.2.1", .name = "b.example"}), "default:allow");
  EXPECT_EQ(decide(*allow, {.dst = "192.0.2.1", .name = "b.example"}).rule, nullptr);
}

TEST(Decisions, ProtocolsRequireWhatTheFlowShowed) {
  const auto p = compile(R"(version: 1
rules:
  - {name: h, dst: h.example, proto: https}
  - {name: t, dst: t.example, proto: tls, ports: [443, 8443]}
  - {name: q, dst: q.example, proto: quic}
  - {name: w, dst: w.example, proto: http}
  - {name: s, dst: 192.0.2.22, proto: ssh}
  - {name: u, dst: 192.0.2.44, proto: udp, ports: [443]}
)");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "h.example"}), "allow:h");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .proto = L4Proto::udp, .l7 = L7Proto::quic, .name = "h.example"}),
            "allow:h");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .dport = 8443, .name = "t.example"}), "allow:t");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .proto = L4Proto::udp, .l7 = L7Proto::quic, .name = "t.example"}),
            "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .name = "q.example"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .dport = 80, .l7 = L7Proto::http, .name = "w.example"}), "allow:w");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .dport = 80, .l7 = L7Proto::tls, .name = "w.example"}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.22", .dport = 22, .l7 = L7Proto::ssh}), "allow:s");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.22", .dport = 22, .l7 = L7Proto::none}), "default:deny");
  // udp on 443 is L4 only: it matches QUIC and anything else on that port.
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.44", .proto = L4Proto::udp, .l7 = L7Proto::quic, .name = "x.example"}),
            "allow:u");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.44", .proto = L4Proto::udp, .l7 = L7Proto::none}), "allow:u");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.44", .proto = L4Proto::udp, .dport = 444, .l7 = L7Proto::none}),
            "default:deny");
}

TEST(Decisions, AClientHelloWithoutSniMatchesOnlyAddressRules) {
  const auto p = compile(R"(version: 1
rules:
  - {name: by-name, dst: ".example.com", proto: tls}
  - {name: by-address, dst: 192.0.2.0/24, proto: tls}
)");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1"}), "allow:by-address");
  EXPECT_EQ(decided_by(*p, {.dst = "198.51.100.1"}), "default:deny");
}

TEST(Decisions, NameMatchesDependOnDnsBindingsAsConfigured) {
  const std::string rules = R"(
rules:
  - {name: sni, dst: a.example, proto: tls}
  - {name: l4, dst: b.example, proto: tcp, ports: [5432]}
  - {name: cidr, dst: 192.0.2.0/24, proto: tls}
)";
  const auto bound = compile("version: 1" + rules);
  const auto unbound = compile("version: 1\ndefaults: {sni_ip_binding: \"off\"}" + rules);
  EXPECT_TRUE(decide(*bound, {.dst = "198.51.100.1", .name = "a.example"}).needs_dns_binding);
  EXPECT_FALSE(decide(*unbound, {.dst = "198.51.100.1", .name = "a.example"}).needs_dns_binding);
  // An L4 rule can only know a flow's name through DNS, whatever sni_ip_binding says.
  const Flow l4{.dst = "198.51.100.1", .dport = 5432, .l7 = L7Proto::none, .name = "b.example"};
  EXPECT_TRUE(decide(*bound, l4).needs_dns_binding);
  EXPECT_TRUE(decide(*unbound, l4).needs_dns_binding);
  EXPECT_FALSE(decide(*bound, {.dst = "192.0.2.9", .name = "whatever.example"}).needs_dns_binding);
}

TEST(Decisions, UnboundNamesMatchOnlyShownNameRulesAndOnlyWithoutBinding) {
  const std::string rules = R"(
rules:
  - {name: sni, dst: a.example, proto: tls}
  - {name: l4, dst: a.example, proto: tcp, ports: [443]}
)";
  for (const std::string& binding : {"dns", "off"}) {
    const auto p = compile("version: 1\ndefaults: {sni_ip_binding: \"" + binding + "\"}" + rules);
    FlowQuery q;
    q.src = *IpAddress::parse("10.0.0.2");
    q.dst = *IpAddress::parse("198.51.100.1");
    q.dport = 443;
    q.l7 = L7Proto::tls;
    q.name = "a.example";
    q.name_bound = false;
    const Decision d = p->evaluate(q, Mode::host);
    if (binding == "dns") {
      EXPECT_EQ(d.reason, DecisionReason::default_action) << "SNI alone must not do when bindings are required";
    } else {
      ASSERT_NE(d.rule, nullptr);
      EXPECT_EQ(d.rule->name, "sni");
      EXPECT_EQ(d.matched.size(), 1u) << "the tcp rule needs a DNS binding";
    }
  }
}

TEST(Decisions, PortRangesBoundTheMatch) {
  const auto p =
      compile("version: 1\nrules:\n  - {name: r, dst: 192.0.2.0/24, proto: tcp, ports: [\"1000-2000\", 22]}\n");
  for (uint16_t port : {1000, 1500, 2000, 22}) {
    EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .dport = port, .l7 = L7Proto::none}), "allow:r") << port;
  }
  for (uint16_t port : {999, 2001, 21, 23}) {
    EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .dport = port, .l7 = L7Proto::none}), "default:deny") << port;
  }
}

TEST(Decisions, IcmpTypesMatchTheirNumberInEachFamily) {
  const auto p = compile(R"(version: 1
rules:
  - {name: ping, dst: [192.0.2.0/24, "2001:db8::/32"], proto: icmp}
  - {name: ptb, dst: "2001:db8::/32", proto: icmp, icmp_types: [packet-too-big]}
)");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .proto = L4Proto::icmp, .icmp_type = 8}), "allow:ping");
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .proto = L4Proto::icmp, .icmp_type = 13}), "default:deny");
  EXPECT_EQ(decided_by(*p, {.src = "fd00::1", .dst = "2001:db8::1", .proto = L4Proto::icmpv6, .icmp_type = 128}),
            "allow:ping");
  EXPECT_EQ(decided_by(*p, {.src = "fd00::1", .dst = "2001:db8::1", .proto = L4Proto::icmpv6, .icmp_type = 2}),
            "allow:ptb");
  EXPECT_EQ(decided_by(*p, {.src = "fd00::1", .dst = "2001:db8::1", .proto = L4Proto::icmpv6, .icmp_type = 8}),
            "default:deny");
  // proto icmp is not tcp.
  EXPECT_EQ(decided_by(*p, {.dst = "192.0.2.1", .dport = 80, .l7 = L7Proto::none}), "default:deny");
}

TEST(Decisions, DnsGoesOnlyToResolvers) {
  const auto p = compile(R"(version: 1
defaults: {action: allow}
dns: {resolvers: [198.18.0.53]}
rules:
  - {name: internal, dst: 10.0.0.0/8}
  - {name: other-resolver, dst: 10.1.1.53, proto: dns}
)");
  EXPECT_EQ(decided_by(*p, {.dst = "198.18.0.53", .proto = L4Proto::udp, .dport = 53, .l7 = L7Proto::dns}),
            "allow:dns.resolvers");
  EXPECT_EQ(decided_by(*p, {.dst = "198.18.0.53", .dport = 53, .l7 = L7Proto::dns}), "allow:dns.resolvers");
  EXPECT_EQ(decided_by(*p, {.dst = "10.1.1.53", .proto = L4Proto::udp, .dport = 53, .l7 = L7Proto::dns}),
            "allow:other-resolver");
  // An `any` rule and defaults.action allow do not open port 53 to other servers.
  EXPECT_EQ(decided_by(*p, {.dst = "10.2.2.2", .proto = L4Proto::udp, .dport = 53, .l7 = L7Proto::dns}),
            "dns-not-resolver:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "8.8.8.8", .proto = L4Proto::udp, .dport = 53, .l7 = L7Proto::dns}),
            "dns-not-resolver:deny");
  EXPECT_EQ(decided_by(*p, {.dst = "10.2.2.2", .proto = L4Proto::udp, .dport = 54, .l7 = L7Proto::none}),
            "allow:internal");
}

TEST(Decisions, GroupRulesApplyOnlyToTheirSources) {
  const auto p = compile(R"(version: 1
rules:
  - {name: everyone, dst: shared.example, proto: https}
groups:
  - name: a
    sources: [10.1.0.0/16, "fd01::/64"]
    rules: [{name: a-only, dst: a.example, proto: https}]
  - name: b
    sources: [10.2.0.0/16]
    rules: [{name: b-deny, dst: shared.example, proto: https, action: deny}]
)");
  EXPECT_EQ(decided_by(*p, {.src = "10.1.0.5", .dst = "192.0.2.1", .name = "a.example"}, Mode::gateway),
            "allow:a-only");
  EXPECT_EQ(decided_by(*p, {.src = "fd01::5", .dst = "2001:db8::1", .name = "a.example"}, Mode::gateway),
            "allow:a-only");
  EXPECT_EQ(decided_by(*p, {.src = "10.2.0.5", .dst = "192.0.2.1", .name = "a.example"}, Mode::gateway),
            "default:deny");
  EXPECT_EQ(decided_by(*p, {.src = "10.1.0.5", .dst = "192.0.2.1", .name = "shared.example"}, Mode::gateway),
            "allow:everyone");
  EXPECT_EQ(decided_by(*p, {.src = "10.2.0.5", .dst = "192.0.2.1", .name = "shared.example"}, Mode::gateway),
            "deny:b-deny");
  EXPECT_EQ(decide(*p, {.src = "::ffff:10.2.0.5", .dst = "192.0.2.1", .name = "shared.example"}, Mode::gateway).group,
            std::optional<size_t>(1));
}

TEST(Decisions, GatewayDropsSourcesInNoGroupHostModeUsesTopLevelRules) {
  const auto p = compile(R"(version: 1
rules: [{name: everyone, dst: shared.example, proto: https}]
groups: [{name: a, sources: [10.1.0.0/16]}]
)");
  EXPECT_EQ(decided_by(*p, {.src = "10.9.0.1", .dst = "192.0.2.1", .name = "shared.example"}, Mode::gateway),
            "source-not-in-group:deny");
  EXPECT_EQ(decided_by(*p, {.src = "10.9.0.1", .dst = "192.0.2.1", .name = "shared.example"}, Mode::host),
            "allow:everyone");
}

TEST(Decisions, LoopbackIsAlwaysAllowed) {
  const auto p = compile("version: 1\nrules: [{dst: a.example, proto: https, action: deny}]\n");
  EXPECT_EQ(decided_by(*p, {.dst = "127.0.0.1", .dport = 8080, .l7 = L7Proto::none}), "loopback:allow");
  EXPECT_EQ(decided_by(*p, {.src = "::1", .dst = "::1", .dport = 8080, .l7 = L7Proto::none}), "loopback:allow");
}

}  // namespace
}  // namespace portcullis::policy

namespace portcullis::policy {
namespace {

TEST(NameCouldBeAllowed, OnlyNamesAnAllowRuleOfTheClientsScopeCouldMatch) {
  const auto p = compile(R"(version: 1
rules:
  - {name: registry, dst: "**.npmjs.org", proto: https}
  - {name: no-ads, dst: ads.example.com, proto: any, action: deny}
  - {name: web, dst: 198.18.0.0/24, proto: tcp, ports: [80]}
groups:
  - {name: a, sources: [10.88.1.0/24], rules: [{dst: .example.com, proto: https}]}
  - {name: b, sources: [10.88.2.0/24]}
)");
  EXPECT_TRUE(p->name_could_be_allowed("registry.npmjs.org", std::nullopt));
  EXPECT_TRUE(p->name_could_be_allowed("registry.npmjs.org", 1));
  EXPECT_FALSE(p->name_could_be_allowed("npmjs.org", std::nullopt)) << "** is below the apex only";
  EXPECT_TRUE(p->name_could_be_allowed("www.example.com", 0));
  EXPECT_FALSE(p->name_could_be_allowed("www.example.com", 1)) << "group a's rule, not b's";
  EXPECT_FALSE(p->name_could_be_allowed("ads.example.com", 1)) << "only a deny names it for b";
  EXPECT_FALSE(p->name_could_be_allowed("c2VjcmV0.evil.test", 0));
}

}  // namespace
}  // namespace portcullis::policy
