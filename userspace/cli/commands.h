// The subcommands of the `portcullis` binary. Each registers its options on the CLI11 app and returns the
// process exit status when run.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace portcullis::cli {

using Runner = std::function<int()>;

Runner add_check_command(CLI::App& app);
Runner add_explain_command(CLI::App& app);
Runner add_replay_command(CLI::App& app);
Runner add_run_command(CLI::App& app);

}  // namespace portcullis::cli
