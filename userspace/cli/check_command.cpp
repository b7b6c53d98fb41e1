#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "policy/policy_loader.h"

namespace portcullis::cli {

Runner add_check_command(CLI::App& app) {
  auto policy_path = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand("check", "Validate a policy: every error and warning with its location");
  command->add_option("POLICY", *policy_path, "policy file (YAML)")->required();

  return [policy_path]() {
    const policy::LoadResult result = policy::load_policy_file(*policy_path);
    size_t errors = 0;
    size_t warnings = 0;
    for (const policy::Diagnostic& diagnostic : result.diagnostics) {
      std::cerr << policy::format_diagnostic(*policy_path, diagnostic) << '\n';
      (diagnostic.severity == policy::Diagnostic::Severity::error ? errors : warnings)++;
    }
    if (!result.policy) {
      std::cerr << *policy_path << ": " << errors << " error(s), " << warnings << " warning(s)\n";
      return 1;
    }
    std::cout << *policy_path << ": ok: " << result.policy->rules.size() << " rule(s), " << result.policy->groups.size()
              << " group(s), " << warnings << " warning(s)\n";
    return 0;
  };
}

}  // namespace portcullis::cli
