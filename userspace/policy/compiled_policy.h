// The policy in the form every decision is taken from: immutable, indexed by destination name and address.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/domain_matcher.h"
#include "policy/policy.h"
#include "policy/prefix_matcher.h"

namespace portcullis::policy {

enum class Mode : uint8_t {
  host,     // the policy guards the host it runs on; groups apply to sources inside them
  gateway,  // the policy guards sandboxes routed through this host; a source in no group is spoofed
};

// What is known of a flow when it is decided.
struct FlowQuery {
  IpAddress src;
  IpAddress dst;
  L4Proto proto = L4Proto::tcp;
  uint16_t dport = 0;               // tcp and udp
  uint8_t icmp_type = 0;            // icmp and icmpv6
  L7Proto l7 = L7Proto::none;       // what the flow showed at its start
  std::optional<std::string> name;  // normalized SNI or Host the flow showed, or a name DNS bound dst to
  // Whether DNS answers bind dst to `name`. Rules on other protocols than tls/quic/http/https match a
  // name only through such a binding, and those do too when sni_ip_binding is dns. `explain` assumes it.
  bool name_bound = true;
};

enum class DecisionReason : uint8_t {
  rule,                 // the deciding rule matched
  default_action,       // no rule matched: defaults.action
  loopback,             // loopback is always allowed
  dns_not_resolver,     // DNS (port 53) may go only to the policy's resolvers
  source_not_in_group,  // gateway mode: the source belongs to no group
};
std::string_view to_string(DecisionReason reason);

struct Decision {
  Action verdict = Action::deny;
  DecisionReason reason = DecisionReason::default_action;
  const Rule* rule = nullptr;   // the deciding rule; null when no rule decided
  std::optional<size_t> group;  // the source's group
  // The deciding rule matched through the flow's name and holds only while the destination address is
  // bound to that name by a DNS answer.
  bool needs_dns_binding = false;
  std::vector<const Rule*> matched;  // every rule that matched, in policy order
};

class CompiledPolicy {
 public:
  // Name of the rules synthesized from dns.resolvers.
  static constexpr std::string_view kResolverRuleName = "dns.resolvers";

  explicit CompiledPolicy(Policy policy);

  Decision evaluate(const FlowQuery& flow, Mode mode) const;
  std::optional<size_t> group_of(const IpAddress& src) const;
  // Whether some allow rule of the top level or of `group` has a destination name matching `name` (normalized):
  // a DNS query for any other name can lead to nothing the policy allows (dns.filter_queries).
  bool name_could_be_allowed(std::string_view name, std::optional<size_t> group) const;
  // The deny rules of the top level or of `group` that match `name` (normalized) only through DNS bindings:
  // rules of other protocols than tls, quic, http and https with a destination name matching it.
  std::vector<const Rule*> denies_through_bindings(std::string_view name, std::optional<size_t> group) const;

  const Policy& policy() const { return policy_; }
  const std::vector<Rule>& rules() const { return policy_.rules; }

 private:
  struct Match {
    uint32_t rule;
    bool via_name;
  };
  bool rule_accepts(const Rule& rule, const FlowQuery& flow) const;
  void collect_matches(const FlowQuery& flow, std::optional<size_t> group, std::vector<Match>& matches) const;

  Policy policy_;
  DomainMatcher names_;
  PrefixMatcher addresses_;
  PrefixMatcher group_sources_;
};

std::shared_ptr<const CompiledPolicy> compile_policy(Policy policy);

}  // namespace portcullis::policy
