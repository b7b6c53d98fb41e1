#include "policy/ip_address.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace portcullis::policy {
namespace {

constexpr std::array<uint8_t, 12> kV4MappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  // inet_pton needs a terminated string; anything longer than an IPv6 text form is not an address.
  char buffer[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buffer)) return std::nullopt;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';

  IpAddress address;
  if (inet_pton(AF_INET, buffer, address.bytes.data()) == 1) {
    address.family = IpFamily::v4;
    return address;
  }
  if (inet_pton(AF_INET6, buffer, address.bytes.data()) == 1) {
    address.family = IpFamily::v6;
    return address;
  }
  return std::nullopt;
}

IpAddress IpAddress::v4(uint32_t host_order) {
  IpAddress address;
  address.family = IpFamily::v4;
  address.bytes[0] = static_cast<uint8_t>(host_order >> 24);
  address.bytes[1] = static_cast<uint8_t>(host_order >> 16);
  address.bytes[2] = static_cast<uint8_t>(host_order >> 8);
  address.bytes[3] = static_cast<uint8_t>(host_order);
  return address;
}

IpAddress IpAddress::unmapped() const {
  if (family != IpFamily::v6 || std::memcmp(bytes.data(), kV4MappedPrefix.data(), kV4MappedPrefix.size()) != 0) {
    return *this;
  }
  IpAddress v4_address;
  v4_address.family = IpFamily::v4;
  std::memcpy(v4_address.bytes.data(), bytes.data() + 12, 4);
  return v4_address;
}

bool IpAddress::is_loopback() const {
  const IpAddress address = unmapped();
  if (address.family == IpFamily::v4) return address.bytes[0] == 127;
  static constexpr std::array<uint8_t, 16> kLoopback6 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return address.bytes == kLoopback6;
}

std::string IpAddress::to_string() const {
  char buffer[INET6_ADDRSTRLEN];
  const int af = family == IpFamily::v4 ? AF_INET : AF_INET6;
  if (inet_ntop(af, bytes.data(), buffer, sizeof(buffer)) == nullptr) return "?";
  return buffer;
}

IpAddress mask_address(const IpAddress& address, uint8_t prefix_len) {
  IpAddress masked = address;
  const size_t width_bytes = address.width_bits() / 8;
  size_t byte = prefix_len / 8;
  if (byte >= width_bytes) return masked;
  if (const unsigned partial = prefix_len % 8; partial != 0) {
    masked.bytes[byte++] &= static_cast<uint8_t>(0xffu << (8 - partial));
  }
  std::memset(masked.bytes.data() + byte, 0, width_bytes - byte);
  return masked;
}

Cidr::ParseResult Cidr::parse(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  std::optional<IpAddress> address = IpAddress::parse(address_text);
  if (!address) return {std::nullopt, "'" + std::string(address_text) + "' is not an IPv4 or IPv6 address"};

  // A v4-mapped prefix is the IPv4 prefix it maps, so that it matches the same flows.
  const IpAddress plain = address->unmapped();
  const bool was_mapped = plain.family != address->family;
  const size_t width = address->width_bits();

  size_t prefix_len = width;
  if (slash != std::string_view::npos) {
    const std::string_view len_text = text.substr(slash + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), value);
    if (len_text.empty() || ec != std::errc() || end != len_text.data() + len_text.size() || value > width) {
      return {std::nullopt, "'" + std::string(len_text) + "' is not a prefix length for " +
                                (width == 32 ? "IPv4 (0-32)" : "IPv6 (0-128)")};
    }
    prefix_len = value;
  }
  if (was_mapped) {
    if (prefix_len < 96) return {std::nullopt, "an IPv4-mapped prefix must be /96 or longer"};
    prefix_len -= 96;
  }

  Cidr cidr{mask_address(plain, static_cast<uint8_t>(prefix_len)), static_cast<uint8_t>(prefix_len)};
  if (!(cidr.network == plain)) {
    return {std::nullopt, "'" + std::string(text) + "' has host bits set; did you mean " + cidr.to_string() + "?"};
  }
  return {cidr, {}};
}

bool Cidr::contains(const IpAddress& address) const {
  const IpAddress plain = address.unmapped();
  return plain.family == network.family && mask_address(plain, prefix_len) == network;
}

bool Cidr::contains(const Cidr& other) const {
  return other.network.family == network.family && other.prefix_len >= prefix_len && contains(other.network);
}

bool Cidr::overlaps(const Cidr& other) const {
  return contains(other) || other.contains(*this);
}

std::string Cidr::to_string() const {
  return network.to_string() + "/" + std::to_string(prefix_len);
}

size_t IpAddressHash::operator()(const IpAddress& address) const {
  // FNV-1a over the bytes: cheap, and good enough for prefixes that differ in any byte.
  uint64_t hash = 1469598103934665603ull ^ static_cast<uint64_t>(address.family);
  for (uint8_t byte : address.bytes) {
    hash ^= byte;
    hash *= 1099511628211ull;
  }
  return static_cast<size_t>(hash);
}

}  // namespace portcullis::policy
