#include <nlohmann/json.hpp>

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "policy/compiled_policy.h"
#include "policy/domain_name.h"
#include "policy/policy_loader.h"

namespace portcullis::cli {
namespace {

using policy::Action;
using policy::Decision;
using policy::DecisionReason;
using policy::L4Proto;
using policy::L7Proto;

struct ExplainOptions {
  std::string policy_path;
  std::string src;
  std::string dst;
  std::string proto;
  std::optional<uint16_t> dport;
  std::string name;
  std::string l7;
  std::string icmp_type = "echo-request";
  std::string mode;
  std::string format = "text";
};

// What a flow most likely shows when the caller does not say: the name implies TLS or QUIC, otherwise
// the well-known port decides.
L7Proto infer_l7(L4Proto proto, uint16_t dport, bool has_name) {
  if (proto == L4Proto::tcp) {
    if (dport == 80) return L7Proto::http;
    if (dport == 443 || has_name) return L7Proto::tls;
    if (dport == 22) return L7Proto::ssh;
    if (dport == 21) return L7Proto::ftp;
    if (dport == 53) return L7Proto::dns;
  } else if (proto == L4Proto::udp) {
    if (dport == 53) return L7Proto::dns;
    if (dport == 443 || has_name) return L7Proto::quic;
  }
  return L7Proto::none;
}

std::string describe_flow(const policy::FlowQuery& flow) {
  std::string text = std::string(to_string(flow.proto));
  if (flow.l7 != L7Proto::none) text = std::string(to_string(flow.l7)) + " over " + text;
  text += " to " + flow.dst.to_string();
  if (flow.proto == L4Proto::tcp || flow.proto == L4Proto::udp) text += " port " + std::to_string(flow.dport);
  if (flow.name) text += " named " + *flow.name;
  return text;
}

std::string explanation(const Decision& decision, const policy::FlowQuery& flow,
                        const policy::CompiledPolicy& compiled) {
  switch (decision.reason) {
    case DecisionReason::loopback:
      return "loopback traffic is always allowed";
    case DecisionReason::source_not_in_group:
      return "source " + flow.src.to_string() +
             " belongs to no group; in gateway mode its packets are dropped as spoofed";
    case DecisionReason::dns_not_resolver:
      return "DNS (tcp/udp port 53) may go only to dns.resolvers or a dns rule's resolver, and " +
             flow.dst.to_string() + " is neither";
    case DecisionReason::default_action:
      return "no rule matches " + describe_flow(flow) + "; defaults.action is " +
             std::string(to_string(compiled.policy().defaults.action));
    case DecisionReason::rule:
      break;
  }
  const policy::Rule& rule = *decision.rule;
  std::string text = std::string(to_string(rule.action)) + " rule '" + rule.name + "' matches " + describe_flow(flow);
  if (rule.action == Action::deny) {
    for (const policy::Rule* other : decision.matched) {
      if (other->action == Action::allow) {
        text += "; deny wins over allow rule '" + other->name + "'";
        break;
      }
    }
  }
  if (decision.needs_dns_binding) {
    text += "; this holds only while " + flow.dst.to_string() + " is bound to " + *flow.name + " by a DNS answer";
  }
  return text;
}

std::string reason_code(const Decision& decision) {
  if (decision.reason == DecisionReason::rule && decision.needs_dns_binding) return "rule-if-dns-binding";
  return std::string(to_string(decision.reason));
}

std::string rule_location(const policy::Rule& rule, const std::string& file) {
  return file + ":" + std::to_string(rule.location.line) + ":" + std::to_string(rule.location.column);
}

int run_explain(const ExplainOptions& options) {
  const auto fail = [](const std::string& message) {
    std::cerr << "portcullis explain: " << message << '\n';
    return 2;
  };

  policy::LoadResult loaded = policy::load_policy_file(options.policy_path);
  if (!loaded.policy) {
    for (const policy::Diagnostic& diagnostic : loaded.diagnostics) {
      std::cerr << policy::format_diagnostic(options.policy_path, diagnostic) << '\n';
    }
    return 1;
  }

  policy::FlowQuery flow;
  const std::optional<policy::IpAddress> src = policy::IpAddress::parse(options.src);
  const std::optional<policy::IpAddress> dst = policy::IpAddress::parse(options.dst);
  if (!src) return fail("--src '" + options.src + "' is not an IP address");
  if (!dst) return fail("--dst '" + options.dst + "' is not an IP address");
  flow.src = src->unmapped();
  flow.dst = dst->unmapped();
  if (flow.src.family != flow.dst.family) return fail("--src and --dst must be of the same address family");

  const std::optional<L4Proto> proto = policy::l4_proto_from_string(options.proto);
  if (!proto) return fail("--proto must be tcp, udp, icmp or icmpv6");
  flow.proto = *proto;
  const bool ports = flow.proto == L4Proto::tcp || flow.proto == L4Proto::udp;
  if (ports && !options.dport) return fail("--dport is required for tcp and udp");
  if (!ports && options.dport) return fail("--dport applies only to tcp and udp");
  if (flow.proto == L4Proto::icmp && flow.dst.family == policy::IpFamily::v6)
    return fail("use --proto icmpv6 for IPv6");
  if (flow.proto == L4Proto::icmpv6 && flow.dst.family == policy::IpFamily::v4)
    return fail("use --proto icmp for IPv4");
  flow.dport = options.dport.value_or(0);

  if (!ports) {
    std::optional<policy::IcmpType> type = policy::icmp_type_from_string(options.icmp_type);
    const int16_t number = !type ? -1 : flow.proto == L4Proto::icmpv6 ? type->v6_type : type->v4_type;
    if (number < 0) return fail("--icmp-type '" + options.icmp_type + "' is not an ICMP type of " + options.proto);
    flow.icmp_type = static_cast<uint8_t>(number);
  }

  if (!options.name.empty()) {
    policy::NormalizedName normalized = policy::normalize_domain_name(options.name);
    if (!normalized.error.empty()) return fail("--name '" + options.name + "': " + normalized.error);
    flow.name = std::move(normalized.name);
  }
  if (!options.l7.empty()) {
    const std::optional<L7Proto> l7 = policy::l7_proto_from_string(options.l7);
    if (!l7) return fail("--l7 must be none, tls, quic, http, dns, ssh or ftp");
    flow.l7 = *l7;
  } else if (ports) {
    flow.l7 = infer_l7(flow.proto, flow.dport, flow.name.has_value());
  }

  const policy::Mode mode = options.mode.empty()
                                ? (loaded.policy->groups.empty() ? policy::Mode::host : policy::Mode::gateway)
                            : options.mode == "host" ? policy::Mode::host
                                                     : policy::Mode::gateway;
  const auto compiled = policy::compile_policy(std::move(*loaded.policy));
  const Decision decision = compiled->evaluate(flow, mode);
  const std::optional<std::string> group =
      decision.group ? std::optional<std::string>(compiled->policy().groups[*decision.group].name) : std::nullopt;

  if (options.format == "json") {
    nlohmann::json out;
    out["verdict"] = to_string(decision.verdict);
    out["rule"] = decision.rule ? nlohmann::json(decision.rule->name) : nlohmann::json(nullptr);
    out["reason"] = reason_code(decision);
    out["needs_dns_binding"] = decision.needs_dns_binding;
    out["group"] = group ? nlohmann::json(*group) : nlohmann::json(nullptr);
    out["mode"] = mode == policy::Mode::host ? "host" : "gateway";
    out["proto"] = to_string(flow.proto);
    out["l7"] = to_string(flow.l7);
    out["name"] = flow.name ? nlohmann::json(*flow.name) : nlohmann::json(nullptr);
    out["matched"] = nlohmann::json::array();
    for (const policy::Rule* rule : decision.matched) {
      out["matched"].push_back({{"rule", rule->name}, {"action", to_string(rule->action)}});
    }
    out["explanation"] = explanation(decision, flow, *compiled);
    std::cout << out.dump() << '\n';
    return 0;
  }
  std::cout << "verdict: " << to_string(decision.verdict) << '\n';
  std::cout << "rule: "
            << (decision.rule ? decision.rule->name + " (" + rule_location(*decision.rule, options.policy_path) + ")"
                              : std::string("none"))
            << '\n';
  std::cout << "reason: " << reason_code(decision) << '\n';
  if (group) std::cout << "group: " << *group << '\n';
  std::cout << "l7: " << to_string(flow.l7) << '\n';
  std::cout << "explanation: " << explanation(decision, flow, *compiled) << '\n';
  return 0;
}

}  // namespace

Runner add_explain_command(CLI::App& app) {
  auto options = std::make_shared<ExplainOptions>();
  CLI::App* command = app.add_subcommand("explain", "Show which rule decides a flow, and the verdict");
  command->add_option("POLICY", options->policy_path, "policy file (YAML)")->required();
  command->add_option("--src", options->src, "source address of the flow")->required();
  command->add_option("--dst", options->dst, "destination address of the flow")->required();
  command->add_option("--proto", options->proto, "tcp, udp, icmp or icmpv6")
      ->required()
      ->check(CLI::IsMember({"tcp", "udp", "icmp", "icmpv6"}));
  command->add_option("--dport", options->dport, "destination port (tcp, udp)")->check(CLI::Range(1, 65535));
  command->add_option("--name", options->name,
                      "the name the flow shows (SNI, Host) or its destination is bound to by DNS; the binding is "
                      "assumed to hold");
  command->add_option("--l7", options->l7,
                      "what the flow starts with: none, tls, quic, http, dns, ssh, ftp (default: from the port and "
                      "--name)");
  command->add_option("--icmp-type", options->icmp_type, "ICMP message type by name (default echo-request)");
  command->add_option("--mode", options->mode, "host or gateway (default: gateway when the policy has groups)")
      ->check(CLI::IsMember({"host", "gateway"}));
  command->add_option("--format", options->format, "text or json")->check(CLI::IsMember({"text", "json"}));
  return [options]() { return run_explain(*options); };
}

}  // namespace portcullis::cli
