#include "packet_builder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace portcullis::test {
namespace {

constexpr size_t kEthernetMinimumFrame = 60;

void put16(Bytes& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

void put32(Bytes& out, uint32_t value) {
  put16(out, static_cast<uint16_t>(value >> 16));
  put16(out, static_cast<uint16_t>(value));
}

void append(Bytes& out, const Bytes& bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void set16(Bytes& out, size_t offset, uint16_t value) {
  out[offset] = static_cast<uint8_t>(value >> 8);
  out[offset + 1] = static_cast<uint8_t>(value);
}

Bytes padded_to_words(Bytes options) {
  while (options.size() % 4 != 0) options.push_back(0);  // End of Option List
  return options;
}

// The Internet checksum (RFC 1071) over the concatenation of the parts.
uint16_t internet_checksum(std::initializer_list<const Bytes*> parts) {
  uint32_t sum = 0;
  size_t position = 0;
  for (const Bytes* part : parts) {
    for (uint8_t byte : *part) {
      sum += (position % 2 == 0) ? static_cast<uint32_t>(byte) << 8 : byte;
      ++position;
    }
  }
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

}  // namespace

Ipv4Address ipv4_address(std::string_view text) {
  Ipv4Address address{};
  if (inet_pton(AF_INET, std::string(text).c_str(), address.data()) != 1)
    throw std::invalid_argument("not an IPv4 address: " + std::string(text));
  return address;
}

Ipv6Address ipv6_address(std::string_view text) {
  Ipv6Address address{};
  if (inet_pton(AF_INET6, std::string(text).c_str(), address.data()) != 1)
    throw std::invalid_argument("not an IPv6 address: " + std::string(text));
  return address;
}

PacketBuilder& PacketBuilder::vlan(uint16_t id, uint16_t tpid) {
  vlans_.push_back({tpid, id});
  return *this;
}

PacketBuilder& PacketBuilder::non_ip(uint16_t ethertype, Bytes l3) {
  network_ = NonIp{ethertype, std::move(l3)};
  return *this;
}

PacketBuilder& PacketBuilder::arp() {
  Bytes request = {0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01};  // Ethernet, IPv4, request
  const Bytes addresses = {0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2};
  append(request, addresses);
  return non_ip(kEtherTypeArp, std::move(request));
}

PacketBuilder& PacketBuilder::ipv4(Ipv4 header) {
  network_ = std::move(header);
  return *this;
}

PacketBuilder& PacketBuilder::ipv6(Ipv6 header) {
  network_ = std::move(header);
  return *this;
}

PacketBuilder& PacketBuilder::extension(Ipv6Extension header) {
  extensions_.emplace_back(header);
  return *this;
}

PacketBuilder& PacketBuilder::fragment(Ipv6Fragment header) {
  extensions_.emplace_back(header);
  return *this;
}

PacketBuilder& PacketBuilder::tcp(Tcp segment) {
  transport_ = std::move(segment);
  return *this;
}

PacketBuilder& PacketBuilder::udp(Udp datagram) {
  transport_ = std::move(datagram);
  return *this;
}

PacketBuilder& PacketBuilder::icmp(Icmp message) {
  transport_ = std::move(message);
  return *this;
}

PacketBuilder& PacketBuilder::l4(RawL4 data) {
  transport_ = std::move(data);
  return *this;
}

uint8_t PacketBuilder::extension_type(const Extension& extension) {
  if (const auto* ext = std::get_if<Ipv6Extension>(&extension)) return ext->type;
  return kProtoFragment;
}

uint8_t PacketBuilder::transport_protocol() const {
  if (std::holds_alternative<Tcp>(transport_)) return kProtoTcp;
  if (std::holds_alternative<Udp>(transport_)) return kProtoUdp;
  if (std::holds_alternative<Icmp>(transport_))
    return std::holds_alternative<Ipv6>(network_) ? kProtoIcmpv6 : kProtoIcmp;
  if (const auto* raw = std::get_if<RawL4>(&transport_)) return raw->protocol;
  return kProtoNoNextHeader;
}

// pseudo_header_addresses: source and destination as the checksum's pseudo-header holds them.
Bytes PacketBuilder::transport_bytes(const Bytes& pseudo_header_addresses) const {
  const bool over_ipv6 = std::holds_alternative<Ipv6>(network_);
  auto pseudo_header = [&](size_t length, uint8_t protocol) {
    Bytes header = pseudo_header_addresses;
    if (over_ipv6) {
      put32(header, static_cast<uint32_t>(length));
      header.insert(header.end(), {0, 0, 0, protocol});
    } else {
      header.insert(header.end(), {0, protocol});
      put16(header, static_cast<uint16_t>(length));
    }
    return header;
  };

  Bytes out;
  if (const auto* tcp = std::get_if<Tcp>(&transport_)) {
    const Bytes options = padded_to_words(tcp->options);
    const uint8_t data_offset = tcp->data_offset.value_or(static_cast<uint8_t>((20 + options.size()) / 4));
    put16(out, tcp->sport);
    put16(out, tcp->dport);
    put32(out, tcp->seq);
    put32(out, tcp->ack);
    out.push_back(static_cast<uint8_t>(data_offset << 4));
    out.push_back(tcp->flags);
    put16(out, 65535);  // window
    put16(out, 0);      // checksum
    put16(out, 0);      // urgent pointer
    append(out, options);
    append(out, tcp->payload);
    const Bytes pseudo = pseudo_header(out.size(), kProtoTcp);
    set16(out, 16, internet_checksum({&pseudo, &out}));
  } else if (const auto* udp = std::get_if<Udp>(&transport_)) {
    put16(out, udp->sport);
    put16(out, udp->dport);
    put16(out, udp->length.value_or(static_cast<uint16_t>(8 + udp->payload.size())));
    put16(out, 0);
    append(out, udp->payload);
    const Bytes pseudo = pseudo_header(out.size(), kProtoUdp);
    const uint16_t checksum = internet_checksum({&pseudo, &out});
    set16(out, 6, checksum == 0 ? 0xFFFF : checksum);  // 0 means "no checksum"
  } else if (const auto* icmp = std::get_if<Icmp>(&transport_)) {
    out.push_back(icmp->type);
    out.push_back(icmp->code);
    put16(out, 0);
    put32(out, icmp->rest);
    append(out, icmp->body);
    if (over_ipv6) {
      const Bytes pseudo = pseudo_header(out.size(), kProtoIcmpv6);
      set16(out, 2, internet_checksum({&pseudo, &out}));
    } else {
      set16(out, 2, internet_checksum({&out}));
    }
  } else if (const auto* raw = std::get_if<RawL4>(&transport_)) {
    out = raw->bytes;
  }
  return out;
}

Bytes PacketBuilder::ip_packet() const {
  Bytes out;
  if (const auto* ip = std::get_if<Ipv4>(&network_)) {
    Bytes addresses(ip->src.begin(), ip->src.end());
    addresses.insert(addresses.end(), ip->dst.begin(), ip->dst.end());
    const Bytes transport = transport_bytes(addresses);
    const Bytes options = padded_to_words(ip->options);
    const size_t header_length = 20 + options.size();
    const uint16_t flags_offset = static_cast<uint16_t>((ip->dont_fragment ? 0x4000 : 0) |
                                                        (ip->more_fragments ? 0x2000 : 0) | ip->fragment_offset);
    out.push_back(static_cast<uint8_t>((ip->version.value_or(4) << 4) |
                                       ip->ihl.value_or(static_cast<uint8_t>(header_length / 4))));
    out.push_back(0);  // DSCP, ECN
    put16(out, ip->total_length.value_or(static_cast<uint16_t>(header_length + transport.size())));
    put16(out, ip->id);
    put16(out, flags_offset);
    out.push_back(ip->ttl);
    out.push_back(transport_protocol());
    put16(out, 0);  // checksum
    append(out, addresses);
    append(out, options);
    set16(out, 10, internet_checksum({&out}));
    append(out, transport);
  } else if (const auto* ip6 = std::get_if<Ipv6>(&network_)) {
    Bytes addresses(ip6->src.begin(), ip6->src.end());
    addresses.insert(addresses.end(), ip6->dst.begin(), ip6->dst.end());
    const Bytes transport = transport_bytes(addresses);

    // Each header names the one after it; the last names the transport.
    std::vector<uint8_t> next_headers;
    for (size_t i = 1; i < extensions_.size(); ++i) next_headers.push_back(extension_type(extensions_[i]));
    next_headers.push_back(transport_protocol());

    Bytes chain;
    for (size_t i = 0; i < extensions_.size(); ++i) {
      const uint8_t next = next_headers[i];
      if (const auto* frag = std::get_if<Ipv6Fragment>(&extensions_[i])) {
        chain.insert(chain.end(), {next, 0});
        put16(chain, static_cast<uint16_t>((frag->offset << 3) | (frag->more_fragments ? 1 : 0)));
        put32(chain, frag->id);
        continue;
      }
      const auto& ext = std::get<Ipv6Extension>(extensions_[i]);
      const size_t start = chain.size();
      if (ext.type == kProtoAuthentication) {
        chain.insert(chain.end(), {next, static_cast<uint8_t>(ext.length / 4 - 2), 0, 0});
        put32(chain, 0x100);  // SPI
        put32(chain, 1);      // sequence number
      } else if (ext.type == kProtoRouting) {
        chain.insert(chain.end(), {next, static_cast<uint8_t>(ext.length / 8 - 1), 4, 0});  // SRH, none left
      } else {
        // Hop-by-hop and destination options: one PadN option fills the header.
        chain.insert(chain.end(),
                     {next, static_cast<uint8_t>(ext.length / 8 - 1), 1, static_cast<uint8_t>(ext.length - 4)});
      }
      chain.resize(start + ext.length, 0);
    }

    const uint8_t first_next = extensions_.empty() ? transport_protocol() : extension_type(extensions_.front());
    put32(out, static_cast<uint32_t>(ip6->version.value_or(6)) << 28);
    put16(out, ip6->payload_length.value_or(static_cast<uint16_t>(chain.size() + transport.size())));
    out.push_back(first_next);
    out.push_back(ip6->hop_limit);
    append(out, addresses);
    append(out, chain);
    append(out, transport);
  } else if (const auto* other = std::get_if<NonIp>(&network_)) {
    out = other->bytes;
  }
  return out;
}

Bytes PacketBuilder::frame() const {
  Bytes out = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};  // destination, source
  for (const VlanTag& tag : vlans_) {
    put16(out, tag.tpid);
    put16(out, tag.id);
  }
  uint16_t ethertype = 0;
  if (std::holds_alternative<Ipv4>(network_)) ethertype = kEtherTypeIpv4;
  if (std::holds_alternative<Ipv6>(network_)) ethertype = kEtherTypeIpv6;
  if (const auto* other = std::get_if<NonIp>(&network_)) ethertype = other->ethertype;
  put16(out, ethertype);
  append(out, ip_packet());
  return out;
}

Bytes head(const Bytes& bytes, size_t length) {
  return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(std::min(length, bytes.size())));
}

Bytes pad_to_minimum_frame(Bytes frame) {
  if (frame.size() < kEthernetMinimumFrame) frame.resize(kEthernetMinimumFrame, 0);
  return frame;
}

}  // namespace portcullis::test
