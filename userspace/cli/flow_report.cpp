#include "cli/flow_report.h"

#include <cstdio>

namespace portcullis::cli {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;

std::string bytes_text(uint64_t bytes) {
  char text[32];
  if (bytes < 1000) {
    (void)std::snprintf(text, sizeof(text), "%lluB", static_cast<unsigned long long>(bytes));
  } else if (bytes < 1000 * 1000) {
    (void)std::snprintf(text, sizeof(text), "%.1fkB", static_cast<double>(bytes) / 1e3);
  } else if (bytes < 1000ULL * 1000 * 1000) {
    (void)std::snprintf(text, sizeof(text), "%.1fMB", static_cast<double>(bytes) / 1e6);
  } else {
    (void)std::snprintf(text, sizeof(text), "%.1fGB", static_cast<double>(bytes) / 1e9);
  }
  return text;
}

std::string endpoint(const nlohmann::json& flow, const char* address, const char* port) {
  std::string text = flow.at(address).get<std::string>();
  if (flow.at(port).is_null()) return text;
  if (text.find(':') != std::string::npos) text = "[" + text + "]";
  return text + ":" + std::to_string(flow.at(port).get<uint32_t>());
}

}  // namespace

nlohmann::ordered_json flow_json(const conntrack::TrackedFlow& flow, const policy::CompiledPolicy* policy,
                                 const dataplane::WallClock& clock, uint64_t now_ns) {
  pc_verdict_event event = flow.event;
  event.verdict = flow.data.verdict == PC_VERDICT_DRAINING ? PC_VERDICT_ALLOW : flow.data.verdict;
  event.reason = flow.data.reason;
  event.rule_id = flow.data.rule_id;
  event.generation = flow.data.generation;
  nlohmann::ordered_json out = dataplane::verdict_json(event, policy, clock.iso8601(flow.data.first_seen_ns));
  out["event"] = "flow";
  out.erase("ts");
  if (flow.identity) {
    out["l7"] = policy::to_string(flow.identity->l7);
    out["name"] = flow.identity->name ? nlohmann::ordered_json(*flow.identity->name) : nlohmann::ordered_json(nullptr);
  }
  if (!flow.bound_names.empty()) out["bound_names"] = flow.bound_names;
  if (flow.data.verdict == PC_VERDICT_PENDING) {
    out["verdict"] = "pending";
    out["reason"] = nullptr;
  }
  out["state"] = conntrack::to_string(flow.state());
  const uint8_t from = flow.data.initiator & 1;
  out["packets_out"] = flow.data.packets[from];
  out["bytes_out"] = flow.data.bytes[from];
  out["packets_in"] = flow.data.packets[from ^ 1];
  out["bytes_in"] = flow.data.bytes[from ^ 1];
  out["first_seen"] = clock.iso8601(flow.data.first_seen_ns);
  out["last_seen"] = clock.iso8601(flow.data.last_seen_ns);
  out["idle_s"] = now_ns > flow.data.last_seen_ns ? (now_ns - flow.data.last_seen_ns) / kNsPerSecond : 0;
  if (flow.adopted) out["adopted"] = true;
  return out;
}

std::string flow_text(const nlohmann::json& flow) {
  std::string text = flow.at("proto").get<std::string>() + " " + endpoint(flow, "src", "sport") + " -> " +
                     endpoint(flow, "dst", "dport");
  if (flow.contains("icmp_type")) text += " type=" + std::to_string(flow.at("icmp_type").get<uint32_t>());
  text += " " + flow.at("l7").get<std::string>();
  if (!flow.at("name").is_null()) text += " " + flow.at("name").get<std::string>();
  text += " " + flow.at("verdict").get<std::string>();
  if (!flow.at("rule").is_null()) text += " rule=" + flow.at("rule").get<std::string>();
  if (!flow.at("reason").is_null()) text += " reason=" + flow.at("reason").get<std::string>();
  text += " " + flow.at("state").get<std::string>();
  text += " out=" + std::to_string(flow.at("packets_out").get<uint64_t>()) + "/" +
          bytes_text(flow.at("bytes_out").get<uint64_t>());
  text += " in=" + std::to_string(flow.at("packets_in").get<uint64_t>()) + "/" +
          bytes_text(flow.at("bytes_in").get<uint64_t>());
  text += " idle=" + std::to_string(flow.at("idle_s").get<uint64_t>()) + "s";
  if (!flow.at("group").is_null()) text += " group=" + flow.at("group").get<std::string>();
  return text;
}

}  // namespace portcullis::cli
