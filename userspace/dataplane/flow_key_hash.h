// Hashing and comparing the data plane's flow keys (include/portcullis/packet.h) in userspace tables: the
// daemon's pending flows and flow table, DNS answer streams. Every key is made with its padding zeroed
// (pc_flow_key_fill), as the kernel's hash needs too, so the bytes compare whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "portcullis/packet.h"

namespace portcullis::dataplane {

struct FlowKeyHash {
  size_t operator()(const pc_flow_key& key) const noexcept {
    // The key's five 64-bit words, mixed as splitmix64 does.
    static_assert(sizeof(pc_flow_key) == 5 * sizeof(uint64_t));
    uint64_t words[5];
    std::memcpy(words, &key, sizeof(words));
    uint64_t hash = 0x9e3779b97f4a7c15ULL;
    for (const uint64_t word : words) {
      hash ^= word + 0x9e3779b97f4a7c15ULL + (hash << 6) + (hash >> 2);
      hash = (hash ^ (hash >> 30)) * 0xbf58476d1ce4e5b9ULL;
      hash = (hash ^ (hash >> 27)) * 0x94d049bb133111ebULL;
    }
    return static_cast<size_t>(hash ^ (hash >> 31));
  }
};

struct FlowKeyEqual {
  bool operator()(const pc_flow_key& a, const pc_flow_key& b) const noexcept {
    return std::memcmp(&a, &b, sizeof(a)) == 0;  // NOLINT(bugprone-suspicious-memory-comparison)
  }
};

}  // namespace portcullis::dataplane
