// Decides new flows from PolicyTables the way the BPF classifier does from its maps: the same
// longest-prefix lookups per scope, then the shared C code of include/portcullis/classify.h.
// Used offline (replay) and to prove the tables say what the policy says.
#pragma once

#include <vector>

#include "dataplane/policy_tables.h"
#include "policy/prefix_matcher.h"
#include "portcullis/classify.h"

namespace portcullis::dataplane {

struct NewFlow {
  policy::IpAddress src;
  policy::IpAddress dst;
  uint8_t l4_bit = PC_L4_TCP;  // enum pc_l4_bit
  uint16_t port = 0;           // destination port, or ICMP type
};

class TableClassifier {
 public:
  explicit TableClassifier(PolicyTables tables);

  // The source's group scope, or PC_SCOPE_TOP_LEVEL when it is in no group.
  uint32_t scope_of_source(const policy::IpAddress& src) const;
  pc_decision classify(const NewFlow& flow) const;

  // The lookups the BPF programs make in their maps: the rule set of the longest prefix of `scope` holding
  // `dst` (null when none does), and the scope's name rule set.
  const pc_rule_set* destination_rules(uint32_t scope, const policy::IpAddress& dst) const;
  const pc_rule_set* name_rules(uint32_t scope) const;

  const PolicyTables& tables() const { return tables_; }

 private:
  PolicyTables tables_;
  policy::PrefixMatcher sources_;                    // value: scope
  std::vector<policy::PrefixMatcher> destinations_;  // per scope; value: rule set id
};

}  // namespace portcullis::dataplane
