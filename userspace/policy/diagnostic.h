// Errors and warnings about a policy file, each tied to a place in it.
#pragma once

#include <string>
#include <vector>

#include "policy/policy.h"

namespace portcullis::policy {

struct Diagnostic {
  enum class Severity { error, warning };
  Severity severity = Severity::error;
  SourceLocation location;
  std::string message;
};

// "FILE:LINE:COL: error: MESSAGE", the form compilers use, so editors can jump to it.
std::string format_diagnostic(const std::string& file, const Diagnostic& diagnostic);

bool has_errors(const std::vector<Diagnostic>& diagnostics);

}  // namespace portcullis::policy
