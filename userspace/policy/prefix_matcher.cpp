#include "policy/prefix_matcher.h"

#include <algorithm>

namespace portcullis::policy {

void PrefixMatcher::add(const Cidr& cidr, uint32_t value) {
  by_prefix_[Key{cidr.network, cidr.prefix_len}].push_back(value);
  std::vector<uint8_t>& in_use = cidr.network.family == IpFamily::v4 ? v4_lengths_ : v6_lengths_;
  const auto at = std::lower_bound(in_use.begin(), in_use.end(), cidr.prefix_len);
  if (at == in_use.end() || *at != cidr.prefix_len) in_use.insert(at, cidr.prefix_len);
}

}  // namespace portcullis::policy
