// Held frames go back with the pseudo-header sum in their checksum field and a virtio-net header that makes
// the kernel complete it: what comes out must be exactly what the sender's offload would have sent.
#include "punt/frame_offloads.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "portcullis/packet.h"
#include "support/packet_builder.h"

namespace portcullis::punt {
namespace {

using test::Bytes;
using test::PacketBuilder;

uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2 != 0) sum += static_cast<uint32_t>(p[n - 1] << 8);
  return sum;
}
uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// What the kernel does with NEEDS_CSUM: sums from csum_start to the end, stores the complement.
void complete_checksum(Bytes& frame, const VnetHeader& header) {
  const uint16_t sum = fold(sum16(frame.data() + header.csum_start, frame.size() - header.csum_start));
  const uint16_t check = static_cast<uint16_t>(~sum);
  frame[header.csum_start + header.csum_offset] = static_cast<uint8_t>(check >> 8);
  frame[header.csum_start + header.csum_offset + 1] = static_cast<uint8_t>(check);
}

Bytes tcp_frame(bool v6, Bytes payload) {
  PacketBuilder builder;
  if (v6) {
    builder.ipv6({.src = test::ipv6_address("fd88:1::2"), .dst = test::ipv6_address("2001:db8::10")});
  } else {
    builder.ipv4({.src = test::ipv4_address("10.88.1.2"), .dst = test::ipv4_address("198.18.0.10")});
  }
  return builder
      .tcp({.sport = 40000,
            .dport = 443,
            .flags = test::kTcpPsh | test::kTcpAck,
            .seq = 77,
            .ack = 99,
            .payload = std::move(payload)})
      .frame();
}

TEST(PrepareOffloads, ACompleteChecksumComesOutTheSameAfterTheKernelCompletesIt) {
  for (const bool v6 : {false, true}) {
    const Bytes original = tcp_frame(v6, Bytes(333, 0x42));
    Bytes frame = original;
    const auto header = prepare_offloads(frame, 0);
    ASSERT_TRUE(header.has_value());
    EXPECT_EQ(header->flags, VnetHeader::kNeedsChecksum);
    EXPECT_EQ(header->gso_type, VnetHeader::kGsoNone);
    EXPECT_EQ(header->csum_start, v6 ? 54 : 34);
    EXPECT_EQ(header->csum_offset, 16);
    EXPECT_NE(frame, original);  // the field now holds only the pseudo-header sum
    complete_checksum(frame, *header);
    EXPECT_EQ(frame, original) << (v6 ? "IPv6" : "IPv4");
  }
}

TEST(PrepareOffloads, APartialChecksumFromVethIsCompletedToTheRightOne) {
  const Bytes original = tcp_frame(false, Bytes(100, 7));
  Bytes partial = original;
  partial[34 + 16] = 0x12;  // whatever the sender's stack left there
  partial[34 + 17] = 0x34;
  const auto header = prepare_offloads(partial, 0);
  ASSERT_TRUE(header.has_value());
  complete_checksum(partial, *header);
  EXPECT_EQ(partial, original);
}

TEST(PrepareOffloads, SuperPacketsKeepTheirSegmentSize) {
  Bytes frame = tcp_frame(false, Bytes(20000, 1));
  const auto v4 = prepare_offloads(frame, 1448);
  ASSERT_TRUE(v4.has_value());
  EXPECT_EQ(v4->gso_type, VnetHeader::kGsoTcpV4);
  EXPECT_EQ(v4->gso_size, 1448);
  EXPECT_EQ(v4->hdr_len, 14 + 20 + 20);
  Bytes frame6 = tcp_frame(true, Bytes(20000, 1));
  EXPECT_EQ(prepare_offloads(frame6, 1428)->gso_type, VnetHeader::kGsoTcpV6);
}

TEST(PrepareOffloads, UdpIsOffloadedAndOtherProtocolsGoAsTheyAre) {
  Bytes udp = PacketBuilder()
                  .ipv4({.src = test::ipv4_address("10.88.1.2"), .dst = test::ipv4_address("198.18.0.10")})
                  .udp({.sport = 5000, .dport = 443, .payload = Bytes(1200, 3)})
                  .frame();
  const Bytes original = udp;
  const auto header = prepare_offloads(udp, 0);
  ASSERT_TRUE(header.has_value());
  EXPECT_EQ(header->csum_offset, 6);
  complete_checksum(udp, *header);
  EXPECT_EQ(udp, original);

  Bytes ping = PacketBuilder()
                   .ipv4({.src = test::ipv4_address("10.88.1.2"), .dst = test::ipv4_address("198.18.0.10")})
                   .icmp({.type = 8, .rest = test::echo_word(1, 1), .body = {1, 2}})
                   .frame();
  const Bytes ping_before = ping;
  const auto plain = prepare_offloads(ping, 0);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->flags, 0);
  EXPECT_EQ(ping, ping_before);
}

TEST(PrepareOffloads, AFrameShorterThanItsIpHeaderSaysIsNotSent) {
  Bytes frame = tcp_frame(false, Bytes(100, 1));
  frame.resize(frame.size() - 10);
  EXPECT_FALSE(prepare_offloads(frame, 0).has_value());
}

TEST(TcpResetToServer, IsABareResetFromTheClientAtTheHeldSequenceNumber) {
  for (const bool v6 : {false, true}) {
    const Bytes held = tcp_frame(v6, Bytes(500, 9));
    const auto reset = tcp_reset_to_server(held);
    ASSERT_TRUE(reset.has_value());
    const size_t l4 = v6 ? 54 : 34;
    ASSERT_EQ(reset->size(), l4 + 20);
    const auto same = [&](size_t from, size_t to) {
      return Bytes(reset->begin() + static_cast<long>(from), reset->begin() + static_cast<long>(to)) ==
             Bytes(held.begin() + static_cast<long>(from), held.begin() + static_cast<long>(to));
    };
    EXPECT_TRUE(same(0, 12)) << "link addresses";
    EXPECT_TRUE(v6 ? same(14 + 8, 14 + 40) : same(14 + 12, 14 + 20)) << "IP addresses";
    EXPECT_TRUE(same(l4, l4 + 4)) << "ports";
    EXPECT_EQ(Bytes(reset->begin() + static_cast<long>(l4) + 4, reset->begin() + static_cast<long>(l4) + 12),
              Bytes(held.begin() + static_cast<long>(l4) + 4, held.begin() + static_cast<long>(l4) + 12))
        << "sequence and acknowledgment numbers of the held segment";
    EXPECT_EQ((*reset)[l4 + 13], test::kTcpRst | test::kTcpAck);
    // Checksums verify: IPv4 header, and TCP over its pseudo-header.
    const uint8_t* ip = reset->data() + 14;
    uint32_t pseudo = 0;
    if (v6) {
      EXPECT_EQ((ip[4] << 8 | ip[5]), 20);
      pseudo = sum16(ip + 8, 32) + 6 + 20;
    } else {
      EXPECT_EQ((ip[2] << 8 | ip[3]), 40);
      EXPECT_EQ(fold(sum16(ip, 20)), 0xffff);
      pseudo = sum16(ip + 12, 8) + 6 + 20;
    }
    EXPECT_EQ(fold(sum16(reset->data() + l4, 20, pseudo)), 0xffff);
  }
}

TEST(UdpReplyToClient, SwapsTheEndsAndCarriesThePayloadWithChecksums) {
  for (const bool v6 : {false, true}) {
    PacketBuilder builder;
    if (v6) {
      builder.ipv6({.src = test::ipv6_address("fd88:1::2"), .dst = test::ipv6_address("2001:db8::53")});
    } else {
      builder.ipv4({.src = test::ipv4_address("10.88.1.2"), .dst = test::ipv4_address("198.18.0.53")});
    }
    const Bytes query = builder.udp({.sport = 40000, .dport = 53, .payload = Bytes(40, 1)}).frame();
    const Bytes answer(33, 7);
    const auto reply = udp_reply_to_client(query, answer);
    ASSERT_TRUE(reply.has_value());
    const size_t l4 = v6 ? 54 : 34;
    ASSERT_EQ(reply->size(), l4 + 8 + answer.size());
    EXPECT_TRUE(std::equal(reply->begin(), reply->begin() + 6, query.begin() + 6)) << "to the client's MAC";
    const uint8_t* ip = reply->data() + 14;
    if (v6) {
      EXPECT_TRUE(std::equal(ip + 24, ip + 40, query.begin() + 14 + 8)) << "to the client's address";
    } else {
      EXPECT_TRUE(std::equal(ip + 16, ip + 20, query.begin() + 14 + 12)) << "to the client's address";
      EXPECT_EQ(fold(sum16(ip, 20)), 0xffff);
    }
    const uint8_t* udp = reply->data() + l4;
    EXPECT_EQ((udp[0] << 8 | udp[1]), 53);
    EXPECT_EQ((udp[2] << 8 | udp[3]), 40000);
    EXPECT_TRUE(std::equal(answer.begin(), answer.end(), udp + 8));
    const uint32_t l4_length = static_cast<uint32_t>(8 + answer.size());
    const uint32_t pseudo = (v6 ? sum16(ip + 8, 32) : sum16(ip + 12, 8)) + 17 + l4_length;
    EXPECT_EQ(fold(sum16(udp, l4_length, pseudo)), 0xffff);
  }
}

TEST(TcpResetToServer, OnlyForTcp) {
  const Bytes udp = PacketBuilder()
                        .ipv4({.src = test::ipv4_address("10.88.1.2"), .dst = test::ipv4_address("198.18.0.10")})
                        .udp({.sport = 5000, .dport = 443, .payload = {1}})
                        .frame();
  EXPECT_FALSE(tcp_reset_to_server(udp).has_value());
}

// The probe that wakes an idle connection a reload cut (conntrack/connection_cutter.h): a bare ACK from the
// server's address, its checksums complete.
TEST(TcpAckProbe, IsABareAckWithValidChecksums) {
  const auto from = *policy::IpAddress::parse("198.18.0.10");
  const auto to = *policy::IpAddress::parse("10.88.1.2");
  const std::vector<uint8_t> packet = tcp_ack_probe(from, 9000, to, 40000, 0x01020304);
  ASSERT_EQ(packet.size(), 40u);
  EXPECT_EQ(fold(sum16(packet.data(), 20)), 0xffff) << "IPv4 header checksum";
  const uint32_t pseudo = sum16(packet.data() + 12, 8) + 6 + 20;
  EXPECT_EQ(fold(sum16(packet.data() + 20, 20, pseudo)), 0xffff) << "TCP checksum";
  EXPECT_EQ(packet[9], 6);
  EXPECT_EQ(packet[20 + 13], PC_TCP_ACK);
  EXPECT_EQ(packet[20] << 8 | packet[21], 9000);
  EXPECT_EQ(packet[22] << 8 | packet[23], 40000);
  const std::vector<uint8_t> v6 =
      tcp_ack_probe(*policy::IpAddress::parse("2001:db8::10"), 443, *policy::IpAddress::parse("fd88:1::2"), 40000, 7);
  ASSERT_EQ(v6.size(), 60u);
  EXPECT_EQ(v6[0] >> 4, 6);
  const uint32_t pseudo6 = sum16(v6.data() + 8, 32) + 6 + 20;
  EXPECT_EQ(fold(sum16(v6.data() + 40, 20, pseudo6)), 0xffff) << "TCP checksum over IPv6";
}

}  // namespace
}  // namespace portcullis::punt
