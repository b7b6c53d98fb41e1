// Finds the name patterns that match a host name with one hash lookup per label of the name, however many
// patterns there are.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/domain_name.h"
#include "policy/policy.h"

namespace portcullis::policy {

class DomainMatcher {
 public:
  void add(const NamePattern& pattern, uint32_t value);

  // Calls visit(value) for every added pattern that matches the normalized `name`.
  template <typename Visit>
  void match(std::string_view name, Visit&& visit) const;

  // Calls visit(kind, value) for every added pattern whose domain is `domain` or one of its ancestors:
  // the only patterns that can cover a pattern on `domain`.
  template <typename Visit>
  void for_each_at_or_above(std::string_view domain, Visit&& visit) const;

  size_t domain_count() const { return by_domain_.size(); }

 private:
  struct Entries {
    std::vector<uint32_t> exact;
    std::vector<uint32_t> one_label;
    std::vector<uint32_t> any_depth;
    std::vector<uint32_t> apex_and_below;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };

  const Entries* find(std::string_view domain) const {
    const auto it = by_domain_.find(domain);
    return it == by_domain_.end() ? nullptr : &it->second;
  }

  std::unordered_map<std::string, Entries, StringHash, std::equal_to<>> by_domain_;
};

template <typename Visit>
void DomainMatcher::match(std::string_view name, Visit&& visit) const {
  // The name itself holds exact and apex patterns, its parent one-label patterns, and every proper
  // ancestor any-depth and apex-and-below patterns.
  size_t depth = 0;
  for (std::string_view suffix = name; !suffix.empty(); suffix = parent_domain(suffix), ++depth) {
    const Entries* entries = find(suffix);
    if (entries == nullptr) continue;
    if (depth == 0) {
      for (uint32_t value : entries->exact) visit(value);
    } else {
      if (depth == 1) {
        for (uint32_t value : entries->one_label) visit(value);
      }
      for (uint32_t value : entries->any_depth) visit(value);
    }
    for (uint32_t value : entries->apex_and_below) visit(value);
  }
}

template <typename Visit>
void DomainMatcher::for_each_at_or_above(std::string_view domain, Visit&& visit) const {
  for (std::string_view suffix = domain; !suffix.empty(); suffix = parent_domain(suffix)) {
    const Entries* entries = find(suffix);
    if (entries == nullptr) continue;
    for (uint32_t value : entries->exact) visit(NamePattern::Kind::exact, value);
    for (uint32_t value : entries->one_label) visit(NamePattern::Kind::one_label, value);
    for (uint32_t value : entries->any_depth) visit(NamePattern::Kind::any_depth, value);
    for (uint32_t value : entries->apex_and_below) visit(NamePattern::Kind::apex_and_below, value);
  }
}

}  // namespace portcullis::policy
