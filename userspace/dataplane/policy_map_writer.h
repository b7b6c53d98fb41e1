// Writes a compiled policy's tables (policy_tables.h) into the data plane's policy maps, first load and reload
// alike, in an order that never lets a packet see a half-written rule set:
//   1. the rule sets go to the half of the rule set array the previous generation does not use (ids are
//      translated: the other generation's packets keep reading theirs untouched);
//   2. destination and source prefixes, overwritten in place (each update is atomic per key);
//   3. the scopes' name rule sets, then the config, whose generation tells flows which policy decided them;
//   4. prefixes the new policy does not have are deleted last.
#pragma once

#include <cstdint>
#include <string>

#include "dataplane/bpf_objects.h"
#include "dataplane/policy_tables.h"

namespace portcullis::dataplane {

class PolicyMapWriter {
 public:
  PolicyMapWriter(PolicyMapFds maps, uint32_t rule_set_capacity);

  // The generation in the config map: 0 when no policy was ever written (fresh maps), else the one a
  // previous write (perhaps a previous daemon's) left.
  uint32_t current_generation() const;

  // The number of rule set array entries a policy with `rule_sets` sets needs (two generations' worth).
  static uint32_t capacity_needed(size_t rule_sets);

  // Writes `tables`; tables.config.generation must differ from current_generation(). Throws
  // std::runtime_error naming the map and the error when the kernel refuses an update (a full map).
  void write(const PolicyTables& tables);

 private:
  uint32_t translate(uint32_t rule_set, uint32_t generation) const;

  PolicyMapFds maps_;
  uint32_t rule_set_capacity_;
};

}  // namespace portcullis::dataplane
