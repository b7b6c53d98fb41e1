#include "dataplane/policy_tables.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>

#include "policy/prefix_matcher.h"

namespace portcullis::dataplane {
namespace {

using policy::Cidr;
using policy::CompiledPolicy;
using policy::IpFamily;
using policy::Rule;
using policy::RuleProto;

struct Shape {
  uint8_t l4_mask;
  uint8_t flags;
};

Shape shape_of(RuleProto proto) {
  switch (proto) {
    case RuleProto::https:
      return {PC_L4_TCP | PC_L4_UDP, PC_RULE_NEEDS_L7};
    case RuleProto::tls:
    case RuleProto::http:
    case RuleProto::ssh:
      return {PC_L4_TCP, PC_RULE_NEEDS_L7};
    case RuleProto::quic:
      return {PC_L4_UDP, PC_RULE_NEEDS_L7};
    case RuleProto::ftp:
    case RuleProto::tcp:
      return {PC_L4_TCP, 0};
    case RuleProto::udp:
      return {PC_L4_UDP, 0};
    case RuleProto::dns:
      return {PC_L4_TCP | PC_L4_UDP, PC_RULE_DNS};
    case RuleProto::icmp:
      return {PC_L4_ICMP | PC_L4_ICMPV6, 0};
    case RuleProto::any:
      return {PC_L4_ALL, 0};
  }
  return {0, 0};
}

}  // namespace

uint8_t l4_mask_of(RuleProto proto) {
  return shape_of(proto).l4_mask;
}

namespace {

void append_entries(const Rule& rule, uint32_t rule_id, uint8_t extra_flags, std::vector<pc_rule_entry>& out) {
  const Shape shape = shape_of(rule.proto);
  const uint8_t flags = shape.flags | extra_flags | (rule.action == policy::Action::deny ? PC_RULE_DENY : 0);
  const auto add = [&](uint8_t l4_mask, uint16_t lo, uint16_t hi) {
    out.push_back(pc_rule_entry{rule_id, flags, l4_mask, lo, hi, 0});
  };
  if (rule.proto == RuleProto::icmp) {
    for (const policy::IcmpType& type : rule.icmp_types) {
      if (type.v4_type >= 0) add(PC_L4_ICMP, static_cast<uint16_t>(type.v4_type), static_cast<uint16_t>(type.v4_type));
      if (type.v6_type >= 0)
        add(PC_L4_ICMPV6, static_cast<uint16_t>(type.v6_type), static_cast<uint16_t>(type.v6_type));
    }
  } else if (rule.ports.empty()) {
    add(shape.l4_mask, 0, 0xffff);
  } else {
    for (const policy::PortRange& range : rule.ports) add(shape.l4_mask, range.lo, range.hi);
  }
}

// Identical rule sets are stored once: most prefixes of a large policy share theirs.
class RuleSetTable {
 public:
  explicit RuleSetTable(PolicyTables& tables) : tables_(tables) {
    tables_.rule_sets.push_back(pc_rule_set{});  // PC_RULE_SET_EMPTY
  }

  uint32_t intern(const std::vector<pc_rule_entry>& entries) {
    if (entries.empty()) return PC_RULE_SET_EMPTY;
    std::string key(reinterpret_cast<const char*>(entries.data()), entries.size() * sizeof(pc_rule_entry));
    const auto [it, inserted] = ids_.emplace(std::move(key), static_cast<uint32_t>(tables_.rule_sets.size()));
    if (!inserted) return it->second;
    pc_rule_set set{};
    if (entries.size() > PC_RULE_SET_CAPACITY) {
      set.count = PC_RULE_SET_OVERFLOW;
      ++tables_.overflowing_rule_sets;
    } else {
      set.count = static_cast<uint32_t>(entries.size());
      std::copy(entries.begin(), entries.end(), set.entries);
    }
    tables_.rule_sets.push_back(set);
    return it->second;
  }

 private:
  PolicyTables& tables_;
  std::map<std::string, uint32_t> ids_;
};

uint32_t scope_of(const Rule& rule) {
  return rule.group ? group_scope(*rule.group) : static_cast<uint32_t>(PC_SCOPE_TOP_LEVEL);
}

template <typename Key>
Key dst_key(uint32_t scope, const Cidr& cidr) {
  Key key{};
  key.prefixlen = 32 + cidr.prefix_len;
  key.scope = htonl(scope);
  std::memcpy(key.addr, cidr.network.bytes.data(), sizeof(key.addr));
  return key;
}

template <typename Key>
Key src_key(const Cidr& cidr) {
  Key key{};
  key.prefixlen = cidr.prefix_len;
  std::memcpy(key.addr, cidr.network.bytes.data(), sizeof(key.addr));
  return key;
}

void build_scope(const CompiledPolicy& policy, uint32_t scope, RuleSetTable& sets, PolicyTables& tables) {
  const std::vector<Rule>& rules = policy.rules();
  policy::PrefixMatcher prefixes;
  std::vector<Cidr> distinct;
  std::vector<pc_rule_entry> name_entries;
  for (uint32_t id = 0; id < rules.size(); ++id) {
    if (scope_of(rules[id]) != scope) continue;
    bool by_name = false;
    for (const policy::Destination& dst : rules[id].destinations) {
      if (const auto* cidr = std::get_if<Cidr>(&dst)) {
        prefixes.add(*cidr, id);
        if (std::find(distinct.begin(), distinct.end(), *cidr) == distinct.end()) distinct.push_back(*cidr);
      } else if (policy::proto_matches_shown_name(rules[id].proto) || rules[id].action == policy::Action::allow) {
        // A name: the flow's SNI or Host must show it, or DNS must have bound the flow's address to it. The
        // daemon knows both; to the data plane such a rule could match any address, so it makes the flow
        // wait for the daemon. Not a deny of another protocol than tls, https, quic or http: it would make
        // every flow of its protocols wait, and applies to those the daemon decides anyway.
        by_name = true;
      }
    }
    if (by_name) append_entries(rules[id], id, PC_RULE_BY_NAME, name_entries);
  }
  tables.scopes[scope].name_rule_set = sets.intern(name_entries);

  std::vector<uint32_t> ids;
  std::vector<pc_rule_entry> entries;
  for (const Cidr& cidr : distinct) {
    // Every rule of the scope whose prefixes contain this one applies to addresses under it.
    ids.clear();
    prefixes.for_each_containing(cidr, [&](uint32_t id) { ids.push_back(id); });
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    entries.clear();
    for (uint32_t id : ids) append_entries(rules[id], id, 0, entries);
    const uint32_t set = sets.intern(entries);
    if (cidr.network.family == IpFamily::v4) {
      tables.dst4.emplace_back(dst_key<pc_dst4_key>(scope, cidr), set);
    } else {
      tables.dst6.emplace_back(dst_key<pc_dst6_key>(scope, cidr), set);
    }
  }
}

}  // namespace

PolicyTables build_policy_tables(const CompiledPolicy& policy, policy::Mode mode, uint32_t generation) {
  PolicyTables tables;
  RuleSetTable sets(tables);
  const size_t groups = policy.policy().groups.size();
  tables.scopes.resize(groups + 1);
  for (uint32_t scope = 0; scope <= groups; ++scope) build_scope(policy, scope, sets, tables);

  for (size_t g = 0; g < groups; ++g) {
    for (const Cidr& source : policy.policy().groups[g].sources) {
      if (source.network.family == IpFamily::v4) {
        tables.src4.emplace_back(src_key<pc_src4_key>(source), group_scope(g));
      } else {
        tables.src6.emplace_back(src_key<pc_src6_key>(source), group_scope(g));
      }
    }
  }

  const policy::Defaults& defaults = policy.policy().defaults;
  tables.config.mode = mode == policy::Mode::gateway ? PC_MODE_GATEWAY : PC_MODE_HOST;
  tables.config.default_action = defaults.action == policy::Action::allow ? PC_ACTION_ALLOW : PC_ACTION_DENY;
  tables.config.on_deny_reject = defaults.on_deny == policy::OnDeny::reject ? 1 : 0;
  tables.config.filter_queries = policy.policy().dns.filter_queries ? 1 : 0;
  tables.config.generation = generation;
  return tables;
}

}  // namespace portcullis::dataplane
