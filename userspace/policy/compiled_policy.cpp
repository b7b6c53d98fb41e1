#include "policy/compiled_policy.h"

#include <algorithm>

namespace portcullis::policy {
namespace {

constexpr uint16_t kDnsPort = 53;

bool l4_accepts(RuleProto proto, L4Proto l4, L7Proto l7) {
  const bool tcp = l4 == L4Proto::tcp;
  const bool udp = l4 == L4Proto::udp;
  switch (proto) {
    case RuleProto::https:
      return (tcp && l7 == L7Proto::tls) || (udp && l7 == L7Proto::quic);
    case RuleProto::tls:
      return tcp && l7 == L7Proto::tls;
    case RuleProto::quic:
      return udp && l7 == L7Proto::quic;
    case RuleProto::http:
      return tcp && l7 == L7Proto::http;
    case RuleProto::ssh:
      return tcp && l7 == L7Proto::ssh;
    case RuleProto::ftp:
    case RuleProto::tcp:
      return tcp;
    case RuleProto::dns:
      return tcp || udp;
    case RuleProto::udp:
      return udp;
    case RuleProto::icmp:
      return l4 == L4Proto::icmp || l4 == L4Proto::icmpv6;
    case RuleProto::any:
      return true;
  }
  return false;
}

}  // namespace

std::string_view to_string(DecisionReason reason) {
  switch (reason) {
    case DecisionReason::rule:
      return "rule";
    case DecisionReason::default_action:
      return "default";
    case DecisionReason::loopback:
      return "loopback";
    case DecisionReason::dns_not_resolver:
      return "dns-not-resolver";
    case DecisionReason::source_not_in_group:
      return "source-not-in-group";
  }
  return "?";
}

CompiledPolicy::CompiledPolicy(Policy policy) : policy_(std::move(policy)) {
  if (!policy_.dns.resolvers.empty()) {
    Rule resolvers;
    resolvers.name = std::string(kResolverRuleName);
    resolvers.proto = RuleProto::dns;
    resolvers.ports = {{kDnsPort, kDnsPort}};
    resolvers.location = policy_.dns.resolvers_location;
    for (const IpAddress& resolver : policy_.dns.resolvers) {
      resolvers.destinations.emplace_back(Cidr{resolver, static_cast<uint8_t>(resolver.width_bits())});
    }
    policy_.rules.insert(policy_.rules.begin(), std::move(resolvers));
  }
  for (uint32_t i = 0; i < policy_.rules.size(); ++i) {
    for (const Destination& dst : policy_.rules[i].destinations) {
      if (const auto* pattern = std::get_if<NamePattern>(&dst)) {
        names_.add(*pattern, i);
      } else {
        addresses_.add(std::get<Cidr>(dst), i);
      }
    }
  }
  for (uint32_t g = 0; g < policy_.groups.size(); ++g) {
    for (const Cidr& source : policy_.groups[g].sources) group_sources_.add(source, g);
  }
}

std::optional<size_t> CompiledPolicy::group_of(const IpAddress& src) const {
  // The loader rejects overlapping sources, so at most one group contains any address.
  std::optional<size_t> group;
  group_sources_.match(src, [&](uint32_t g) { group = g; });
  return group;
}

bool CompiledPolicy::name_could_be_allowed(std::string_view name, std::optional<size_t> group) const {
  bool allowed = false;
  names_.match(name, [&](uint32_t index) {
    const Rule& rule = policy_.rules[index];
    if (rule.action == Action::allow && (!rule.group || rule.group == group)) allowed = true;
  });
  return allowed;
}

std::vector<const Rule*> CompiledPolicy::denies_through_bindings(std::string_view name,
                                                                 std::optional<size_t> group) const {
  std::vector<const Rule*> denies;
  names_.match(name, [&](uint32_t index) {
    const Rule& rule = policy_.rules[index];
    if (rule.action == Action::deny && !proto_matches_shown_name(rule.proto) && (!rule.group || rule.group == group)) {
      denies.push_back(&rule);
    }
  });
  return denies;
}

bool CompiledPolicy::rule_accepts(const Rule& rule, const FlowQuery& flow) const {
  if (!l4_accepts(rule.proto, flow.proto, flow.l7)) return false;
  if (flow.proto == L4Proto::tcp || flow.proto == L4Proto::udp) {
    return rule.ports.empty() || std::any_of(rule.ports.begin(), rule.ports.end(),
                                             [&](const PortRange& r) { return r.contains(flow.dport); });
  }
  if (rule.proto != RuleProto::icmp) return true;
  return std::any_of(rule.icmp_types.begin(), rule.icmp_types.end(), [&](const IcmpType& type) {
    const int16_t number = flow.proto == L4Proto::icmpv6 ? type.v6_type : type.v4_type;
    return number == flow.icmp_type;
  });
}

void CompiledPolicy::collect_matches(const FlowQuery& flow, std::optional<size_t> group,
                                     std::vector<Match>& matches) const {
  const auto consider = [&](uint32_t index, bool via_name) {
    const Rule& rule = policy_.rules[index];
    if (rule.group && rule.group != group) return;
    if (!rule_accepts(rule, flow)) return;
    matches.push_back({index, via_name});
  };
  addresses_.match(flow.dst, [&](uint32_t index) { consider(index, false); });
  if (flow.name) {
    const bool binding_required = policy_.defaults.sni_ip_binding == SniIpBinding::dns;
    names_.match(*flow.name, [&](uint32_t index) {
      const bool shown = proto_matches_shown_name(policy_.rules[index].proto);
      if (flow.name_bound || (shown && !binding_required)) consider(index, true);
    });
  }

  // A rule listing both an address and a name may match twice; the address match needs no binding.
  std::sort(matches.begin(), matches.end(), [](const Match& a, const Match& b) {
    return a.rule != b.rule ? a.rule < b.rule : a.via_name < b.via_name;
  });
  matches.erase(
      std::unique(matches.begin(), matches.end(), [](const Match& a, const Match& b) { return a.rule == b.rule; }),
      matches.end());
}

Decision CompiledPolicy::evaluate(const FlowQuery& flow, Mode mode) const {
  Decision decision;
  if (flow.dst.is_loopback()) {
    decision.verdict = Action::allow;
    decision.reason = DecisionReason::loopback;
    return decision;
  }
  decision.group = group_of(flow.src);
  if (mode == Mode::gateway && !decision.group) {
    decision.reason = DecisionReason::source_not_in_group;
    return decision;
  }

  std::vector<Match> matches;
  collect_matches(flow, decision.group, matches);
  // DNS may go only to resolvers: on port 53 only dns rules can allow; deny rules still apply.
  const bool dns_port = (flow.proto == L4Proto::tcp || flow.proto == L4Proto::udp) && flow.dport == kDnsPort;
  bool allow_blocked_by_dns = false;
  const Match* deciding = nullptr;
  for (const Match& match : matches) {
    const Rule& rule = policy_.rules[match.rule];
    decision.matched.push_back(&rule);
    if (rule.action == Action::allow && dns_port && rule.proto != RuleProto::dns) {
      allow_blocked_by_dns = true;
      continue;
    }
    if (deciding == nullptr || (rule.action == Action::deny && policy_.rules[deciding->rule].action == Action::allow)) {
      deciding = &match;
    }
  }

  if (deciding == nullptr && dns_port && (allow_blocked_by_dns || policy_.defaults.action == Action::allow)) {
    decision.reason = DecisionReason::dns_not_resolver;
  } else if (deciding == nullptr) {
    decision.verdict = policy_.defaults.action;
    decision.reason = DecisionReason::default_action;
  } else {
    const Rule& rule = policy_.rules[deciding->rule];
    decision.verdict = rule.action;
    decision.reason = DecisionReason::rule;
    decision.rule = &rule;
    // SNI and Host are what the flow claims; other protocols match a name only through DNS bindings.
    decision.needs_dns_binding = deciding->via_name && (!proto_matches_shown_name(rule.proto) ||
                                                        policy_.defaults.sni_ip_binding == SniIpBinding::dns);
  }
  return decision;
}

std::shared_ptr<const CompiledPolicy> compile_policy(Policy policy) {
  return std::make_shared<const CompiledPolicy>(std::move(policy));
}

}  // namespace portcullis::policy
