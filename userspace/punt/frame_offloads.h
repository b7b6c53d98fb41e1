// What a held frame needs to go back into the kernel byte-identical: the virtio-net header AF_PACKET takes
// with PACKET_VNET_HDR, and the TCP reset a denied flow's server gets.
//
// Frames punted from veth are usually CHECKSUM_PARTIAL: their L4 checksum field holds only the pseudo-header
// sum, and the rest is left to offload. Sent back as they are, the receiver finds a bad checksum and the
// sender retransmits ~200 ms later. So every TCP or UDP frame goes back with NEEDS_CSUM and the pseudo-header
// sum written into the field, whatever the field held: the kernel then completes the checksum exactly as the
// sender's offload would have, and a frame whose checksum was complete comes out the same. A GSO super-packet
// keeps its segment size, so the kernel segments it as the sender's stack would have.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "policy/ip_address.h"

namespace portcullis::punt {

// struct virtio_net_hdr (<linux/virtio_net.h>, which does not compile as C++), as PACKET_VNET_HDR reads it:
// in host byte order on little-endian machines.
struct VnetHeader {
  static constexpr uint8_t kNeedsChecksum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
  static constexpr uint8_t kGsoNone = 0;
  static constexpr uint8_t kGsoTcpV4 = 1;
  static constexpr uint8_t kGsoTcpV6 = 4;
  static constexpr uint8_t kGsoUdpL4 = 5;

  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;      // link, IP and L4 headers: where the segments' payload starts
  uint16_t gso_size = 0;     // payload bytes per segment
  uint16_t csum_start = 0;   // where checksumming starts: the L4 header
  uint16_t csum_offset = 0;  // where in the L4 header the checksum goes
};
static_assert(sizeof(VnetHeader) == 10, "the kernel's struct virtio_net_hdr");

// Prepares `frame` (Ethernet, IPv4 or IPv6) for sending: for unfragmented TCP and UDP, writes the
// pseudo-header sum into the L4 checksum field and returns a header with NEEDS_CSUM (and the GSO type and
// size when gso_size is not zero). Other frames get an empty header and go as they are. Returns nullopt
// for a frame that cannot be parsed or whose lengths disagree with its headers: it must not be sent.
std::optional<VnetHeader> prepare_offloads(std::span<uint8_t> frame, uint16_t gso_size);

// The reset a TCP server gets when the flow whose client sent `client_frame` is denied: from the client's
// address and port, with the held segment's sequence number (the server expects exactly that one), RST|ACK,
// no payload, checksums complete. nullopt when `client_frame` is not an unfragmented TCP segment.
std::optional<std::vector<uint8_t>> tcp_reset_to_server(std::span<const uint8_t> client_frame);

// A UDP datagram back to the client that sent `client_frame` (an unfragmented UDP frame): link addresses,
// IP addresses and ports swapped, `payload` as its data, checksums complete. For answers the daemon makes up
// (a synthesized NXDOMAIN). nullopt when `client_frame` is not such a frame.
std::optional<std::vector<uint8_t>> udp_reply_to_client(std::span<const uint8_t> client_frame,
                                                        std::span<const uint8_t> payload);

// An IP packet (no link header) from `from`:`from_port` to `to`:`to_port`: a bare TCP ACK with sequence number
// `seq`, checksums complete. Sent with a sequence number outside the receiver's window, it makes the receiver
// answer with an ACK that carries its exact sequence numbers (RFC 5961 4.2, RFC 793's answer to an unacceptable
// segment): how an idle connection is brought to send the packet a reset needs.
std::vector<uint8_t> tcp_ack_probe(const policy::IpAddress& from, uint16_t from_port, const policy::IpAddress& to,
                                   uint16_t to_port, uint32_t seq);

}  // namespace portcullis::punt
