#include "support/pcap_flows.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <tuple>

#include "parsers/byte_reader.h"

namespace portcullis::test {
namespace {

using parsers::ByteReader;

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint16_t kPppIpv4 = 0x0021;
constexpr uint16_t kPppIpv6 = 0x0057;
constexpr uint8_t kPppAddress = 0xff;
constexpr uint8_t kPppControl = 0x03;
constexpr uint8_t kIpProtoTcp = 6;
constexpr uint8_t kIpProtoUdp = 17;
constexpr uint8_t kIpv6HopByHop = 0;
constexpr uint8_t kIpv6Routing = 43;
constexpr uint8_t kIpv6Fragment = 44;
constexpr uint8_t kIpv6Auth = 51;
constexpr uint8_t kIpv6DestOptions = 60;
constexpr uint16_t kIpv4FragmentOffsetMask = 0x1fff;
constexpr uint16_t kIpv6FragmentOffsetMask = 0xfff8;
constexpr uint8_t kTcpFlagSyn = 0x02;
constexpr uint8_t kTcpFlagAck = 0x10;
constexpr size_t kIpv4MinHeaderLength = 20;
constexpr size_t kIpv6HeaderLength = 40;
constexpr size_t kTcpMinHeaderLength = 20;
constexpr size_t kUdpHeaderLength = 8;

using Bytes = std::span<const uint8_t>;

// ---- link layer --------------------------------------------------------------------------

bool is_supported_link_type(int link_type) {
  switch (link_type) {
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_NULL:
    case DLT_LOOP:
    case DLT_PPP:
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
      return true;
    default:
      return false;
  }
}

std::optional<Bytes> ip_if(bool is_ip, ByteReader& reader) {
  return is_ip ? std::optional<Bytes>(reader.rest()) : std::nullopt;
}

std::optional<Bytes> ip_after_ethertype(std::optional<uint16_t> type, ByteReader& reader) {
  return ip_if(type && (*type == kEtherTypeIpv4 || *type == kEtherTypeIpv6), reader);
}

std::optional<Bytes> ip_in_ethernet(ByteReader reader) {
  auto type = reader.skip(12) ? reader.u16() : std::nullopt;  // after destination and source MACs
  while (type && (*type == kEtherTypeVlan || *type == kEtherTypeQinQ)) {
    type = reader.skip(2) ? reader.u16() : std::nullopt;  // after the tag control field
  }
  return ip_after_ethertype(type, reader);
}

std::optional<Bytes> ip_in_ppp(Bytes frame) {
  ByteReader reader(frame);
  // Address and control bytes are omitted when address/control field compression is on.
  if (frame.size() >= 2 && frame[0] == kPppAddress && frame[1] == kPppControl) {
    (void)reader.skip(2);
  }
  const auto protocol = reader.u16();
  return ip_if(protocol && (*protocol == kPppIpv4 || *protocol == kPppIpv6), reader);
}

// The IP packet a frame carries, or nullopt for anything else (ARP, LLDP, ...).
std::optional<Bytes> strip_link_layer(int link_type, Bytes frame) {
  ByteReader reader(frame);
  switch (link_type) {
    case DLT_EN10MB:
      return ip_in_ethernet(reader);
    case DLT_LINUX_SLL: {
      const auto protocol = reader.skip(14) ? reader.u16() : std::nullopt;
      return ip_after_ethertype(protocol, reader);
    }
    case DLT_LINUX_SLL2: {
      const auto protocol = reader.u16();
      return ip_after_ethertype(reader.skip(18) ? protocol : std::nullopt, reader);
    }
    case DLT_NULL:
    case DLT_LOOP:
      // The family is in the capturing host's byte order with per-OS values; the IP version
      // nibble that follows says the same thing portably.
      return ip_if(reader.skip(4), reader);
    case DLT_PPP:
      return ip_in_ppp(frame);
    default:
      return frame;  // raw IP link types
  }
}

// ---- network layer -----------------------------------------------------------------------

struct IpPacket {
  std::string source;
  std::string destination;
  uint8_t protocol = 0;
  Bytes payload;
};

std::string format_address(int family, Bytes address) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, address.data(), text, sizeof(text));
  return text;
}

// Bytes past the IP length are link-layer padding (Ethernet pads short frames to 60 bytes).
Bytes trim_to_length(Bytes payload, size_t length) {
  return payload.first(std::min(payload.size(), length));
}

std::optional<IpPacket> parse_ipv4(Bytes packet) {
  ByteReader reader(packet);
  const auto fixed = reader.bytes(kIpv4MinHeaderLength);
  if (!fixed) {
    return std::nullopt;
  }
  ByteReader header(*fixed);  // every read below is within the fixed header
  const size_t header_length = size_t{*header.u8() & 0x0fu} * 4;
  const uint16_t total_length = header.skip(1) ? *header.u16() : 0;
  const uint16_t fragment = header.skip(2) ? *header.u16() : 0;
  const uint8_t protocol = header.skip(1) ? *header.u8() : 0;
  const auto source = header.skip(2) ? header.bytes(4) : std::nullopt;
  const auto destination = header.bytes(4);
  if ((fragment & kIpv4FragmentOffsetMask) != 0 || header_length < kIpv4MinHeaderLength ||
      total_length < header_length || !reader.skip(header_length - kIpv4MinHeaderLength)) {
    return std::nullopt;
  }
  return IpPacket{format_address(AF_INET, *source), format_address(AF_INET, *destination), protocol,
                  trim_to_length(reader.rest(), total_length - header_length)};
}

// Skips IPv6 extension headers up to the transport header; nullopt for non-first fragments.
std::optional<uint8_t> skip_ipv6_extensions(uint8_t next_header, ByteReader& reader) {
  while (true) {
    switch (next_header) {
      case kIpv6HopByHop:
      case kIpv6Routing:
      case kIpv6DestOptions: {
        const auto next = reader.u8();
        const auto length = reader.u8();  // in 8-byte units, not counting the first 8
        if (!length || !reader.skip(size_t{*length} * 8 + 6)) {
          return std::nullopt;
        }
        next_header = *next;
        break;
      }
      case kIpv6Auth: {
        const auto next = reader.u8();
        const auto length = reader.u8();  // in 4-byte units, not counting the first 8
        if (!length || !reader.skip(size_t{*length} * 4 + 6)) {
          return std::nullopt;
        }
        next_header = *next;
        break;
      }
      case kIpv6Fragment: {
        const auto next = reader.u8();
        const auto offset = reader.skip(1) ? reader.u16() : std::nullopt;
        if (!offset || (*offset & kIpv6FragmentOffsetMask) != 0 || !reader.skip(4)) {
          return std::nullopt;
        }
        next_header = *next;
        break;
      }
      default:
        return next_header;
    }
  }
}

std::optional<IpPacket> parse_ipv6(Bytes packet) {
  ByteReader reader(packet);
  const auto fixed = reader.bytes(kIpv6HeaderLength);
  if (!fixed) {
    return std::nullopt;
  }
  ByteReader header(*fixed);  // every read below is within the fixed header
  const uint16_t payload_length = header.skip(4) ? *header.u16() : 0;
  const uint8_t next_header = *header.u8();
  const auto source = header.skip(1) ? header.bytes(16) : std::nullopt;
  const auto destination = header.bytes(16);
  // A zero payload length means a jumbogram; the captured bytes are all there is then.
  ByteReader payload(payload_length == 0 ? reader.rest() : trim_to_length(reader.rest(), payload_length));
  const auto protocol = skip_ipv6_extensions(next_header, payload);
  if (!protocol) {
    return std::nullopt;
  }
  return IpPacket{format_address(AF_INET6, *source), format_address(AF_INET6, *destination), *protocol, payload.rest()};
}

std::optional<IpPacket> parse_ip(Bytes packet) {
  if (packet.empty()) {
    return std::nullopt;
  }
  switch (packet[0] >> 4) {
    case 4:
      return parse_ipv4(packet);
    case 6:
      return parse_ipv6(packet);
    default:
      return std::nullopt;
  }
}

// ---- transport layer ---------------------------------------------------------------------

struct TransportPacket {
  Transport transport = Transport::tcp;
  Endpoint source;
  Endpoint destination;
  uint32_t seq = 0;
  bool syn = false;
  bool ack = false;
  Bytes payload;
};

std::optional<TransportPacket> parse_tcp(IpPacket ip) {
  ByteReader reader(ip.payload);
  const auto fixed = reader.bytes(kTcpMinHeaderLength);
  if (!fixed) {
    return std::nullopt;
  }
  ByteReader header(*fixed);  // every read below is within the fixed header
  TransportPacket packet;
  packet.source = {std::move(ip.source), *header.u16()};
  packet.destination = {std::move(ip.destination), *header.u16()};
  packet.seq = *header.u32();
  const size_t header_length = header.skip(4) ? static_cast<size_t>(*header.u8() >> 4) * 4 : 0;
  const uint8_t flags = *header.u8();
  if (header_length < kTcpMinHeaderLength || !reader.skip(header_length - kTcpMinHeaderLength)) {
    return std::nullopt;
  }
  packet.syn = (flags & kTcpFlagSyn) != 0;
  packet.ack = (flags & kTcpFlagAck) != 0;
  packet.payload = reader.rest();
  return packet;
}

std::optional<TransportPacket> parse_udp(IpPacket ip) {
  ByteReader reader(ip.payload);
  const auto fixed = reader.bytes(kUdpHeaderLength);
  if (!fixed) {
    return std::nullopt;
  }
  ByteReader header(*fixed);  // every read below is within the fixed header
  TransportPacket packet;
  packet.transport = Transport::udp;
  packet.source = {std::move(ip.source), *header.u16()};
  packet.destination = {std::move(ip.destination), *header.u16()};
  const uint16_t length = *header.u16();
  if (length < kUdpHeaderLength) {
    return std::nullopt;
  }
  packet.payload = trim_to_length(reader.rest(), length - kUdpHeaderLength);
  return packet;
}

std::optional<TransportPacket> parse_packet(int link_type, Bytes frame) {
  const auto ip_bytes = strip_link_layer(link_type, frame);
  auto ip = ip_bytes ? parse_ip(*ip_bytes) : std::nullopt;
  if (!ip) {
    return std::nullopt;
  }
  switch (ip->protocol) {
    case kIpProtoTcp:
      return parse_tcp(std::move(*ip));
    case kIpProtoUdp:
      return parse_udp(std::move(*ip));
    default:
      return std::nullopt;
  }
}

// ---- flows -------------------------------------------------------------------------------

class FlowCollector {
 public:
  void add(const TransportPacket& packet) {
    CapturedFlow& flow = flow_of(packet);
    const bool from_client = packet.source == flow.client;
    const std::vector<uint8_t> payload(packet.payload.begin(), packet.payload.end());
    if (packet.transport == Transport::udp) {
      (from_client ? flow.client_datagrams : flow.server_datagrams).push_back(payload);
    } else if (packet.syn || !payload.empty()) {
      (from_client ? flow.client_segments : flow.server_segments).push_back({packet.seq, packet.syn, payload});
    }
  }

  std::vector<CapturedFlow> take() { return std::move(flows_); }

 private:
  using Key = std::tuple<Transport, std::string, uint16_t, std::string, uint16_t>;

  CapturedFlow& flow_of(const TransportPacket& packet) {
    const auto& [low, high] = std::minmax(packet.source, packet.destination, [](const auto& a, const auto& b) {
      return std::tie(a.address, a.port) < std::tie(b.address, b.port);
    });
    const Key key{packet.transport, low.address, low.port, high.address, high.port};
    const auto [entry, inserted] = index_.try_emplace(key, flows_.size());
    if (inserted) {
      // A SYN-ACK first means the capture missed the SYN: its receiver initiated.
      const bool reply_first = packet.transport == Transport::tcp && packet.syn && packet.ack;
      CapturedFlow& flow = flows_.emplace_back();
      flow.transport = packet.transport;
      flow.client = reply_first ? packet.destination : packet.source;
      flow.server = reply_first ? packet.source : packet.destination;
    }
    return flows_[entry->second];
  }

  std::map<Key, size_t> index_;
  std::vector<CapturedFlow> flows_;
};

}  // namespace

std::string to_string(const Endpoint& endpoint) {
  return endpoint.address + ":" + std::to_string(endpoint.port);
}

CaptureFlows read_capture_flows(const std::string& path) {
  char error[PCAP_ERRBUF_SIZE] = {};
  const std::unique_ptr<pcap_t, decltype(&pcap_close)> capture(pcap_open_offline(path.c_str(), error), &pcap_close);
  if (!capture) {
    throw std::runtime_error(path + ": " + error);
  }
  const int link_type = pcap_datalink(capture.get());
  if (!is_supported_link_type(link_type)) {
    throw std::runtime_error(path + ": unsupported link type " + std::to_string(link_type));
  }
  CaptureFlows result;
  FlowCollector collector;
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int status = 0;
  while ((status = pcap_next_ex(capture.get(), &header, &data)) == 1) {
    if (const auto packet = parse_packet(link_type, Bytes(data, header->caplen))) {
      collector.add(*packet);
    }
  }
  if (status == PCAP_ERROR) {
    result.read_error = pcap_geterr(capture.get());
  }
  result.flows = collector.take();
  return result;
}

const CapturedFlow* find_flow(const CaptureFlows& capture, Transport transport, std::string_view client,
                              std::string_view server) {
  for (const CapturedFlow& flow : capture.flows) {
    if (flow.transport == transport && to_string(flow.client) == client && to_string(flow.server) == server) {
      return &flow;
    }
  }
  return nullptr;
}

}  // namespace portcullis::test
