// `portcullis replay [--policy POLICY] [--mode host|gateway] [--format text|json] CAPTURE...`: what the policy
// would do to the flows of recorded traffic, one line per flow. Unprivileged: the data plane's code runs in
// userspace (replay/replayer.h).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "policy/compiled_policy.h"
#include "policy/policy_loader.h"
#include "replay/kernel_data_plane.h"
#include "replay/replayer.h"

namespace portcullis::cli {
namespace {

using Json = nlohmann::ordered_json;

struct ReplayOptions {
  std::string policy_path;
  std::string mode = "host";
  std::string format = "text";
  std::vector<std::string> captures;
  std::string write_allowed;
  std::string write_denied;
  bool kernel = false;
};

Json flow_json(const replay::FlowReport& flow) {
  Json out;
  out["capture"] = flow.capture;
  out["proto"] = flow.proto;
  out["src"] = flow.src;
  out["sport"] = flow.sport ? Json(*flow.sport) : Json(nullptr);
  out["dst"] = flow.dst;
  out["dport"] = flow.dport ? Json(*flow.dport) : Json(nullptr);
  if (flow.icmp_type) out["icmp_type"] = *flow.icmp_type;
  out["l7"] = flow.l7;
  out["name"] = flow.name ? Json(*flow.name) : Json(nullptr);
  out["verdict"] = flow.verdict;
  out["rule"] = flow.rule ? Json(*flow.rule) : Json(nullptr);
  out["reason"] = flow.reason;
  out["packets"] = flow.packets;
  out["bytes"] = flow.bytes;
  return out;
}

std::string endpoint(const std::string& address, const std::optional<uint16_t>& port) {
  if (!port) return address;
  return (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(*port);
}

std::string flow_text(const replay::FlowReport& flow) {
  std::string line =
      flow.capture + " " + flow.proto + " " + endpoint(flow.src, flow.sport) + " -> " + endpoint(flow.dst, flow.dport);
  if (flow.icmp_type) line += " type " + std::to_string(*flow.icmp_type);
  line += " " + flow.l7 + " " + flow.name.value_or("-") + " " + flow.verdict + " " + flow.rule.value_or("-") + " " +
          flow.reason;
  return line;
}

int replay(const ReplayOptions& options) {
  std::shared_ptr<const policy::CompiledPolicy> compiled;
  if (!options.policy_path.empty()) {
    policy::LoadResult loaded = policy::load_policy_file(options.policy_path);
    bool failed = false;
    for (const policy::Diagnostic& diagnostic : loaded.diagnostics) {
      std::cerr << policy::format_diagnostic(options.policy_path, diagnostic) << '\n';
      failed = failed || diagnostic.severity == policy::Diagnostic::Severity::error;
    }
    if (failed || !loaded.policy) return 1;
    compiled = policy::compile_policy(std::move(*loaded.policy));
  }
  replay::Replayer replayer(compiled, options.mode == "gateway" ? policy::Mode::gateway : policy::Mode::host,
                            options.kernel ? replay::ReplayDataPlaneFactory(replay::make_kernel_data_plane)
                                           : replay::ReplayDataPlaneFactory(replay::make_userspace_data_plane));
  if (!options.write_allowed.empty() || !options.write_denied.empty()) {
    replayer.split_into(options.write_allowed, options.write_denied);
  }
  int status = 0;
  for (const std::string& capture : options.captures) {
    try {
      replayer.replay(capture);
    } catch (const std::exception& e) {
      std::cerr << "portcullis replay: " << e.what() << '\n';
      status = 1;
    }
  }
  for (const replay::FlowReport& flow : replayer.flows()) {
    if (options.format == "json") {
      std::cout << flow_json(flow).dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
    } else {
      std::cout << flow_text(flow) << '\n';
    }
  }
  const replay::ReplayStats& stats = replayer.stats();
  for (const std::string& error : stats.errors) std::cerr << "portcullis replay: " << error << '\n';
  std::cerr << "portcullis replay: " << stats.packets << " packets, " << replayer.flows().size() << " flows, "
            << stats.truncated << " truncated, " << stats.not_ip << " not IP, " << stats.malformed << " malformed\n";
  return status;
}

}  // namespace

Runner add_replay_command(CLI::App& app) {
  auto options = std::make_shared<ReplayOptions>();
  CLI::App* command =
      app.add_subcommand("replay", "What a policy would do to the flows of captures (pcap, pcapng), offline");
  command->add_option("--policy", options->policy_path, "policy file (YAML); without it every flow is allowed");
  command->add_option("--mode", options->mode, "host (default) or gateway (a source in no group is refused)")
      ->check(CLI::IsMember({"host", "gateway"}));
  command->add_option("--format", options->format, "text (default) or json (one object per flow and line)")
      ->check(CLI::IsMember({"text", "json"}));
  command->add_flag("--kernel", options->kernel,
                    "feed every packet to the loaded BPF programs (BPF_PROG_TEST_RUN) instead of their userspace "
                    "build; root");
  command->add_option("--write-allowed", options->write_allowed,
                      "write the packets the policy lets through to FILE (pcap, the first capture's link type)");
  command->add_option("--write-denied", options->write_denied, "write the packets it refuses to FILE");
  command->add_option("captures", options->captures, "capture files")->required();
  return [options]() { return replay(*options); };
}

}  // namespace portcullis::cli
