// The compiled policy turned into the entries of the data plane's policy maps (include/portcullis/
// policy_maps.h). Pure: no kernel access, so it is unit-tested and shared by `run` and `replay`.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "policy/compiled_policy.h"
#include "portcullis/policy_maps.h"

namespace portcullis::dataplane {

struct PolicyTables {
  std::vector<pc_rule_set> rule_sets;                  // index = rule set id; 0 is the empty set
  std::vector<std::pair<pc_dst4_key, uint32_t>> dst4;  // -> rule set id
  std::vector<std::pair<pc_dst6_key, uint32_t>> dst6;
  std::vector<std::pair<pc_src4_key, uint32_t>> src4;  // -> scope
  std::vector<std::pair<pc_src6_key, uint32_t>> src6;
  std::vector<pc_scope> scopes;  // index = scope: 0 top level, g + 1 group g
  pc_policy_config config{};
  // Rule sets whose rules did not fit PC_RULE_SET_CAPACITY entries: the data plane leaves such flows to
  // the daemon. Counted so `run` can say so.
  uint32_t overflowing_rule_sets = 0;
};

PolicyTables build_policy_tables(const policy::CompiledPolicy& policy, policy::Mode mode, uint32_t generation);

// The layer-4 protocols (enum pc_l4_bit) a rule of `proto` covers.
uint8_t l4_mask_of(policy::RuleProto proto);

// The scope of group `group` (0-based), as the maps number them.
inline uint32_t group_scope(size_t group) {
  return static_cast<uint32_t>(group + 1);
}

}  // namespace portcullis::dataplane
