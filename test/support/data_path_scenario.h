// The scenario the data-path tests share, kernel and userspace alike: one policy and the frames of a
// sandbox (10.88.1.2, fd88:1::2) talking to the test internet (198.18.0.0/24, 2001:db8::/64).
#pragma once

#include <cstdint>
#include <string>

#include "portcullis/packet.h"
#include "support/packet_builder.h"

namespace portcullis::test {

// Gateway policy: web (tcp 80, 8000-8099) and dns-ish (udp 5353) to 198.18.0.10, ping to the test
// internet, v6-web, an SNI-only rule (flows to 443 stay pending), a deny for tcp/8080, one group.
extern const char* const kDataPathPolicy;

// kDataPathPolicy with one more rule, `opened`, allowing tcp/9000 to 198.18.0.10.
std::string data_path_policy_opened();
// `yaml` with on_deny: drop instead of reject.
std::string with_drop(std::string yaml);

Bytes tcp4(const char* src, const char* dst, uint16_t sport, uint16_t dport, uint8_t flags = kTcpSyn);
Bytes udp4(const char* src, const char* dst, uint16_t sport, uint16_t dport);
// A data segment (PSH|ACK) carrying `payload`.
Bytes tcp4_data(const char* src, const char* dst, uint16_t sport, uint16_t dport, const Bytes& payload);
// fd88:1::2 -> 2001:db8::10.
Bytes tcp6(uint16_t sport, uint16_t dport);
// An ICMP echo (identifier 77) of `type`.
Bytes echo4(const char* src, const char* dst, uint8_t type);
// A fragmentation-needed error from 198.18.0.1 quoting the IP header and 8 bytes of `quoted_frame`.
Bytes icmp_error_about(const Bytes& quoted_frame);
// A fragment of a UDP datagram 10.88.1.2:40012 -> 198.18.0.10:dport; the first (offset 0) carries the header.
Bytes udp_fragment(uint16_t id, uint16_t offset, bool more, uint16_t dport);

// The flow key packet.h gives the flow between the two endpoints.
pc_flow_key flow_key(const char* a, uint16_t a_port, const char* b, uint16_t b_port, uint8_t proto);

}  // namespace portcullis::test
