// `portcullis flows|stats|reload`: one request to a running daemon's control socket (`run --control`), its
// answer printed. `reload` exits 0 only when the new policy is in force.
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "cli/flow_report.h"
#include "control/control_client.h"

namespace portcullis::cli {
namespace {

using Json = nlohmann::json;

// A reload compiles the policy and judges every open flow: it may take a while on a large table.
constexpr std::chrono::milliseconds kTimeout{30000};

struct ControlOptions {
  std::string socket = kDefaultControlSocket;
  bool json = false;
  std::string group;
};

void add_socket_option(CLI::App* command, ControlOptions& options) {
  command->add_option("--control", options.socket,
                      std::string("the daemon's control socket (default ") + kDefaultControlSocket + ")");
}

// Sends `request`; the answer, or nullopt after printing why there is none.
std::optional<std::string> ask(const std::string& command, const ControlOptions& options, const Json& request) {
  try {
    return control::control_request(options.socket, request.dump(), kTimeout);
  } catch (const std::exception& e) {
    std::cerr << "portcullis " << command << ": " << e.what() << '\n';
    return std::nullopt;
  }
}

int flows(const ControlOptions& options) {
  Json request{{"command", "flows"}};
  if (!options.group.empty()) request["group"] = options.group;
  const std::optional<std::string> answer = ask("flows", options, request);
  if (!answer) return 1;
  if (options.json) {
    std::cout << *answer;
    return 0;
  }
  std::istringstream lines(*answer);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    try {
      std::cout << flow_text(Json::parse(line)) << '\n';
    } catch (const std::exception& e) {
      std::cerr << "portcullis flows: an answer line that does not read as a flow: " << e.what() << '\n';
      return 1;
    }
  }
  return 0;
}

int stats(const ControlOptions& options) {
  const std::optional<std::string> answer = ask("stats", options, Json{{"command", "stats"}});
  if (!answer) return 1;
  std::cout << *answer;
  return 0;
}

int reload(const ControlOptions& options) {
  const std::optional<std::string> answer = ask("reload", options, Json{{"command", "reload"}});
  if (!answer) return 1;
  Json result;
  try {
    result = Json::parse(*answer);
  } catch (const std::exception& e) {
    std::cerr << "portcullis reload: the daemon's answer does not read: " << e.what() << '\n';
    return 1;
  }
  if (result.value("ok", false)) {
    std::cout << "policy generation " << result.value("generation", 0) << " in force; "
              << result.value("flows_revoked", 0) << " of " << result.value("flows_checked", 0)
              << " open flows revoked\n";
    for (const Json& warning : result.value("warnings", Json::array())) std::cerr << warning.get<std::string>() << '\n';
    return 0;
  }
  if (result.contains("errors")) {
    for (const Json& error : result.at("errors")) std::cerr << error.get<std::string>() << '\n';
    std::cerr << "portcullis reload: the policy in force (generation " << result.value("running_generation", 0)
              << ") stays\n";
  } else {
    std::cerr << "portcullis reload: " << result.value("error", std::string("refused")) << '\n';
  }
  return 1;
}

}  // namespace

Runner add_flows_command(CLI::App& app) {
  auto options = std::make_shared<ControlOptions>();
  CLI::App* command = app.add_subcommand("flows", "List the flows a running daemon tracks");
  add_socket_option(command, *options);
  command->add_flag("--json", options->json, "one JSON object per flow");
  command->add_option("--group", options->group, "only the flows of this group");
  return [options] { return flows(*options); };
}

Runner add_stats_command(CLI::App& app) {
  auto options = std::make_shared<ControlOptions>();
  CLI::App* command = app.add_subcommand("stats", "A running daemon's counters, as one JSON object");
  add_socket_option(command, *options);
  return [options] { return stats(*options); };
}

Runner add_reload_command(CLI::App& app) {
  auto options = std::make_shared<ControlOptions>();
  CLI::App* command =
      app.add_subcommand("reload", "Make a running daemon load its policy file again (exit 0 once it is in force)");
  add_socket_option(command, *options);
  return [options] { return reload(*options); };
}

}  // namespace portcullis::cli
