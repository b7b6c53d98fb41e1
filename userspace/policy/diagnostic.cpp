#include "policy/diagnostic.h"

#include <algorithm>

namespace portcullis::policy {

std::string format_diagnostic(const std::string& file, const Diagnostic& diagnostic) {
  const char* severity = diagnostic.severity == Diagnostic::Severity::error ? "error" : "warning";
  if (diagnostic.location.line == 0) return file + ": " + severity + ": " + diagnostic.message;
  return file + ":" + std::to_string(diagnostic.location.line) + ":" + std::to_string(diagnostic.location.column) +
         ": " + severity + ": " + diagnostic.message;
}

bool has_errors(const std::vector<Diagnostic>& diagnostics) {
  return std::any_of(diagnostics.begin(), diagnostics.end(),
                     [](const Diagnostic& d) { return d.severity == Diagnostic::Severity::error; });
}

}  // namespace portcullis::policy
