// What a reloaded policy says of a flow that is already open. A flow the daemon decided from what it showed
// is decided again from that (its name, or the names DNS had bound its destination to); a flow the data plane
// decided on addresses and ports is classified again by the new policy's tables, as the data plane would
// classify it new. A flow the new policy would want to see the start of (a name it never showed) is judged by
// the names DNS binds its destination to now. Pure: the caller cuts what is no longer allowed.
#pragma once

#include <cstdint>

#include "conntrack/flow_table.h"
#include "dataplane/table_classifier.h"
#include "policy/compiled_policy.h"
#include "punt/dns_bindings.h"

namespace portcullis::conntrack {

struct Reevaluation {
  bool allow = false;
  uint32_t rule_id = PC_RULE_NONE;  // the rule of the new policy that decides the flow
  uint32_t reason = PC_DROP_NONE;   // the new policy's reason for a deny
  // A flow adopted after a restart, whose start the daemon never read: the new policy would need its name to
  // allow it, and that cannot be known any more. It is left allowed rather than cut on a guess.
  bool unverifiable = false;
};

Reevaluation reevaluate(const TrackedFlow& flow, const policy::CompiledPolicy& policy, policy::Mode mode,
                        const dataplane::TableClassifier& tables, const punt::DnsBindings& bindings, uint64_t now_ns);

}  // namespace portcullis::conntrack
