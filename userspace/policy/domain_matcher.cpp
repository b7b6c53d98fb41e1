#include "policy/domain_matcher.h"

namespace portcullis::policy {

void DomainMatcher::add(const NamePattern& pattern, uint32_t value) {
  Entries& entries = by_domain_[pattern.domain];
  switch (pattern.kind) {
    case NamePattern::Kind::exact:
      entries.exact.push_back(value);
      break;
    case NamePattern::Kind::one_label:
      entries.one_label.push_back(value);
      break;
    case NamePattern::Kind::any_depth:
      entries.any_depth.push_back(value);
      break;
    case NamePattern::Kind::apex_and_below:
      entries.apex_and_below.push_back(value);
      break;
  }
}

}  // namespace portcullis::policy
