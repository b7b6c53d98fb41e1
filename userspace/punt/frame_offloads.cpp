#include "punt/frame_offloads.h"

#include <arpa/inet.h>

#include <cstring>

#include "portcullis/compat.h"
#include "portcullis/packet.h"
#include "portcullis/parse.h"

namespace portcullis::punt {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr size_t kTcpChecksumOffset = 16;
constexpr size_t kUdpChecksumOffset = 6;

uint16_t load16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
void store16(uint8_t* p, uint16_t value) {
  p[0] = static_cast<uint8_t>(value >> 8);
  p[1] = static_cast<uint8_t>(value);
}

// One's-complement sum of big-endian 16-bit words, not folded.
uint64_t sum_words(const uint8_t* p, size_t n, uint64_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += load16(p + i);
  if (n % 2 != 0) sum += static_cast<uint64_t>(p[n - 1]) << 8;
  return sum;
}

uint16_t fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

struct Layout {
  pc_packet pkt{};
  size_t l4_length = 0;  // as the IP header declares it
};

// The frame's offsets, with the IP header's length checked against the bytes there are.
std::optional<Layout> layout_of(std::span<const uint8_t> frame) {
  Layout layout;
  if (pc_parse_packet(frame.data(), frame.data() + frame.size(), &layout.pkt) != PC_DROP_NONE) return std::nullopt;
  const pc_packet& pkt = layout.pkt;
  if (pkt.family == PC_FAMILY_NONE) return layout;
  const uint8_t* ip = frame.data() + pkt.l3_off;
  const size_t ip_headers = pkt.l4_off - pkt.l3_off;
  size_t ip_length = 0;
  if (pkt.family == PC_FAMILY_IPV4) {
    ip_length = load16(ip + 2);
    if (ip_length == 0) ip_length = frame.size() - pkt.l3_off;  // BIG TCP: the length is the skb's
  } else {
    ip_length = 40 + static_cast<size_t>(load16(ip + 4));
    if (ip_length == 40 && pkt.proto != 59) ip_length = frame.size() - pkt.l3_off;  // BIG TCP (jumbogram)
  }
  if (ip_length < ip_headers || pkt.l3_off + ip_length > frame.size()) return std::nullopt;
  layout.l4_length = ip_length - ip_headers;
  return layout;
}

uint64_t pseudo_header_sum(std::span<const uint8_t> frame, const pc_packet& pkt, size_t l4_length) {
  const uint8_t* ip = frame.data() + pkt.l3_off;
  uint64_t sum = pkt.proto;
  if (pkt.family == PC_FAMILY_IPV4) {
    sum = sum_words(ip + 12, 8, sum);
  } else {
    sum = sum_words(ip + 8, 32, sum);
  }
  return sum + (l4_length >> 16) + (l4_length & 0xffff);
}

}  // namespace

std::optional<VnetHeader> prepare_offloads(std::span<uint8_t> frame, uint16_t gso_size) {
  const std::optional<Layout> layout = layout_of(frame);
  if (!layout) return std::nullopt;
  const pc_packet& pkt = layout->pkt;
  VnetHeader header;
  const bool offloadable = (pkt.proto == kTcp || pkt.proto == kUdp) && pkt.family != PC_FAMILY_NONE && !pkt.is_fragment;
  if (!offloadable) return header;
  const size_t checksum_offset = pkt.proto == kTcp ? kTcpChecksumOffset : kUdpChecksumOffset;
  if (pkt.l4_off + checksum_offset + 2 > frame.size()) return std::nullopt;
  store16(frame.data() + pkt.l4_off + checksum_offset, fold(pseudo_header_sum(frame, pkt, layout->l4_length)));
  header.flags = VnetHeader::kNeedsChecksum;
  header.csum_start = pkt.l4_off;
  header.csum_offset = static_cast<uint16_t>(checksum_offset);
  if (gso_size != 0) {
    if (pkt.proto == kTcp) {
      header.gso_type = pkt.family == PC_FAMILY_IPV4 ? VnetHeader::kGsoTcpV4 : VnetHeader::kGsoTcpV6;
    } else {
      header.gso_type = VnetHeader::kGsoUdpL4;
    }
    header.gso_size = gso_size;
    header.hdr_len = pkt.payload_off;
  }
  return header;
}

std::optional<std::vector<uint8_t>> tcp_reset_to_server(std::span<const uint8_t> client_frame) {
  const std::optional<Layout> layout = layout_of(client_frame);
  if (!layout || layout->pkt.proto != kTcp || layout->pkt.is_fragment || layout->pkt.family == PC_FAMILY_NONE) {
    return std::nullopt;
  }
  const pc_packet& pkt = layout->pkt;
  constexpr size_t kTcpHeader = 20;
  // Link and IP headers as they were (IPv6 extension headers included), a bare TCP header after them.
  std::vector<uint8_t> reset(client_frame.begin(), client_frame.begin() + pkt.l4_off + kTcpHeader);
  uint8_t* ip = reset.data() + pkt.l3_off;
  uint8_t* tcp = reset.data() + pkt.l4_off;
  const size_t ip_length = pkt.l4_off - pkt.l3_off + kTcpHeader;
  if (pkt.family == PC_FAMILY_IPV4) {
    store16(ip + 2, static_cast<uint16_t>(ip_length));
    store16(ip + 10, 0);
    const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
    store16(ip + 10, static_cast<uint16_t>(~fold(sum_words(ip, ihl))));
  } else {
    store16(ip + 4, static_cast<uint16_t>(ip_length - 40));
  }
  tcp[12] = 5 << 4;  // data offset: no options
  tcp[13] = PC_TCP_RST | PC_TCP_ACK;
  store16(tcp + 14, 0);  // window
  store16(tcp + 16, 0);  // checksum, computed below
  store16(tcp + 18, 0);  // urgent pointer
  const uint64_t sum = pseudo_header_sum(reset, pkt, kTcpHeader);
  store16(tcp + 16, static_cast<uint16_t>(~fold(sum_words(tcp, kTcpHeader, sum))));
  return reset;
}

std::optional<std::vector<uint8_t>> udp_reply_to_client(std::span<const uint8_t> client_frame,
                                                        std::span<const uint8_t> payload) {
  const std::optional<Layout> layout = layout_of(client_frame);
  if (!layout || layout->pkt.proto != kUdp || layout->pkt.is_fragment || layout->pkt.family == PC_FAMILY_NONE) {
    return std::nullopt;
  }
  const pc_packet& pkt = layout->pkt;
  constexpr size_t kUdpHeader = 8;
  const bool v4 = pkt.family == PC_FAMILY_IPV4;
  const size_t ip_header = v4 ? 20 : 40;
  const size_t l4_length = kUdpHeader + payload.size();
  if (ip_header + l4_length > 0xffff) return std::nullopt;
  std::vector<uint8_t> reply(pkt.l3_off + ip_header + l4_length, 0);
  // Link layer as the client's frame had it (VLAN tags included), the two addresses swapped.
  std::memcpy(reply.data(), client_frame.data() + 6, 6);
  std::memcpy(reply.data() + 6, client_frame.data(), 6);
  std::memcpy(reply.data() + 12, client_frame.data() + 12, pkt.l3_off - 12);
  uint8_t* ip = reply.data() + pkt.l3_off;
  const uint8_t* client_ip = client_frame.data() + pkt.l3_off;
  if (v4) {
    ip[0] = 0x45;
    store16(ip + 2, static_cast<uint16_t>(ip_header + l4_length));
    store16(ip + 6, 0x4000);  // don't fragment
    ip[8] = 64;
    ip[9] = kUdp;
    std::memcpy(ip + 12, client_ip + 16, 4);
    std::memcpy(ip + 16, client_ip + 12, 4);
    store16(ip + 10, static_cast<uint16_t>(~fold(sum_words(ip, 20))));
  } else {
    ip[0] = 0x60;
    store16(ip + 4, static_cast<uint16_t>(l4_length));
    ip[6] = kUdp;
    ip[7] = 64;
    std::memcpy(ip + 8, client_ip + 24, 16);
    std::memcpy(ip + 24, client_ip + 8, 16);
  }
  uint8_t* udp = ip + ip_header;
  store16(udp, pkt.dport);
  store16(udp + 2, pkt.sport);
  store16(udp + 4, static_cast<uint16_t>(l4_length));
  std::memcpy(udp + kUdpHeader, payload.data(), payload.size());
  pc_packet reply_pkt = pkt;  // the pseudo-header sum does not depend on which address is which
  reply_pkt.proto = kUdp;
  uint16_t check =
      static_cast<uint16_t>(~fold(sum_words(udp, l4_length, pseudo_header_sum(reply, reply_pkt, l4_length))));
  if (check == 0) check = 0xffff;  // zero means "no checksum" in UDP
  store16(udp + 6, check);
  return reply;
}

std::vector<uint8_t> tcp_ack_probe(const policy::IpAddress& from, uint16_t from_port, const policy::IpAddress& to,
                                   uint16_t to_port, uint32_t seq) {
  constexpr size_t kTcpHeader = 20;
  const bool v4 = from.family == policy::IpFamily::v4;
  const size_t ip_header = v4 ? 20 : 40;
  std::vector<uint8_t> packet(ip_header + kTcpHeader, 0);
  uint8_t* ip = packet.data();
  uint64_t pseudo = 0;
  if (v4) {
    ip[0] = 0x45;
    store16(ip + 2, static_cast<uint16_t>(packet.size()));
    store16(ip + 6, 0x4000);  // don't fragment
    ip[8] = 64;
    ip[9] = kTcp;
    std::memcpy(ip + 12, from.bytes.data(), 4);
    std::memcpy(ip + 16, to.bytes.data(), 4);
    store16(ip + 10, static_cast<uint16_t>(~fold(sum_words(ip, 20))));
    pseudo = sum_words(ip + 12, 8) + kTcp + kTcpHeader;
  } else {
    ip[0] = 0x60;
    store16(ip + 4, kTcpHeader);
    ip[6] = kTcp;
    ip[7] = 64;
    std::memcpy(ip + 8, from.bytes.data(), 16);
    std::memcpy(ip + 24, to.bytes.data(), 16);
    pseudo = sum_words(ip + 8, 32) + kTcp + kTcpHeader;
  }
  uint8_t* tcp = ip + ip_header;
  store16(tcp, from_port);
  store16(tcp + 2, to_port);
  store16(tcp + 4, static_cast<uint16_t>(seq >> 16));
  store16(tcp + 6, static_cast<uint16_t>(seq));
  tcp[12] = 5 << 4;
  tcp[13] = PC_TCP_ACK;
  store16(tcp + 16, static_cast<uint16_t>(~fold(sum_words(tcp, kTcpHeader, pseudo))));
  return packet;
}

}  // namespace portcullis::punt
