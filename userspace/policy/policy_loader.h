// Reads a YAML policy, validates every field and reports every problem with its line and column.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/diagnostic.h"
#include "policy/policy.h"

namespace portcullis::policy {

struct LoadResult {
  std::optional<Policy> policy;  // set only when there are no errors (warnings allowed)
  std::vector<Diagnostic> diagnostics;
};

// `file` names the source in diagnostics.
LoadResult load_policy(std::string_view yaml_text, const std::string& file);
LoadResult load_policy_file(const std::string& path);

}  // namespace portcullis::policy
