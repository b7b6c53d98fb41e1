// Finds every prefix that contains an address with one hash lookup per distinct prefix length in use.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "policy/ip_address.h"

namespace portcullis::policy {

class PrefixMatcher {
 public:
  void add(const Cidr& cidr, uint32_t value);

  // Calls visit(value) for every added prefix that contains `address` (IPv4-mapped IPv6 counts as IPv4).
  template <typename Visit>
  void match(const IpAddress& address, Visit&& visit) const;

  // Calls visit(value) for every added prefix that contains all of `cidr`.
  template <typename Visit>
  void for_each_containing(const Cidr& cidr, Visit&& visit) const;

  size_t prefix_count() const { return by_prefix_.size(); }

 private:
  struct Key {
    IpAddress network;
    uint8_t prefix_len;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const { return IpAddressHash{}(key.network) * 131 + key.prefix_len; }
  };

  const std::vector<uint32_t>* find(const IpAddress& address, uint8_t prefix_len) const {
    const auto it = by_prefix_.find(Key{mask_address(address, prefix_len), prefix_len});
    return it == by_prefix_.end() ? nullptr : &it->second;
  }
  const std::vector<uint8_t>& lengths(IpFamily family) const {
    return family == IpFamily::v4 ? v4_lengths_ : v6_lengths_;
  }

  std::unordered_map<Key, std::vector<uint32_t>, KeyHash> by_prefix_;
  std::vector<uint8_t> v4_lengths_;  // distinct prefix lengths in use, ascending
  std::vector<uint8_t> v6_lengths_;
};

template <typename Visit>
void PrefixMatcher::match(const IpAddress& address, Visit&& visit) const {
  const IpAddress plain = address.unmapped();
  for (uint8_t prefix_len : lengths(plain.family)) {
    if (const std::vector<uint32_t>* values = find(plain, prefix_len)) {
      for (uint32_t value : *values) visit(value);
    }
  }
}

template <typename Visit>
void PrefixMatcher::for_each_containing(const Cidr& cidr, Visit&& visit) const {
  for (uint8_t prefix_len : lengths(cidr.network.family)) {
    if (prefix_len > cidr.prefix_len) break;
    if (const std::vector<uint32_t>* values = find(cidr.network, prefix_len)) {
      for (uint32_t value : *values) visit(value);
    }
  }
}

}  // namespace portcullis::policy
