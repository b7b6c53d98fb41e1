// What userspace reads of a frame after the shared parser (include/portcullis/parse.h) has: addresses as policy
// addresses, the L4 payload, a TCP segment's sequence number. Header-only, for the daemon, replay and tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "policy/ip_address.h"
#include "portcullis/packet.h"

namespace portcullis::dataplane {

inline policy::IpAddress address_of(const union pc_addr& addr, uint8_t family) {
  policy::IpAddress address;
  address.family = family == PC_FAMILY_IPV6 ? policy::IpFamily::v6 : policy::IpFamily::v4;
  std::memcpy(address.bytes.data(), addr.bytes, family == PC_FAMILY_IPV6 ? 16 : 4);
  return address;
}

// The inverse: an address as the data plane's keys hold it, and its family.
inline union pc_addr pc_addr_of(const policy::IpAddress& address) {
  union pc_addr addr {};
  std::memcpy(addr.bytes, address.bytes.data(), address.family == policy::IpFamily::v6 ? 16 : 4);
  return addr;
}

inline uint8_t family_of(const policy::IpAddress& address) {
  return address.family == policy::IpFamily::v6 ? PC_FAMILY_IPV6 : PC_FAMILY_IPV4;
}

// The L4 payload the headers declare, cut to the bytes the frame holds.
inline std::span<const uint8_t> payload_of(const pc_packet& pkt, std::span<const uint8_t> frame) {
  const size_t end = std::min<size_t>(frame.size(), size_t{pkt.payload_off} + pkt.payload_len);
  return pkt.payload_off <= end ? frame.subspan(pkt.payload_off, end - pkt.payload_off) : std::span<const uint8_t>{};
}

// The sequence number of a TCP segment, or nullopt when the frame does not hold it.
inline std::optional<uint32_t> tcp_seq(const pc_packet& pkt, std::span<const uint8_t> frame) {
  if (pkt.l4_off + 8u > frame.size()) return std::nullopt;
  const uint8_t* p = frame.data() + pkt.l4_off + 4;
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 |
         p[3];
}

}  // namespace portcullis::dataplane
