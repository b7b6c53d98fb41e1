#include "policy/policy_loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "policy/domain_name.h"
#include "policy/shadowing.h"

namespace portcullis::policy {
namespace {

// Policies are small; this bound only keeps a hostile file from exhausting memory before parsing.
constexpr size_t kMaxPolicyBytes = 64u << 20;
constexpr size_t kMaxRuleNameLength = 64;

SourceLocation location_of(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return {};
  return {mark.line + 1, mark.column + 1};
}

std::string join(const std::vector<std::string_view>& words) {
  std::string text;
  for (std::string_view word : words) {
    if (!text.empty()) text += ", ";
    text += word;
  }
  return text;
}

bool is_valid_rule_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxRuleNameLength && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

// The ports a protocol gets when the rule lists none; empty means every port (or none apply).
std::vector<PortRange> default_ports(RuleProto proto) {
  switch (proto) {
    case RuleProto::https:
    case RuleProto::tls:
    case RuleProto::quic:
      return {{443, 443}};
    case RuleProto::http:
      return {{80, 80}};
    case RuleProto::ssh:
      return {{22, 22}};
    case RuleProto::ftp:
      return {{21, 21}};
    case RuleProto::dns:
      return {{53, 53}};
    case RuleProto::tcp:
    case RuleProto::udp:
    case RuleProto::icmp:
    case RuleProto::any:
      return {};
  }
  return {};
}

class PolicyLoader {
 public:
  explicit PolicyLoader(std::string file) { policy_.file = std::move(file); }

  LoadResult load(std::string_view text);

 private:
  void error(const YAML::Node& node, std::string message) {
    diagnostics_.push_back({Diagnostic::Severity::error, location_of(node), std::move(message)});
  }
  void warning(SourceLocation location, std::string message) {
    diagnostics_.push_back({Diagnostic::Severity::warning, location, std::move(message)});
  }

  // Reports keys outside `allowed` and keys given twice; returns false when `node` is not a mapping.
  bool check_mapping(const YAML::Node& node, std::string_view what, const std::vector<std::string_view>& allowed);
  std::optional<std::string> scalar(const YAML::Node& node, std::string_view what);
  std::optional<uint32_t> unsigned_int(const YAML::Node& node, std::string_view what, uint32_t lo, uint32_t hi);
  std::optional<bool> boolean(const YAML::Node& node, std::string_view what);
  template <typename Enum>
  std::optional<Enum> choice(const YAML::Node& node, std::string_view what,
                             const std::vector<std::pair<std::string_view, Enum>>& options);
  // A sequence, or a single scalar taken as a one-element list.
  std::vector<YAML::Node> list(const YAML::Node& node, std::string_view what);

  void load_defaults(const YAML::Node& node);
  void load_dns(const YAML::Node& node);
  void load_add_domains(const YAML::Node& node);
  void load_rules(const YAML::Node& node, std::optional<size_t> group, const std::string& name_prefix);
  void load_rule(const YAML::Node& node, std::optional<size_t> group, std::string generated_name);
  void load_groups(const YAML::Node& node);
  std::optional<Destination> destination(const YAML::Node& node);
  std::optional<std::vector<PortRange>> ports(const YAML::Node& node);
  std::optional<PortRange> port_range(const YAML::Node& node);
  std::optional<std::vector<IcmpType>> icmp_types(const YAML::Node& node);
  void check_rule_name_unique(const YAML::Node& node, const std::string& name);
  // Reports `cidr` when it overlaps a source of any group loaded so far, `group` (not yet stored) included.
  void check_source_disjoint(const YAML::Node& node, const Cidr& cidr, const Group& group);

  Policy policy_;
  std::vector<Diagnostic> diagnostics_;
  std::map<std::string, SourceLocation> rule_names_;
};

bool PolicyLoader::check_mapping(const YAML::Node& node, std::string_view what,
                                 const std::vector<std::string_view>& allowed) {
  if (!node.IsMap()) {
    error(node, std::string(what) + " must be a mapping");
    return false;
  }
  std::set<std::string> seen;
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      error(key, "keys of " + std::string(what) + " must be plain names");
      continue;
    }
    const std::string& name = key.Scalar();
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      error(key, "unknown key '" + name + "' in " + std::string(what) + " (expected one of: " + join(allowed) + ")");
    } else if (!seen.insert(name).second) {
      error(key, "key '" + name + "' appears twice in " + std::string(what));
    }
  }
  return true;
}

std::optional<std::string> PolicyLoader::scalar(const YAML::Node& node, std::string_view what) {
  if (!node.IsScalar()) {
    error(node, std::string(what) + " must be a single value");
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<uint32_t> PolicyLoader::unsigned_int(const YAML::Node& node, std::string_view what, uint32_t lo,
                                                   uint32_t hi) {
  const std::optional<std::string> text = scalar(node, what);
  if (!text) return std::nullopt;
  long long value = 0;
  if (!YAML::convert<long long>::decode(node, value) || value < lo || value > hi) {
    error(node, std::string(what) + " must be a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
                    ", not '" + *text + "'");
    return std::nullopt;
  }
  return static_cast<uint32_t>(value);
}

std::optional<bool> PolicyLoader::boolean(const YAML::Node& node, std::string_view what) {
  const std::optional<std::string> text = scalar(node, what);
  if (!text) return std::nullopt;
  if (*text == "true") return true;
  if (*text == "false") return false;
  error(node, std::string(what) + " must be true or false, not '" + *text + "'");
  return std::nullopt;
}

template <typename Enum>
std::optional<Enum> PolicyLoader::choice(const YAML::Node& node, std::string_view what,
                                         const std::vector<std::pair<std::string_view, Enum>>& options) {
  const std::optional<std::string> text = scalar(node, what);
  if (!text) return std::nullopt;
  std::vector<std::string_view> names;
  for (const auto& [name, value] : options) {
    if (name == *text) return value;
    names.push_back(name);
  }
  error(node, std::string(what) + " must be one of " + join(names) + ", not '" + *text + "'");
  return std::nullopt;
}

std::vector<YAML::Node> PolicyLoader::list(const YAML::Node& node, std::string_view what) {
  std::vector<YAML::Node> items;
  if (node.IsScalar()) {
    items.push_back(node);
  } else if (node.IsSequence()) {
    for (const YAML::Node& item : node) items.push_back(item);
  } else if (!node.IsNull()) {
    error(node, std::string(what) + " must be a value or a list of values");
  }
  return items;
}

LoadResult PolicyLoader::load(std::string_view text) {
  if (text.size() > kMaxPolicyBytes) {
    diagnostics_.push_back({Diagnostic::Severity::error, {1, 1}, "policy is larger than 64 MiB"});
    return {std::nullopt, std::move(diagnostics_)};
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    const SourceLocation where =
        e.mark.is_null() ? SourceLocation{1, 1} : SourceLocation{e.mark.line + 1, e.mark.column + 1};
    diagnostics_.push_back({Diagnostic::Severity::error, where, "invalid YAML: " + e.msg});
    return {std::nullopt, std::move(diagnostics_)};
  }
  if (!root || root.IsNull()) {
    diagnostics_.push_back(
        {Diagnostic::Severity::error, {1, 1}, "the policy is empty; it needs at least 'version: 1'"});
    return {std::nullopt, std::move(diagnostics_)};
  }
  if (!check_mapping(root, "the policy", {"version", "defaults", "dns", "add_domains", "rules", "groups"})) {
    return {std::nullopt, std::move(diagnostics_)};
  }

  if (const YAML::Node version = root["version"]) {
    if (const std::optional<std::string> text = scalar(version, "version"); text && *text != "1") {
      error(version, "unsupported policy version '" + *text + "' (this portcullis reads version 1)");
    }
  } else {
    error(root, "missing 'version: 1'");
  }
  if (const YAML::Node defaults = root["defaults"]) load_defaults(defaults);
  if (const YAML::Node dns = root["dns"]) load_dns(dns);
  if (const YAML::Node add_domains = root["add_domains"]) load_add_domains(add_domains);
  if (const YAML::Node rules = root["rules"]) load_rules(rules, std::nullopt, "rules");
  if (const YAML::Node groups = root["groups"]) load_groups(groups);

  const bool valid = !has_errors(diagnostics_);
  if (valid) {
    for (Diagnostic& finding : find_shadowed_rules(policy_)) diagnostics_.push_back(std::move(finding));
  }
  std::stable_sort(diagnostics_.begin(), diagnostics_.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.location.line, a.location.column) < std::tie(b.location.line, b.location.column);
  });
  if (!valid) return {std::nullopt, std::move(diagnostics_)};
  return {std::move(policy_), std::move(diagnostics_)};
}

void PolicyLoader::load_defaults(const YAML::Node& node) {
  if (!check_mapping(node, "defaults",
                     {"action", "on_deny", "sni_ip_binding", "ech", "quic_unknown_version", "l7_timeout_ms"})) {
    return;
  }
  Defaults& d = policy_.defaults;
  const std::vector<std::pair<std::string_view, Action>> actions = {{"allow", Action::allow}, {"deny", Action::deny}};
  if (const YAML::Node n = node["action"]) d.action = choice(n, "defaults.action", actions).value_or(d.action);
  if (const YAML::Node n = node["on_deny"]) {
    d.on_deny =
        choice<OnDeny>(n, "defaults.on_deny", {{"reject", OnDeny::reject}, {"drop", OnDeny::drop}}).value_or(d.on_deny);
  }
  if (const YAML::Node n = node["sni_ip_binding"]) {
    d.sni_ip_binding =
        choice<SniIpBinding>(n, "defaults.sni_ip_binding", {{"dns", SniIpBinding::dns}, {"off", SniIpBinding::off}})
            .value_or(d.sni_ip_binding);
  }
  if (const YAML::Node n = node["ech"]) {
    d.ech = choice<EchMode>(n, "defaults.ech", {{"outer", EchMode::outer}, {"deny", EchMode::deny}}).value_or(d.ech);
  }
  if (const YAML::Node n = node["quic_unknown_version"]) {
    d.quic_unknown_version = choice(n, "defaults.quic_unknown_version", actions).value_or(d.quic_unknown_version);
  }
  if (const YAML::Node n = node["l7_timeout_ms"]) {
    d.l7_timeout_ms = unsigned_int(n, "defaults.l7_timeout_ms", 1, 60000).value_or(d.l7_timeout_ms);
  }
}

void PolicyLoader::load_dns(const YAML::Node& node) {
  if (!check_mapping(node, "dns", {"resolvers", "filter_queries", "min_ttl", "max_ttl"})) return;
  DnsSettings& dns = policy_.dns;
  if (const YAML::Node resolvers = node["resolvers"]) {
    dns.resolvers_location = location_of(resolvers);
    for (const YAML::Node& item : list(resolvers, "dns.resolvers")) {
      const std::optional<std::string> text = scalar(item, "a resolver");
      if (!text) continue;
      if (const std::optional<IpAddress> address = IpAddress::parse(*text)) {
        dns.resolvers.push_back(address->unmapped());
      } else {
        error(item, "resolver '" + *text + "' is not an IPv4 or IPv6 address");
      }
    }
  }
  if (const YAML::Node n = node["filter_queries"]) {
    dns.filter_queries = boolean(n, "dns.filter_queries").value_or(dns.filter_queries);
  }
  constexpr uint32_t kWeek = 7 * 24 * 3600;
  if (const YAML::Node n = node["min_ttl"])
    dns.min_ttl = unsigned_int(n, "dns.min_ttl", 0, kWeek).value_or(dns.min_ttl);
  if (const YAML::Node n = node["max_ttl"])
    dns.max_ttl = unsigned_int(n, "dns.max_ttl", 1, kWeek).value_or(dns.max_ttl);
  if (dns.min_ttl > dns.max_ttl) {
    error(node["min_ttl"] ? node["min_ttl"] : node, "dns.min_ttl (" + std::to_string(dns.min_ttl) +
                                                        ") is greater than dns.max_ttl (" +
                                                        std::to_string(dns.max_ttl) + ")");
  }
}

void PolicyLoader::load_add_domains(const YAML::Node& node) {
  size_t index = 0;
  for (const YAML::Node& item : list(node, "add_domains")) {
    const std::string generated = "add_domains[" + std::to_string(index++) + "]";
    std::optional<Destination> dst = destination(item);
    if (!dst) continue;
    if (!std::holds_alternative<NamePattern>(*dst)) {
      error(item, "add_domains takes names; put addresses in a rule");
      continue;
    }
    Rule rule;
    rule.name = generated;
    rule.destinations.push_back(std::move(*dst));
    rule.proto = RuleProto::https;
    rule.ports = default_ports(RuleProto::https);
    rule.location = location_of(item);
    policy_.rules.push_back(std::move(rule));
  }
}

void PolicyLoader::load_rules(const YAML::Node& node, std::optional<size_t> group, const std::string& name_prefix) {
  if (!node.IsSequence()) {
    if (!node.IsNull()) error(node, name_prefix + " must be a list of rules");
    return;
  }
  size_t index = 0;
  for (const YAML::Node& item : node) {
    load_rule(item, group, name_prefix + "[" + std::to_string(index++) + "]");
  }
}

void PolicyLoader::load_rule(const YAML::Node& node, std::optional<size_t> group, std::string generated_name) {
  if (!check_mapping(node, "a rule", {"name", "dst", "proto", "ports", "icmp_types", "action"})) return;
  Rule rule;
  rule.group = group;
  rule.location = location_of(node);
  rule.name = std::move(generated_name);
  bool valid = true;

  if (const YAML::Node n = node["name"]) {
    if (const std::optional<std::string> name = scalar(n, "name")) {
      if (is_valid_rule_name(*name)) {
        rule.name = *name;
        rule.named = true;
        check_rule_name_unique(n, rule.name);
      } else {
        error(n, "rule name '" + *name + "' must be 1-64 letters, digits, '-', '_' or '.'");
        valid = false;
      }
    }
  }

  if (const YAML::Node n = node["proto"]) {
    const std::optional<std::string> text = scalar(n, "proto");
    const std::optional<RuleProto> proto = text ? rule_proto_from_string(*text) : std::nullopt;
    if (proto) {
      rule.proto = *proto;
    } else {
      if (text)
        error(n, "unknown proto '" + *text +
                     "' (expected one of: https, tls, quic, http, ssh, ftp, dns, tcp, udp, icmp, any)");
      valid = false;
    }
  }

  if (const YAML::Node n = node["dst"]) {
    const bool is_map = n.IsMap();
    if (is_map) {
      error(n, "dst must be a name, an address or a list of them");
      valid = false;
    }
    for (const YAML::Node& item : is_map ? std::vector<YAML::Node>{} : list(n, "dst")) {
      std::optional<Destination> dst = destination(item);
      if (!dst) {
        valid = false;
        continue;
      }
      if (rule.proto == RuleProto::dns && std::holds_alternative<NamePattern>(*dst)) {
        error(item, "a dns rule names a resolver by address, not by name");
        valid = false;
        continue;
      }
      rule.destinations.push_back(std::move(*dst));
    }
    if (valid && rule.destinations.empty()) {
      error(n, "dst must name at least one destination");
      valid = false;
    }
  } else {
    error(node, "rule '" + rule.name + "' has no dst");
    valid = false;
  }

  if (const YAML::Node n = node["action"]) {
    const std::optional<Action> action =
        choice<Action>(n, "action", {{"allow", Action::allow}, {"deny", Action::deny}});
    if (action) {
      rule.action = *action;
    } else {
      valid = false;
    }
  }

  rule.ports = default_ports(rule.proto);
  if (const YAML::Node n = node["ports"]) {
    if (rule.proto == RuleProto::icmp || rule.proto == RuleProto::any) {
      error(n, "proto " + std::string(to_string(rule.proto)) + " has no ports" +
                   (rule.proto == RuleProto::any ? " (it matches every port; use tcp or udp to restrict ports)" : ""));
      valid = false;
    } else if (std::optional<std::vector<PortRange>> ranges = ports(n)) {
      rule.ports = std::move(*ranges);
    } else {
      valid = false;
    }
  } else if ((rule.proto == RuleProto::tcp || rule.proto == RuleProto::udp) && node["proto"]) {
    error(node["proto"], "proto " + std::string(to_string(rule.proto)) + " needs ports");
    valid = false;
  }

  if (const YAML::Node n = node["icmp_types"]) {
    if (rule.proto != RuleProto::icmp) {
      error(n, "icmp_types only apply to proto icmp");
      valid = false;
    } else if (std::optional<std::vector<IcmpType>> types = icmp_types(n)) {
      rule.icmp_types = std::move(*types);
    } else {
      valid = false;
    }
  } else if (rule.proto == RuleProto::icmp) {
    rule.icmp_types = {*icmp_type_from_string("echo-request")};
  }

  if (valid && (rule.proto == RuleProto::tcp || rule.proto == RuleProto::udp) &&
      std::any_of(rule.ports.begin(), rule.ports.end(), [](const PortRange& r) { return r.contains(53); })) {
    warning(rule.location, "rule '" + rule.name + "' covers port 53, where only dns.resolvers and dns rules allow " +
                               "traffic; use proto dns to allow a resolver");
  }

  if (!valid) return;
  policy_.rules.push_back(std::move(rule));
}

std::optional<Destination> PolicyLoader::destination(const YAML::Node& node) {
  const std::optional<std::string> text = scalar(node, "dst");
  if (!text) return std::nullopt;
  if (text->empty()) {
    error(node, "dst is empty");
    return std::nullopt;
  }
  // Anything with ':' or a '/' or that parses as an address is an address or prefix; everything else is a name.
  const bool looks_like_address = text->find(':') != std::string::npos || text->find('/') != std::string::npos ||
                                  IpAddress::parse(*text).has_value();
  if (looks_like_address) {
    Cidr::ParseResult parsed = Cidr::parse(*text);
    if (!parsed.cidr) {
      error(node, "bad address or prefix: " + parsed.error);
      return std::nullopt;
    }
    return *parsed.cidr;
  }

  NamePattern pattern;
  std::string_view domain = *text;
  if (domain.starts_with("**.")) {
    pattern.kind = NamePattern::Kind::any_depth;
    domain.remove_prefix(3);
  } else if (domain.starts_with("*.")) {
    pattern.kind = NamePattern::Kind::one_label;
    domain.remove_prefix(2);
  } else if (domain.starts_with(".")) {
    pattern.kind = NamePattern::Kind::apex_and_below;
    domain.remove_prefix(1);
  }
  if (domain.find('*') != std::string_view::npos) {
    error(node, "'" + *text + "': a wildcard may only be the whole first label ('*.' or '**.')");
    return std::nullopt;
  }
  NormalizedName normalized = normalize_domain_name(domain);
  if (!normalized.error.empty()) {
    error(node, "bad name '" + *text + "': " + normalized.error);
    return std::nullopt;
  }
  pattern.domain = std::move(normalized.name);
  return pattern;
}

std::optional<std::vector<PortRange>> PolicyLoader::ports(const YAML::Node& node) {
  std::vector<PortRange> ranges;
  bool valid = true;
  for (const YAML::Node& item : list(node, "ports")) {
    if (std::optional<PortRange> range = port_range(item)) {
      ranges.push_back(*range);
    } else {
      valid = false;
    }
  }
  if (valid && ranges.empty()) {
    error(node, "ports is empty; leave it out for the protocol's default");
    valid = false;
  }
  if (!valid) return std::nullopt;
  return ranges;
}

std::optional<PortRange> PolicyLoader::port_range(const YAML::Node& node) {
  const std::optional<std::string> text = scalar(node, "a port");
  if (!text) return std::nullopt;
  const auto parse_port = [](std::string_view digits) -> std::optional<uint16_t> {
    if (digits.empty() || digits.size() > 5 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    const unsigned value = static_cast<unsigned>(std::stoul(std::string(digits)));
    if (value < 1 || value > 65535) return std::nullopt;
    return static_cast<uint16_t>(value);
  };
  const size_t dash = text->find('-');
  const std::optional<uint16_t> lo = parse_port(std::string_view(*text).substr(0, dash));
  const std::optional<uint16_t> hi =
      dash == std::string::npos ? lo : parse_port(std::string_view(*text).substr(dash + 1));
  if (!lo || !hi) {
    error(node, "'" + *text + "' is not a port (1-65535) or a range \"LO-HI\"");
    return std::nullopt;
  }
  if (*lo > *hi) {
    error(node, "port range '" + *text + "' is reversed");
    return std::nullopt;
  }
  return PortRange{*lo, *hi};
}

std::optional<std::vector<IcmpType>> PolicyLoader::icmp_types(const YAML::Node& node) {
  std::vector<IcmpType> types;
  bool valid = true;
  for (const YAML::Node& item : list(node, "icmp_types")) {
    const std::optional<std::string> text = scalar(item, "an ICMP type");
    if (!text) {
      valid = false;
      continue;
    }
    if (std::optional<IcmpType> type = icmp_type_from_string(*text)) {
      types.push_back(*type);
    } else {
      std::vector<std::string_view> names;
      for (const IcmpType& known : icmp_types_known()) names.push_back(known.name);
      error(item, "unknown ICMP type '" + *text + "' (expected one of: " + join(names) + ")");
      valid = false;
    }
  }
  if (valid && types.empty()) {
    error(node, "icmp_types is empty; leave it out for [echo-request]");
    valid = false;
  }
  if (!valid) return std::nullopt;
  return types;
}

void PolicyLoader::check_rule_name_unique(const YAML::Node& node, const std::string& name) {
  const auto [it, inserted] = rule_names_.emplace(name, location_of(node));
  if (!inserted)
    error(node, "duplicate rule name '" + name + "' (first used at line " + std::to_string(it->second.line) + ")");
}

void PolicyLoader::load_groups(const YAML::Node& node) {
  if (!node.IsSequence()) {
    error(node, "groups must be a list");
    return;
  }
  std::map<std::string, SourceLocation> group_names;
  for (const YAML::Node& item : node) {
    if (!check_mapping(item, "a group", {"name", "sources", "rules"})) continue;
    Group group;
    group.location = location_of(item);
    if (const YAML::Node n = item["name"]) {
      const std::optional<std::string> name = scalar(n, "group name");
      if (name && is_valid_rule_name(*name)) {
        group.name = *name;
        const auto [it, inserted] = group_names.emplace(group.name, group.location);
        if (!inserted) {
          error(n, "duplicate group name '" + group.name + "' (first used at line " + std::to_string(it->second.line) +
                       ")");
        }
      } else if (name) {
        error(n, "group name '" + *name + "' must be 1-64 letters, digits, '-', '_' or '.'");
      }
    } else {
      error(item, "a group needs a name");
    }
    if (const YAML::Node n = item["sources"]) {
      for (const YAML::Node& source : list(n, "sources")) {
        const std::optional<std::string> text = scalar(source, "a source");
        if (!text) continue;
        Cidr::ParseResult parsed = Cidr::parse(*text);
        if (parsed.cidr) {
          check_source_disjoint(source, *parsed.cidr, group);
          group.sources.push_back(*parsed.cidr);
        } else {
          error(source, "bad source prefix: " + parsed.error);
        }
      }
      if (group.sources.empty() && n.IsSequence() && n.size() == 0) error(n, "sources is empty");
    } else {
      error(item, "group '" + group.name + "' needs sources (the addresses of its sandboxes)");
    }
    const size_t index = policy_.groups.size();
    const std::string prefix = "groups[" + (group.name.empty() ? std::to_string(index) : group.name) + "].rules";
    policy_.groups.push_back(std::move(group));
    if (const YAML::Node rules = item["rules"]) load_rules(rules, index, prefix);
  }
}

void PolicyLoader::check_source_disjoint(const YAML::Node& node, const Cidr& cidr, const Group& group) {
  const auto report = [&](const Group& other, const Cidr& taken) {
    const std::string owner = &other == &group ? "an earlier source of the same group" : "group '" + other.name + "'";
    error(node, "source " + cidr.to_string() + " overlaps " + taken.to_string() + " of " + owner +
                    "; a sandbox must belong to exactly one group");
  };
  for (const Group& other : policy_.groups) {
    for (const Cidr& taken : other.sources) {
      if (taken.overlaps(cidr)) return report(other, taken);
    }
  }
  for (const Cidr& taken : group.sources) {
    if (taken.overlaps(cidr)) return report(group, taken);
  }
}

}  // namespace

LoadResult load_policy(std::string_view yaml_text, const std::string& file) {
  return PolicyLoader(file).load(yaml_text);
}

LoadResult load_policy_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return {std::nullopt, {{Diagnostic::Severity::error, {0, 0}, "cannot read the policy file"}}};
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load_policy(text.str(), path);
}

}  // namespace portcullis::policy
