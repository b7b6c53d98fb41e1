#include "policy/policy_loader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace portcullis::policy {
namespace {

struct Found {
  int line;
  int column;
  std::string text;
};

LoadResult load(const std::string& yaml) {
  return load_policy(yaml, "test.yaml");
}

// The one error the policy produces; fails the test when there are none or several.
Found only_error(const std::string& yaml) {
  const LoadResult result = load(yaml);
  EXPECT_FALSE(result.policy.has_value());
  std::vector<Found> errors;
  for (const Diagnostic& d : result.diagnostics) {
    if (d.severity == Diagnostic::Severity::error) errors.push_back({d.location.line, d.location.column, d.message});
  }
  EXPECT_EQ(errors.size(), 1u) << (errors.empty() ? "no error" : errors[0].text + " / ...");
  return errors.empty() ? Found{0, 0, ""} : errors[0];
}

std::vector<std::string> warnings(const std::string& yaml) {
  const LoadResult result = load(yaml);
  EXPECT_TRUE(result.policy.has_value());
  std::vector<std::string> found;
  for (const Diagnostic& d : result.diagnostics) {
    if (d.severity == Diagnostic::Severity::warning) found.push_back(d.message);
  }
  return found;
}

TEST(PolicyLoader, EveryExamplePolicyLoadsWithoutErrorsOrWarnings) {
  const std::filesystem::path examples = std::filesystem::path(PORTCULLIS_SOURCE_DIR) / "rules" / "examples";
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(examples)) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    const LoadResult result = load_policy_file(entry.path().string());
    EXPECT_TRUE(result.policy.has_value()) << entry.path();
    for (const Diagnostic& d : result.diagnostics) ADD_FAILURE() << format_diagnostic(entry.path().string(), d);
  }
  EXPECT_GE(count, 3u);
}

TEST(PolicyLoader, FullPolicyFieldsAreRead) {
  const LoadResult result = load(R"(version: 1
defaults: {action: allow, on_deny: drop, sni_ip_binding: "off", ech: deny, quic_unknown_version: allow, l7_timeout_ms: 250}
dns: {resolvers: [198.18.0.53, "2001:db8::53"], filter_queries: false, min_ttl: 5, max_ttl: 60}
add_domains: [registry.npmjs.org]
rules:
  - {name: web, dst: [example.com, 192.0.2.0/24], proto: tls, ports: [443, "8443-8444"], action: deny}
groups:
  - name: g
    sources: [10.0.0.0/24]
    rules: [{dst: pool.ntp.org, proto: udp, ports: [123]}]
)");
  ASSERT_TRUE(result.policy.has_value());
  const Policy& p = *result.policy;
  EXPECT_EQ(p.defaults.action, Action::allow);
  EXPECT_EQ(p.defaults.on_deny, OnDeny::drop);
  EXPECT_EQ(p.defaults.sni_ip_binding, SniIpBinding::off);
  EXPECT_EQ(p.defaults.ech, EchMode::deny);
  EXPECT_EQ(p.defaults.quic_unknown_version, Action::allow);
  EXPECT_EQ(p.defaults.l7_timeout_ms, 250u);
  ASSERT_EQ(p.dns.resolvers.size(), 2u);
  EXPECT_EQ(p.dns.resolvers[1].to_string(), "2001:db8::53");
  EXPECT_FALSE(p.dns.filter_queries);
  EXPECT_EQ(p.dns.min_ttl, 5u);
  EXPECT_EQ(p.dns.max_ttl, 60u);
  ASSERT_EQ(p.rules.size(), 3u);
  EXPECT_EQ(p.rules[0].name, "add_domains[0]");
  EXPECT_EQ(p.rules[0].proto, RuleProto::https);
  EXPECT_EQ(p.rules[0].ports, (std::vector<PortRange>{{443, 443}}));
  EXPECT_EQ(p.rules[1].name, "web");
  EXPECT_EQ(p.rules[1].action, Action::deny);
  EXPECT_EQ(p.rules[1].destinations.size(), 2u);
  EXPECT_EQ(p.rules[1].ports, (std::vector<PortRange>{{443, 443}, {8443, 8444}}));
  EXPECT_EQ(p.rules[2].name, "groups[g].rules[0]");
  EXPECT_EQ(p.rules[2].group, std::optional<size_t>(0));
  EXPECT_EQ(p.rules[2].location.line, 10);
  EXPECT_EQ(p.rules[2].location.column, 13);
}

TEST(PolicyLoader, DefaultsApplyWhenSectionsAreMissing) {
  const LoadResult result = load("version: 1\nrules:\n  - {dst: example.com, proto: ssh}\n  - {dst: 10.0.0.0/8}\n");
  ASSERT_TRUE(result.policy.has_value());
  EXPECT_EQ(result.policy->defaults.action, Action::deny);
  EXPECT_EQ(result.policy->defaults.on_deny, OnDeny::reject);
  EXPECT_EQ(result.policy->defaults.sni_ip_binding, SniIpBinding::dns);
  EXPECT_EQ(result.policy->defaults.l7_timeout_ms, 1000u);
  EXPECT_EQ(result.policy->rules[0].ports, (std::vector<PortRange>{{22, 22}}));
  EXPECT_EQ(result.policy->rules[0].action, Action::allow);
  EXPECT_EQ(result.policy->rules[1].proto, RuleProto::any);
  EXPECT_TRUE(result.policy->rules[1].ports.empty());
}

TEST(PolicyLoader, InvalidYamlReportsItsLocation) {
  const Found e = only_error("version: 1\nrules:\n  - {dst: a.com\n");
  EXPECT_EQ(e.line, 4);
  EXPECT_NE(e.text.find("invalid YAML"), std::string::npos) << e.text;
}

TEST(PolicyLoader, EmptyOrVersionlessPoliciesAreRejected) {
  EXPECT_NE(only_error("").text.find("empty"), std::string::npos);
  EXPECT_NE(only_error("rules: []\n").text.find("missing 'version: 1'"), std::string::npos);
  const Found e = only_error("version: 2\n");
  EXPECT_EQ(e.line, 1);
  EXPECT_EQ(e.column, 10);
  EXPECT_NE(e.text.find("unsupported policy version '2'"), std::string::npos);
}

TEST(PolicyLoader, UnknownKeysAreReportedAtTheKey) {
  Found e = only_error("version: 1\nrulez: []\n");
  EXPECT_EQ(e.line, 2);
  EXPECT_EQ(e.column, 1);
  EXPECT_NE(e.text.find("unknown key 'rulez'"), std::string::npos);
  e = only_error("version: 1\nrules:\n  - dst: a.com\n    port: [80]\n");
  EXPECT_EQ(e.line, 4);
  EXPECT_EQ(e.column, 5);
  EXPECT_NE(e.text.find("unknown key 'port' in a rule"), std::string::npos);
  e = only_error("version: 1\ndefaults: {action: deny, timeout: 3}\n");
  EXPECT_NE(e.text.find("unknown key 'timeout' in defaults"), std::string::npos);
}

TEST(PolicyLoader, DuplicateKeysAreRejected) {
  const Found e = only_error("version: 1\nrules:\n  - dst: a.com\n    dst: b.com\n");
  EXPECT_EQ(e.line, 4);
  EXPECT_NE(e.text.find("appears twice"), std::string::npos);
}

TEST(PolicyLoader, WrongTypesAreRejected) {
  EXPECT_NE(only_error("version: 1\nrules: {dst: a.com}\n").text.find("must be a list of rules"), std::string::npos);
  EXPECT_NE(only_error("version: 1\ndefaults: [deny]\n").text.find("defaults must be a mapping"), std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: {a: b}}\n")
                .text.find("dst must be a name, an address or a list of them"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\ndns: {filter_queries: maybe}\n").text.find("true or false"), std::string::npos);
  EXPECT_NE(only_error("version: 1\ndefaults: {l7_timeout_ms: soon}\n").text.find("whole number"), std::string::npos);
  EXPECT_NE(only_error("version: 1\ndefaults: {l7_timeout_ms: 0}\n").text.find("from 1 to 60000"), std::string::npos);
}

TEST(PolicyLoader, BadEnumValuesListTheChoices) {
  Found e = only_error("version: 1\nrules:\n  - {dst: a.com, proto: smtp}\n");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.column, 25);
  EXPECT_NE(e.text.find("unknown proto 'smtp'"), std::string::npos);
  e = only_error("version: 1\nrules:\n  - {dst: a.com, action: permit}\n");
  EXPECT_NE(e.text.find("allow, deny"), std::string::npos);
  e = only_error("version: 1\ndefaults: {on_deny: ignore}\n");
  EXPECT_NE(e.text.find("reject, drop"), std::string::npos);
}

TEST(PolicyLoader, BadAddressesAndPrefixesAreRejected) {
  Found e = only_error("version: 1\nrules:\n  - {dst: 10.0.0.1/8}\n");
  EXPECT_EQ(e.column, 11);
  EXPECT_NE(e.text.find("host bits set; did you mean 10.0.0.0/8"), std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: 10.0.0.0/33}\n").text.find("prefix length"), std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: \"2001:db8::/129\"}\n").text.find("prefix length"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: \"2001:db8:::1\"}\n").text.find("not an IPv4 or IPv6"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: 300.1.1.1/32}\n").text.find("not an IPv4 or IPv6"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\ndns: {resolvers: [resolver.lan]}\n").text.find("resolver 'resolver.lan'"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\ngroups:\n  - {name: g, sources: [10.0.0.0/40]}\n").text.find("bad source"),
            std::string::npos);
}

TEST(PolicyLoader, IPv4MappedPrefixesBecomeIPv4) {
  const LoadResult result = load("version: 1\nrules:\n  - {dst: \"::ffff:192.0.2.0/120\"}\n");
  ASSERT_TRUE(result.policy.has_value());
  EXPECT_EQ(destination_to_string(result.policy->rules[0].destinations[0]), "192.0.2.0/24");
}

TEST(PolicyLoader, InvalidNamesAreRejectedWithTheReason) {
  const std::string label64(64, 'a');
  const std::string long_name = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                                std::string(63, 'd');  // 255 octets
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"foo..com", "empty label"},
      {label64 + ".com", "longer than 63"},
      {long_name, "longer than 253"},
      {"-foo.com", "starts or ends with '-'"},
      {"foo-.com", "starts or ends with '-'"},
      {"foo!.com", "character '!'"},
      {"foo bar.com", "character ' '"},
      {"*.exa*mple.com", "whole first label"},
      {"a.*.com", "whole first label"},
  };
  for (const auto& [name, reason] : cases) {
    const Found e = only_error("version: 1\nrules:\n  - dst: \"" + name + "\"\n");
    EXPECT_EQ(e.line, 3) << name;
    EXPECT_EQ(e.column, 10) << name;
    EXPECT_NE(e.text.find(reason), std::string::npos) << name << ": " << e.text;
  }
}

TEST(PolicyLoader, NamesAreNormalizedToLowerCasePunycodeWithoutTrailingDot) {
  const LoadResult result = load(
      "version: 1\nrules:\n  - {dst: WWW.Example.COM.}\n  - {dst: \"*.Bücher.example\"}\n  - {dst: \".ÉCOLE.fr\"}\n");
  ASSERT_TRUE(result.policy.has_value());
  EXPECT_EQ(destination_to_string(result.policy->rules[0].destinations[0]), "www.example.com");
  EXPECT_EQ(destination_to_string(result.policy->rules[1].destinations[0]), "*.xn--bcher-kva.example");
  EXPECT_EQ(destination_to_string(result.policy->rules[2].destinations[0]), ".xn--cole-9oa.fr");
}

TEST(PolicyLoader, PortsOutsideTheValidRangeOrReversedAreRejected) {
  const LoadResult result =
      load("version: 1\nrules:\n  - {dst: a.com, proto: tcp, ports: [0, 65536, \"20-10\", \"x\", 80]}\n");
  ASSERT_FALSE(result.policy.has_value());
  ASSERT_EQ(result.diagnostics.size(), 4u);
  EXPECT_EQ(result.diagnostics[0].location.column, 38);
  EXPECT_NE(result.diagnostics[0].message.find("'0' is not a port"), std::string::npos);
  EXPECT_NE(result.diagnostics[1].message.find("'65536' is not a port"), std::string::npos);
  EXPECT_NE(result.diagnostics[2].message.find("reversed"), std::string::npos);
  EXPECT_NE(result.diagnostics[3].message.find("'x' is not a port"), std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: a.com, proto: tcp, ports: []}\n").text.find("ports is empty"),
            std::string::npos);
}

TEST(PolicyLoader, PortsAndIcmpTypesOnlyWhereTheProtocolHasThem) {
  EXPECT_NE(
      only_error("version: 1\nrules:\n  - {dst: a.com, proto: icmp, ports: [80]}\n").text.find("icmp has no ports"),
      std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: a.com, proto: any, ports: [80]}\n").text.find("any has no ports"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: a.com, proto: tcp, ports: [1], icmp_types: [echo-request]}\n")
                .text.find("only apply to proto icmp"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: a.com, proto: icmp, icmp_types: [ping]}\n")
                .text.find("unknown ICMP type 'ping'"),
            std::string::npos);
}

TEST(PolicyLoader, TcpAndUdpRulesNeedPorts) {
  Found e = only_error("version: 1\nrules:\n  - {dst: a.com, proto: tcp}\n");
  EXPECT_EQ(e.column, 25);
  EXPECT_NE(e.text.find("proto tcp needs ports"), std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: a.com, proto: udp}\n").text.find("proto udp needs ports"),
            std::string::npos);
}

TEST(PolicyLoader, DuplicateRuleAndGroupNamesAreRejected) {
  Found e = only_error(
      "version: 1\nrules:\n  - {name: web, dst: a.com}\ngroups:\n  - name: g\n    sources: [10.0.0.0/8]\n"
      "    rules:\n      - {name: web, dst: b.com}\n");
  EXPECT_EQ(e.line, 8);
  EXPECT_NE(e.text.find("duplicate rule name 'web' (first used at line 3)"), std::string::npos);
  e = only_error("version: 1\ngroups:\n  - {name: g, sources: [10.0.0.0/16]}\n  - {name: g, sources: [10.1.0.0/16]}\n");
  EXPECT_EQ(e.line, 4);
  EXPECT_NE(e.text.find("duplicate group name 'g'"), std::string::npos);
}

TEST(PolicyLoader, OverlappingGroupSourcesAreRejected) {
  Found e = only_error(
      "version: 1\ngroups:\n  - {name: a, sources: [10.0.0.0/8]}\n  - {name: b, sources: [\"fd00::/8\", "
      "10.9.0.0/16]}\n");
  EXPECT_EQ(e.line, 4);
  EXPECT_EQ(e.column, 37);
  EXPECT_NE(e.text.find("overlaps 10.0.0.0/8 of group 'a'"), std::string::npos);
  e = only_error("version: 1\ngroups:\n  - {name: a, sources: [\"fd00::/16\", \"fd01::/16\", \"fd01:1::/32\"]}\n");
  EXPECT_NE(e.text.find("same group"), std::string::npos);
}

TEST(PolicyLoader, DnsSettingsAreChecked) {
  EXPECT_NE(only_error("version: 1\ndns: {min_ttl: 100, max_ttl: 10}\n").text.find("greater than dns.max_ttl"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\nrules:\n  - {dst: dns.example, proto: dns}\n").text.find("by address"),
            std::string::npos);
  EXPECT_NE(only_error("version: 1\nadd_domains: [10.0.0.1]\n").text.find("add_domains takes names"),
            std::string::npos);
}

TEST(PolicyLoader, EveryErrorIsReportedNotJustTheFirst) {
  const LoadResult result = load(R"(version: 1
defaults: {action: maybe}
rules:
  - {dst: "bad..name"}
  - {dst: 10.0.0.0/99}
  - {proto: https}
groups:
  - {name: g}
)");
  ASSERT_FALSE(result.policy.has_value());
  std::vector<int> lines;
  for (const Diagnostic& d : result.diagnostics) lines.push_back(d.location.line);
  EXPECT_EQ(lines, (std::vector<int>{2, 4, 5, 6, 8}));
}

TEST(PolicyLoader, AllowShadowedByDenyIsAWarning) {
  const std::vector<std::string> found = warnings(R"(version: 1
rules:
  - {name: api, dst: api.example.com, proto: https}
  - {name: block, dst: .example.com, proto: any, action: deny}
)");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].find("rule 'api' never allows anything: deny rule 'block' (line 4)"), std::string::npos)
      << found[0];
}

TEST(PolicyLoader, RedundantRulesAreWarnings) {
  const std::vector<std::string> found = warnings(R"(version: 1
rules:
  - {name: wide, dst: "**.example.com", proto: https}
  - {name: narrow, dst: "www.example.com", proto: tls}
  - {name: same, dst: "**.example.com", proto: https}
  - {name: apex, dst: example.com, proto: https}
)");
  ASSERT_EQ(found.size(), 2u);
  EXPECT_NE(found[0].find("rule 'narrow' is redundant: rule 'wide' (line 3)"), std::string::npos) << found[0];
  EXPECT_NE(found[1].find("rule 'same' is redundant"), std::string::npos) << found[1];
}

TEST(PolicyLoader, RulesThatOnlyOverlapAreNotWarnedAbout) {
  EXPECT_TRUE(warnings(R"(version: 1
rules:
  - {name: a, dst: "*.example.com", proto: https}
  - {name: b, dst: "a.b.example.com", proto: https}
  - {name: c, dst: "10.0.0.0/8", proto: tcp, ports: ["1000-2000"]}
  - {name: d, dst: "10.1.0.0/16", proto: tcp, ports: ["1500-2500"], action: deny}
  - {name: e, dst: "example.com", proto: quic}
groups:
  - name: g
    sources: [10.9.0.0/16]
    rules: [{name: f, dst: "**.example.com", proto: https, action: deny}]
)")
                  .empty());
}

TEST(PolicyLoader, GroupDenyDoesNotShadowATopLevelAllow) {
  // The group's deny covers only the group's sources; the top-level allow still decides for everyone else.
  EXPECT_TRUE(warnings(R"(version: 1
rules:
  - {name: a, dst: "www.example.com", proto: https}
groups:
  - name: g
    sources: [10.9.0.0/16]
    rules: [{name: f, dst: "**.example.com", proto: https, action: deny}]
)")
                  .empty());
}

TEST(PolicyLoader, Port53OutsideDnsRulesIsAWarning) {
  const std::vector<std::string> found =
      warnings("version: 1\nrules:\n  - {dst: 8.8.8.8, proto: udp, ports: [\"1-100\"]}\n");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].find("port 53"), std::string::npos);
}

}  // namespace
}  // namespace portcullis::policy
