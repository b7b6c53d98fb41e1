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
// `flows`, `stats` and `reload`: requests to a running daemon's control socket.
Runner add_flows_command(CLI::App& app);
Runner add_stats_command(CLI::App& app);
Runner add_reload_command(CLI::App& app);

// Where `run --control` is expected when the client commands are not told (the systemd unit's).
inline constexpr const char* kDefaultControlSocket = "/run/portcullis/control.sock";

}  // namespace portcullis::cli
