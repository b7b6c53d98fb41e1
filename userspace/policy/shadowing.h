// Finds rules that can never decide anything: allows that a deny always overrides, and rules another rule
// already covers.
#pragma once

#include <vector>

#include "policy/diagnostic.h"
#include "policy/policy.h"

namespace portcullis::policy {

// True when every flow `inner` matches is also matched by `outer`.
bool rule_covers(const Rule& outer, const Rule& inner, SniIpBinding binding);

// One warning per rule that another rule shadows (a deny covering an allow) or makes redundant.
std::vector<Diagnostic> find_shadowed_rules(const Policy& policy);

}  // namespace portcullis::policy
