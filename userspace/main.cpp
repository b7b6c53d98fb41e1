// portcullis: a packet-level egress firewall. One binary, one subcommand per job.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <map>

#include "cli/commands.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"portcullis: egress firewall by name and address, for every protocol"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "portcullis " PORTCULLIS_VERSION);

  const std::map<std::string, portcullis::cli::Runner> runners = {
      {"check", portcullis::cli::add_check_command(app)},   {"explain", portcullis::cli::add_explain_command(app)},
      {"replay", portcullis::cli::add_replay_command(app)}, {"run", portcullis::cli::add_run_command(app)},
      {"flows", portcullis::cli::add_flows_command(app)},   {"stats", portcullis::cli::add_stats_command(app)},
      {"reload", portcullis::cli::add_reload_command(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  for (CLI::App* command : app.get_subcommands()) {
    return runners.at(command->get_name())();
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    // Errors caused by input are handled where they happen; reaching here is a bug, said plainly.
    (void)std::fprintf(stderr, "portcullis: internal error: %s\n", e.what());
  } catch (...) {
    (void)std::fprintf(stderr, "portcullis: internal error\n");
  }
  return 2;
}
