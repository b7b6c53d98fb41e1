// Test support: builds packets as bytes, from Ethernet to payload, with the lengths and checksums a
// real stack would write, and lets a test override any field it needs broken.
//
//   Bytes frame = PacketBuilder()
//                     .ipv4({.src = ipv4_address("10.0.0.1"), .dst = ipv4_address("198.18.0.10")})
//                     .tcp({.sport = 40000, .dport = 443, .flags = kTcpSyn})
//                     .frame();
//
// Layers are given outermost first: VLAN tags, then one network layer (IPv4, IPv6 with its extension
// headers in order, or a non-IP EtherType), then one transport layer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

namespace portcullis::test {

using Bytes = std::vector<uint8_t>;
using Ipv4Address = std::array<uint8_t, 4>;
using Ipv6Address = std::array<uint8_t, 16>;

// Text to address; throws std::invalid_argument on anything that is not one.
[[nodiscard]] Ipv4Address ipv4_address(std::string_view text);
[[nodiscard]] Ipv6Address ipv6_address(std::string_view text);

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;  // 802.1Q
inline constexpr uint16_t kEtherTypeQinQ = 0x88A8;  // 802.1ad
inline constexpr uint16_t kEtherTypeIpv6 = 0x86DD;

inline constexpr uint8_t kProtoHopByHop = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoGre = 47;
inline constexpr uint8_t kProtoAuthentication = 51;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoNoNextHeader = 59;
inline constexpr uint8_t kProtoDestinationOptions = 60;

inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpDestUnreachable = 3;
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmpv6DestUnreachable = 1;
inline constexpr uint8_t kIcmpv6PacketTooBig = 2;
inline constexpr uint8_t kIcmpv6EchoRequest = 128;
inline constexpr uint8_t kIcmpv6EchoReply = 129;
inline constexpr uint8_t kIcmpv6NeighborSolicitation = 135;

struct Ipv4 {
  Ipv4Address src{};
  Ipv4Address dst{};
  uint16_t id = 0;
  bool dont_fragment = false;
  bool more_fragments = false;
  uint16_t fragment_offset = 0;  // in 8-byte units, as on the wire
  uint8_t ttl = 64;
  Bytes options;  // padded with End of Options List to a multiple of 4
  // For malformed packets: values the builder would otherwise derive.
  std::optional<uint8_t> version;
  std::optional<uint8_t> ihl;
  std::optional<uint16_t> total_length;
};

struct Ipv6 {
  Ipv6Address src{};
  Ipv6Address dst{};
  uint8_t hop_limit = 64;
  std::optional<uint8_t> version;
  std::optional<uint16_t> payload_length;
};

// Hop-by-hop, routing or destination options (length a multiple of 8, at least 8), or
// authentication (a multiple of 4, at least 12).
struct Ipv6Extension {
  uint8_t type = kProtoDestinationOptions;
  size_t length = 8;  // the whole header
};

struct Ipv6Fragment {
  uint16_t offset = 0;  // in 8-byte units
  bool more_fragments = false;
  uint32_t id = 0;
};

struct Tcp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint8_t flags = kTcpSyn;
  uint32_t seq = 1;
  uint32_t ack = 0;
  Bytes options;  // padded with End of Option List to a multiple of 4
  Bytes payload;
  std::optional<uint8_t> data_offset;  // in 32-bit words
};

struct Udp {
  uint16_t sport = 0;
  uint16_t dport = 0;
  Bytes payload;
  std::optional<uint16_t> length;
};

// ICMP over IPv4, ICMPv6 over IPv6. `rest` is the header's second word: identifier and sequence
// number of an echo (see echo_word), the MTU of a packet too big, zero for the other errors.
struct Icmp {
  uint8_t type = 0;
  uint8_t code = 0;
  uint32_t rest = 0;
  Bytes body;  // echo data, or the packet an error quotes
};

// Any other protocol's bytes, or the data of a non-first fragment, behind the network layer as given.
struct RawL4 {
  uint8_t protocol = 0;
  Bytes bytes;
};

[[nodiscard]] constexpr uint32_t echo_word(uint16_t id, uint16_t sequence) {
  return (static_cast<uint32_t>(id) << 16) | sequence;
}

class PacketBuilder {
 public:
  PacketBuilder& vlan(uint16_t id, uint16_t tpid = kEtherTypeVlan);
  PacketBuilder& non_ip(uint16_t ethertype, Bytes l3);
  PacketBuilder& arp();  // an ARP request
  PacketBuilder& ipv4(Ipv4 header);
  PacketBuilder& ipv6(Ipv6 header);
  PacketBuilder& extension(Ipv6Extension header);
  PacketBuilder& fragment(Ipv6Fragment header);
  PacketBuilder& tcp(Tcp segment);
  PacketBuilder& udp(Udp datagram);
  PacketBuilder& icmp(Icmp message);
  PacketBuilder& l4(RawL4 data);

  [[nodiscard]] Bytes frame() const;      // the Ethernet frame
  [[nodiscard]] Bytes ip_packet() const;  // from the IP header on: what an ICMP error quotes

 private:
  struct VlanTag {
    uint16_t tpid;
    uint16_t id;
  };
  struct NonIp {
    uint16_t ethertype;
    Bytes bytes;
  };
  using Network = std::variant<std::monostate, Ipv4, Ipv6, NonIp>;
  using Extension = std::variant<Ipv6Extension, Ipv6Fragment>;
  using Transport = std::variant<std::monostate, Tcp, Udp, Icmp, RawL4>;

  [[nodiscard]] static uint8_t extension_type(const Extension& extension);
  [[nodiscard]] uint8_t transport_protocol() const;
  [[nodiscard]] Bytes transport_bytes(const Bytes& pseudo_header_addresses) const;

  std::vector<VlanTag> vlans_;
  Network network_;
  std::vector<Extension> extensions_;
  Transport transport_;
};

// The first `length` bytes (all of them when shorter): a truncated frame, or the part of a packet an
// ICMP error quotes.
[[nodiscard]] Bytes head(const Bytes& bytes, size_t length);

// Pads with zeros to Ethernet's 60-byte minimum, as a NIC does to a short frame.
[[nodiscard]] Bytes pad_to_minimum_frame(Bytes frame);

}  // namespace portcullis::test
