// IPv4/IPv6 addresses and prefixes as the policy and its matchers use them.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portcullis::policy {

enum class IpFamily : uint8_t { v4, v6 };

// An address of one family. IPv4 uses the first four bytes; the rest stay zero so that
// addresses compare and hash by value.
struct IpAddress {
  IpFamily family = IpFamily::v4;
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> parse(std::string_view text);
  static IpAddress v4(uint32_t host_order);

  size_t width_bits() const { return family == IpFamily::v4 ? 32 : 128; }
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address for every policy decision.
  IpAddress unmapped() const;
  bool is_loopback() const;
  std::string to_string() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// A prefix in canonical form: host bits are zero.
struct Cidr {
  IpAddress network;
  uint8_t prefix_len = 0;

  // Accepts "ADDR" (a host prefix) and "ADDR/LEN". Host bits set below the prefix are an error, because
  // "10.1.2.3/8" usually means the author meant something else.
  struct ParseResult;
  static ParseResult parse(std::string_view text);

  bool contains(const IpAddress& address) const;
  bool contains(const Cidr& other) const;
  bool overlaps(const Cidr& other) const;
  std::string to_string() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;
};

struct Cidr::ParseResult {
  std::optional<Cidr> cidr;
  std::string error;
};

// Zeroes the bits of `address` below `prefix_len`.
IpAddress mask_address(const IpAddress& address, uint8_t prefix_len);

struct IpAddressHash {
  size_t operator()(const IpAddress& address) const;
};

}  // namespace portcullis::policy
