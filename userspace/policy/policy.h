// The policy as written: what the loader produces after validating a YAML file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "policy/ip_address.h"

namespace portcullis::policy {

enum class Action : uint8_t { allow, deny };
enum class OnDeny : uint8_t { reject, drop };
enum class SniIpBinding : uint8_t { dns, off };
enum class EchMode : uint8_t { outer, deny };

// What a rule requires of a flow (the design brief's "Protocols" table).
enum class RuleProto : uint8_t { https, tls, quic, http, ssh, ftp, dns, tcp, udp, icmp, any };

// What a packet is at layer 4.
enum class L4Proto : uint8_t { tcp, udp, icmp, icmpv6 };

// What a flow showed at its start, as identified by the data plane and the daemon's parsers.
enum class L7Proto : uint8_t { none, tls, quic, http, dns, ssh, ftp };

std::string_view to_string(Action action);
std::string_view to_string(RuleProto proto);
std::string_view to_string(L4Proto proto);
std::string_view to_string(L7Proto proto);
std::optional<RuleProto> rule_proto_from_string(std::string_view text);
std::optional<L4Proto> l4_proto_from_string(std::string_view text);
std::optional<L7Proto> l7_proto_from_string(std::string_view text);

// An ICMP message kind named in `icmp_types`, with its type number in each family (-1: none there).
struct IcmpType {
  std::string_view name;
  int16_t v4_type;
  int16_t v6_type;
};
std::optional<IcmpType> icmp_type_from_string(std::string_view name);
std::optional<IcmpType> icmp_type_from_number(L4Proto family, uint8_t type);
const std::vector<IcmpType>& icmp_types_known();

struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 0;
  bool contains(uint16_t port) const { return port >= lo && port <= hi; }
  friend bool operator==(const PortRange&, const PortRange&) = default;
};

struct SourceLocation {
  int line = 0;  // 1-based; 0 when unknown
  int column = 0;
};

struct NamePattern {
  enum class Kind : uint8_t {
    exact,           // example.com
    one_label,       // *.example.com: exactly one label below, not the apex
    any_depth,       // **.example.com: any depth below, not the apex
    apex_and_below,  // .example.com: the apex and any depth below
  };
  Kind kind = Kind::exact;
  std::string domain;  // normalized, without the wildcard prefix

  bool matches(std::string_view normalized_name) const;
  std::string to_string() const;
};

using Destination = std::variant<NamePattern, Cidr>;
std::string destination_to_string(const Destination& destination);

struct Rule {
  std::string name;    // given, or generated from its position ("rules[2]")
  bool named = false;  // whether `name` was written in the policy
  std::vector<Destination> destinations;
  RuleProto proto = RuleProto::any;
  std::vector<PortRange> ports;      // effective ports (defaults applied); empty = every port
  std::vector<IcmpType> icmp_types;  // for proto icmp only
  Action action = Action::allow;
  std::optional<size_t> group;  // index into Policy::groups; nullopt = applies to every source
  SourceLocation location;
};

struct Group {
  std::string name;
  std::vector<Cidr> sources;
  SourceLocation location;
};

struct Defaults {
  Action action = Action::deny;
  OnDeny on_deny = OnDeny::reject;
  SniIpBinding sni_ip_binding = SniIpBinding::dns;
  EchMode ech = EchMode::outer;
  Action quic_unknown_version = Action::deny;
  uint32_t l7_timeout_ms = 1000;
};

struct DnsSettings {
  std::vector<IpAddress> resolvers;
  SourceLocation resolvers_location;
  bool filter_queries = true;
  uint32_t min_ttl = 30;
  uint32_t max_ttl = 3600;
};

struct Policy {
  std::string file;
  Defaults defaults;
  DnsSettings dns;
  // Every rule in the order written: add_domains first, then top-level rules, then each group's rules.
  // The order decides which rule is reported when several match with the same action.
  std::vector<Rule> rules;
  std::vector<Group> groups;
};

// Rule protocols that identify the flow by a name it shows itself (SNI or Host).
bool proto_matches_shown_name(RuleProto proto);

}  // namespace portcullis::policy
