#include "conntrack/revocation.h"

#include <algorithm>
#include <string>
#include <vector>

namespace portcullis::conntrack {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kIcmp = 1;

punt::PendingFlowFacts facts_of(const TrackedFlow& flow) {
  punt::PendingFlowFacts facts;
  facts.src = flow.src();
  facts.dst = flow.dst();
  switch (flow.event.proto) {
    case kTcp:
      facts.proto = policy::L4Proto::tcp;
      facts.dport = flow.event.dport;
      break;
    case kUdp:
      facts.proto = policy::L4Proto::udp;
      facts.dport = flow.event.dport;
      break;
    case kIcmp:
      facts.proto = policy::L4Proto::icmp;
      facts.icmp_type = static_cast<uint8_t>(flow.event.dport);
      break;
    default:
      facts.proto = policy::L4Proto::icmpv6;
      facts.icmp_type = static_cast<uint8_t>(flow.event.dport);
      break;
  }
  return facts;
}

uint8_t l4_bit_of(const TrackedFlow& flow) {
  switch (flow.event.proto) {
    case kTcp:
      return PC_L4_TCP;
    case kUdp:
      return PC_L4_UDP;
    case kIcmp:
      return PC_L4_ICMP;
    default:
      return PC_L4_ICMPV6;
  }
}

uint32_t rule_id_of(const policy::CompiledPolicy& policy, const policy::Rule* rule) {
  return rule != nullptr ? static_cast<uint32_t>(rule - policy.rules().data()) : PC_RULE_NONE;
}

Reevaluation from(const policy::CompiledPolicy& policy, const punt::PendingVerdict& verdict) {
  return Reevaluation{verdict.allow, rule_id_of(policy, verdict.rule), verdict.allow ? PC_DROP_NONE : verdict.reason,
                      false};
}

}  // namespace

Reevaluation reevaluate(const TrackedFlow& flow, const policy::CompiledPolicy& policy, policy::Mode mode,
                        const dataplane::TableClassifier& tables, const punt::DnsBindings& bindings, uint64_t now_ns) {
  const punt::PendingFlowFacts facts = facts_of(flow);
  const std::optional<size_t> group = policy.group_of(facts.src);
  if (flow.identity) {
    std::vector<std::string> names = bindings.names_of(group, facts.dst, now_ns);
    for (const std::string& name : flow.bound_names) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    if (flow.identity->name) {
      // Its address was bound to the name when it was decided: the binding's expiry does not end the flow. A
      // deny of its protocol to a name its address is bound to holds all the same.
      const punt::PendingVerdict verdict = punt::decide_pending_flow(policy, mode, facts, *flow.identity, true);
      if (!verdict.allow) return from(policy, verdict);
      return from(policy, punt::denied_by_bound_names(policy, mode, facts, *flow.identity, names).value_or(verdict));
    }
    return from(policy, punt::decide_by_bound_names(policy, mode, facts, *flow.identity, names));
  }
  const pc_decision decision =
      tables.classify(dataplane::NewFlow{facts.src, facts.dst, l4_bit_of(flow), flow.event.dport});
  if (decision.verdict == PC_VERDICT_ALLOW || decision.verdict == PC_VERDICT_INSPECT) {
    // Allowed by address, unless a deny names a name its address is bound to (what pc_bound_names holds).
    punt::FlowIdentity unknown;
    unknown.state = punt::FlowIdentity::State::unknown;
    if (const std::optional<punt::PendingVerdict> denied =
            punt::denied_by_bound_names(policy, mode, facts, unknown, bindings.names_of(group, facts.dst, now_ns))) {
      return from(policy, *denied);
    }
    return Reevaluation{true, decision.rule_id, PC_DROP_NONE, false};
  }
  if (decision.verdict == PC_VERDICT_DENY) return Reevaluation{false, decision.rule_id, decision.reason, false};
  // The new policy would read the flow's start, which went by before the daemon was asked.
  punt::FlowIdentity unknown;
  unknown.state = punt::FlowIdentity::State::unknown;
  Reevaluation result = from(policy, punt::decide_with_bindings(policy, mode, facts, unknown, bindings, now_ns));
  if (!result.allow && flow.adopted) {
    result.allow = true;
    result.unverifiable = true;
  }
  return result;
}

}  // namespace portcullis::conntrack
