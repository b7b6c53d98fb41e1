#include "policy/shadowing.h"

#include <algorithm>

#include "policy/domain_matcher.h"
#include "policy/prefix_matcher.h"

namespace portcullis::policy {
namespace {

using Kind = NamePattern::Kind;

bool pattern_covers(const NamePattern& outer, const NamePattern& inner) {
  const bool below_or_same = is_same_or_subdomain(inner.domain, outer.domain);
  const bool strictly_below = below_or_same && inner.domain.size() > outer.domain.size();
  switch (outer.kind) {
    case Kind::exact:
      return inner.kind == Kind::exact && inner.domain == outer.domain;
    case Kind::one_label:
      return (inner.kind == Kind::exact && parent_domain(inner.domain) == outer.domain) ||
             (inner.kind == Kind::one_label && inner.domain == outer.domain);
    case Kind::any_depth:
      return (inner.kind == Kind::exact || inner.kind == Kind::apex_and_below) ? strictly_below : below_or_same;
    case Kind::apex_and_below:
      return below_or_same;
  }
  return false;
}

bool destination_covers(const Destination& outer, const Destination& inner) {
  if (const auto* outer_pattern = std::get_if<NamePattern>(&outer)) {
    const auto* inner_pattern = std::get_if<NamePattern>(&inner);
    return inner_pattern != nullptr && pattern_covers(*outer_pattern, *inner_pattern);
  }
  const auto* inner_cidr = std::get_if<Cidr>(&inner);
  return inner_cidr != nullptr && std::get<Cidr>(outer).contains(*inner_cidr);
}

bool proto_covers(RuleProto outer, RuleProto inner) {
  // Port 53 is open only through dns rules, so no other protocol covers one.
  if (inner == RuleProto::dns) return outer == RuleProto::dns;
  return outer == inner || outer == RuleProto::any ||
         (outer == RuleProto::https && (inner == RuleProto::tls || inner == RuleProto::quic));
}

bool ports_cover(const std::vector<PortRange>& outer, const std::vector<PortRange>& inner) {
  if (outer.empty()) return true;
  if (inner.empty()) return false;
  return std::all_of(inner.begin(), inner.end(), [&](const PortRange& want) {
    // Walk the range through the outer ranges; they may abut ("1-10", "11-20").
    uint32_t next = want.lo;
    bool progressed = true;
    while (next <= want.hi && progressed) {
      progressed = false;
      for (const PortRange& have : outer) {
        if (have.contains(static_cast<uint16_t>(next))) {
          next = static_cast<uint32_t>(have.hi) + 1;
          progressed = true;
        }
      }
    }
    return next > want.hi;
  });
}

bool icmp_types_cover(const Rule& outer, const Rule& inner) {
  if (outer.proto != RuleProto::icmp) return true;
  return std::all_of(inner.icmp_types.begin(), inner.icmp_types.end(), [&](const IcmpType& want) {
    return std::any_of(outer.icmp_types.begin(), outer.icmp_types.end(),
                       [&](const IcmpType& have) { return have.name == want.name; });
  });
}

bool has_name_destination(const Rule& rule) {
  return std::any_of(rule.destinations.begin(), rule.destinations.end(),
                     [](const Destination& d) { return std::holds_alternative<NamePattern>(d); });
}

std::string where(const Rule& rule) {
  return "rule '" + rule.name + "' (line " + std::to_string(rule.location.line) + ")";
}

}  // namespace

bool rule_covers(const Rule& outer, const Rule& inner, SniIpBinding binding) {
  if (outer.group && outer.group != inner.group) return false;
  if (!proto_covers(outer.proto, inner.proto)) return false;
  // An L4 rule matches a name only through DNS bindings; with bindings off a name rule on SNI/Host also
  // matches flows to unbound addresses, which the L4 rule does not.
  if (binding == SniIpBinding::off && !proto_matches_shown_name(outer.proto) && proto_matches_shown_name(inner.proto) &&
      has_name_destination(inner)) {
    return false;
  }
  if (!ports_cover(outer.ports, inner.ports) || !icmp_types_cover(outer, inner)) return false;
  return std::all_of(inner.destinations.begin(), inner.destinations.end(), [&](const Destination& want) {
    return std::any_of(outer.destinations.begin(), outer.destinations.end(),
                       [&](const Destination& have) { return destination_covers(have, want); });
  });
}

std::vector<Diagnostic> find_shadowed_rules(const Policy& policy) {
  DomainMatcher names;
  PrefixMatcher prefixes;
  for (uint32_t i = 0; i < policy.rules.size(); ++i) {
    for (const Destination& dst : policy.rules[i].destinations) {
      if (const auto* pattern = std::get_if<NamePattern>(&dst)) {
        names.add(*pattern, i);
      } else {
        prefixes.add(std::get<Cidr>(dst), i);
      }
    }
  }

  const SniIpBinding binding = policy.defaults.sni_ip_binding;
  std::vector<Diagnostic> findings;
  std::vector<uint32_t> candidates;
  for (uint32_t i = 0; i < policy.rules.size(); ++i) {
    const Rule& rule = policy.rules[i];
    // A covering rule must cover the first destination, so it is among the rules indexed at or above it.
    candidates.clear();
    const Destination& first = rule.destinations.front();
    if (const auto* pattern = std::get_if<NamePattern>(&first)) {
      names.for_each_at_or_above(pattern->domain, [&](Kind, uint32_t j) { candidates.push_back(j); });
    } else {
      prefixes.for_each_containing(std::get<Cidr>(first), [&](uint32_t j) { candidates.push_back(j); });
    }
    std::sort(candidates.begin(), candidates.end());
    candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());

    for (uint32_t j : candidates) {
      if (j == i) continue;
      const Rule& other = policy.rules[j];
      if (!rule_covers(other, rule, binding)) continue;
      std::string message;
      if (other.action == Action::deny && rule.action == Action::allow) {
        message = "rule '" + rule.name + "' never allows anything: deny " + where(other) +
                  " matches every flow it matches, and deny wins";
      } else if (other.action == rule.action) {
        // Of two equivalent rules, only the later one is reported.
        if (j > i && rule_covers(rule, other, binding)) continue;
        message = "rule '" + rule.name + "' is redundant: " + where(other) + " already " +
                  (rule.action == Action::allow ? "allows" : "denies") + " every flow it matches";
      } else {
        continue;
      }
      findings.push_back({Diagnostic::Severity::warning, rule.location, std::move(message)});
      break;
    }
  }
  return findings;
}

}  // namespace portcullis::policy
