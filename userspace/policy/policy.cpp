#include "policy/policy.h"

#include <array>

#include "policy/domain_name.h"

namespace portcullis::policy {
namespace {

template <typename Enum, size_t N>
std::optional<Enum> lookup(const std::array<std::string_view, N>& names, std::string_view text) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == text) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 11> kRuleProtoNames = {"https", "tls", "quic", "http", "ssh", "ftp",
                                                              "dns",   "tcp", "udp",  "icmp", "any"};
constexpr std::array<std::string_view, 4> kL4ProtoNames = {"tcp", "udp", "icmp", "icmpv6"};
constexpr std::array<std::string_view, 7> kL7ProtoNames = {"none", "tls", "quic", "http", "dns", "ssh", "ftp"};

}  // namespace

std::string_view to_string(Action action) {
  return action == Action::allow ? "allow" : "deny";
}
std::string_view to_string(RuleProto proto) {
  return kRuleProtoNames[static_cast<size_t>(proto)];
}
std::string_view to_string(L4Proto proto) {
  return kL4ProtoNames[static_cast<size_t>(proto)];
}
std::string_view to_string(L7Proto proto) {
  return kL7ProtoNames[static_cast<size_t>(proto)];
}

std::optional<RuleProto> rule_proto_from_string(std::string_view text) {
  return lookup<RuleProto>(kRuleProtoNames, text);
}
std::optional<L4Proto> l4_proto_from_string(std::string_view text) {
  return lookup<L4Proto>(kL4ProtoNames, text);
}
std::optional<L7Proto> l7_proto_from_string(std::string_view text) {
  return lookup<L7Proto>(kL7ProtoNames, text);
}

const std::vector<IcmpType>& icmp_types_known() {
  static const std::vector<IcmpType> kTypes = {
      {"echo-reply", 0, 129},
      {"destination-unreachable", 3, 1},
      {"packet-too-big", -1, 2},
      {"redirect", 5, 137},
      {"echo-request", 8, 128},
      {"router-advertisement", 9, 134},
      {"router-solicitation", 10, 133},
      {"time-exceeded", 11, 3},
      {"parameter-problem", 12, 4},
      {"timestamp-request", 13, -1},
      {"timestamp-reply", 14, -1},
      {"neighbor-solicitation", -1, 135},
      {"neighbor-advertisement", -1, 136},
  };
  return kTypes;
}

std::optional<IcmpType> icmp_type_from_string(std::string_view name) {
  for (const IcmpType& type : icmp_types_known()) {
    if (type.name == name) return type;
  }
  return std::nullopt;
}

std::optional<IcmpType> icmp_type_from_number(L4Proto family, uint8_t number) {
  for (const IcmpType& type : icmp_types_known()) {
    const int16_t wanted = family == L4Proto::icmpv6 ? type.v6_type : type.v4_type;
    if (wanted == number) return type;
  }
  return std::nullopt;
}

bool NamePattern::matches(std::string_view name) const {
  switch (kind) {
    case Kind::exact:
      return name == domain;
    case Kind::one_label:
      return parent_domain(name) == domain;
    case Kind::any_depth:
      return name.size() > domain.size() && is_same_or_subdomain(name, domain);
    case Kind::apex_and_below:
      return is_same_or_subdomain(name, domain);
  }
  return false;
}

std::string NamePattern::to_string() const {
  switch (kind) {
    case Kind::exact:
      return domain;
    case Kind::one_label:
      return "*." + domain;
    case Kind::any_depth:
      return "**." + domain;
    case Kind::apex_and_below:
      return "." + domain;
  }
  return domain;
}

std::string destination_to_string(const Destination& destination) {
  if (const auto* pattern = std::get_if<NamePattern>(&destination)) return pattern->to_string();
  return std::get<Cidr>(destination).to_string();
}

bool proto_matches_shown_name(RuleProto proto) {
  return proto == RuleProto::https || proto == RuleProto::tls || proto == RuleProto::quic || proto == RuleProto::http;
}

}  // namespace portcullis::policy
