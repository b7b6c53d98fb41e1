// Test support: reads a capture (pcap or pcapng, through libpcap) into per-flow payloads, so
// parser tests can run on traffic written by other stacks.
//
// Link types: Ethernet (with 802.1Q/802.1ad tags), Linux cooked (SLL, SLL2), raw IP, BSD
// null/loopback and PPP. IPv4 and IPv6 (extension headers skipped). IP fragments are not
// reassembled: non-first fragments are skipped, first fragments are kept as captured.
// A flow is keyed by its unordered 5-tuple, so a reused port pair continues the same flow.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::test {

enum class Transport : uint8_t { tcp, udp };

struct Endpoint {
  std::string address;  // inet_ntop form: IPv6 compressed and unbracketed
  uint16_t port = 0;

  bool operator==(const Endpoint&) const = default;
};

// "address:port", as corpus/expected-sni.tsv writes endpoints (IPv6 not bracketed).
[[nodiscard]] std::string to_string(const Endpoint& endpoint);

struct TcpSegment {
  uint32_t seq = 0;
  bool syn = false;  // a SYN's payload (TCP Fast Open) starts at seq + 1
  std::vector<uint8_t> payload;
};

struct CapturedFlow {
  Transport transport = Transport::tcp;
  Endpoint client;  // the initiator: SYN sender, else the sender of the flow's first packet
  Endpoint server;
  // TCP: segments that carry a SYN or payload, per direction, in capture order.
  std::vector<TcpSegment> client_segments;
  std::vector<TcpSegment> server_segments;
  // UDP: datagram payloads per direction, in capture order.
  std::vector<std::vector<uint8_t>> client_datagrams;
  std::vector<std::vector<uint8_t>> server_datagrams;
};

struct CaptureFlows {
  std::vector<CapturedFlow> flows;  // in order of each flow's first packet
  // Set when reading stopped at a damaged record; flows then hold everything before it.
  std::string read_error;
};

// Throws std::runtime_error when the file cannot be opened or has an unsupported link type.
[[nodiscard]] CaptureFlows read_capture_flows(const std::string& path);

// The flow with this initiator and responder ("address:port" strings), or nullptr.
[[nodiscard]] const CapturedFlow* find_flow(const CaptureFlows& capture, Transport transport, std::string_view client,
                                            std::string_view server);

}  // namespace portcullis::test
