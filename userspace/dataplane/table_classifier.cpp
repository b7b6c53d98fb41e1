#include "dataplane/table_classifier.h"

#include <arpa/inet.h>

#include <cstring>

namespace portcullis::dataplane {
namespace {

template <typename Key>
policy::Cidr cidr_of(const Key& key, policy::IpFamily family, uint32_t scope_bits) {
  policy::Cidr cidr;
  cidr.network.family = family;
  std::memcpy(cidr.network.bytes.data(), key.addr, sizeof(key.addr));
  cidr.prefix_len = static_cast<uint8_t>(key.prefixlen - scope_bits);
  return cidr;
}

}  // namespace

TableClassifier::TableClassifier(PolicyTables tables) : tables_(std::move(tables)) {
  destinations_.resize(tables_.scopes.size());
  for (const auto& [key, set] : tables_.dst4) {
    destinations_.at(ntohl(key.scope)).add(cidr_of(key, policy::IpFamily::v4, 32), set);
  }
  for (const auto& [key, set] : tables_.dst6) {
    destinations_.at(ntohl(key.scope)).add(cidr_of(key, policy::IpFamily::v6, 32), set);
  }
  for (const auto& [key, scope] : tables_.src4) sources_.add(cidr_of(key, policy::IpFamily::v4, 0), scope);
  for (const auto& [key, scope] : tables_.src6) sources_.add(cidr_of(key, policy::IpFamily::v6, 0), scope);
}

uint32_t TableClassifier::scope_of_source(const policy::IpAddress& src) const {
  uint32_t scope = PC_SCOPE_TOP_LEVEL;
  sources_.match(src, [&](uint32_t value) { scope = value; });
  return scope;
}

const pc_rule_set* TableClassifier::name_rules(uint32_t scope) const {
  return scope < tables_.scopes.size() ? &tables_.rule_sets.at(tables_.scopes[scope].name_rule_set) : nullptr;
}

const pc_rule_set* TableClassifier::destination_rules(uint32_t scope, const policy::IpAddress& dst) const {
  if (scope >= destinations_.size()) return nullptr;
  // PrefixMatcher visits shorter prefixes first: the last one seen is the longest match.
  uint32_t set = PC_RULE_SET_EMPTY;
  bool found = false;
  destinations_[scope].match(dst, [&](uint32_t value) {
    set = value;
    found = true;
  });
  return found ? &tables_.rule_sets[set] : nullptr;
}

pc_decision TableClassifier::classify(const NewFlow& flow) const {
  const uint32_t scope = scope_of_source(flow.src);
  if (tables_.config.mode == PC_MODE_GATEWAY && scope == PC_SCOPE_TOP_LEVEL) {
    return pc_decision{PC_VERDICT_DENY, {}, PC_DROP_SOURCE_NOT_IN_GROUP, PC_RULE_NONE};
  }
  const pc_flow_facts facts{flow.l4_bit, 0, flow.port};
  pc_rule_scan scan{};
  pc_rule_scan_init(&scan);
  const policy::IpAddress dst = flow.dst.unmapped();
  pc_rule_scan_add(&scan, destination_rules(PC_SCOPE_TOP_LEVEL, dst), &facts);
  pc_rule_scan_add(&scan, name_rules(PC_SCOPE_TOP_LEVEL), &facts);
  if (scope != PC_SCOPE_TOP_LEVEL) {
    pc_rule_scan_add(&scan, destination_rules(scope, dst), &facts);
    pc_rule_scan_add(&scan, name_rules(scope), &facts);
  }
  return pc_decide(&scan, &facts, tables_.config.default_action);
}

}  // namespace portcullis::dataplane
