#include "support/data_path_scenario.h"

#include <arpa/inet.h>

#include <cstring>

namespace portcullis::test {

const char* const kDataPathPolicy = R"(version: 1
defaults: {action: deny, on_deny: reject}
rules:
  - {name: web, dst: 198.18.0.10, proto: tcp, ports: [80, "8000-8099"]}
  - {name: dns-ish, dst: 198.18.0.10, proto: udp, ports: [5353]}
  - {name: ping, dst: [198.18.0.0/24, "2001:db8::/64"], proto: icmp}
  - {name: v6-web, dst: "2001:db8::10", proto: tcp, ports: [80]}
  - {name: sni-only, dst: allowed.test, proto: https}
  - {name: blocked, dst: 198.18.0.10, proto: tcp, ports: [8080], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24, "fd88:1::/64"]}
)";

std::string data_path_policy_opened() {
  std::string opened = kDataPathPolicy;
  opened.replace(opened.find("rules:\n"), 7,
                 "rules:\n  - {name: opened, dst: 198.18.0.10, proto: tcp, ports: [9000]}\n");
  return opened;
}

std::string with_drop(std::string yaml) {
  return yaml.replace(yaml.find("on_deny: reject"), 15, "on_deny: drop");
}

Bytes tcp4(const char* src, const char* dst, uint16_t sport, uint16_t dport, uint8_t flags) {
  return PacketBuilder()
      .ipv4({.src = ipv4_address(src), .dst = ipv4_address(dst)})
      .tcp({.sport = sport, .dport = dport, .flags = flags, .seq = 1000, .ack = 5000})
      .frame();
}

Bytes tcp4_data(const char* src, const char* dst, uint16_t sport, uint16_t dport, const Bytes& payload) {
  return PacketBuilder()
      .ipv4({.src = ipv4_address(src), .dst = ipv4_address(dst)})
      .tcp({.sport = sport, .dport = dport, .flags = kTcpPsh | kTcpAck, .seq = 1001, .ack = 5001, .payload = payload})
      .frame();
}

Bytes udp4(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  return PacketBuilder()
      .ipv4({.src = ipv4_address(src), .dst = ipv4_address(dst)})
      .udp({.sport = sport, .dport = dport, .payload = {1, 2, 3, 4}})
      .frame();
}

Bytes tcp6(uint16_t sport, uint16_t dport) {
  return PacketBuilder()
      .ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("2001:db8::10")})
      .tcp({.sport = sport, .dport = dport, .flags = kTcpSyn})
      .frame();
}

Bytes echo4(const char* src, const char* dst, uint8_t type) {
  return PacketBuilder()
      .ipv4({.src = ipv4_address(src), .dst = ipv4_address(dst)})
      .icmp({.type = type, .rest = echo_word(77, 1), .body = {1, 2, 3, 4}})
      .frame();
}

Bytes icmp_error_about(const Bytes& quoted_frame) {
  const Bytes quoted(quoted_frame.begin() + 14, quoted_frame.begin() + 14 + 28);
  return PacketBuilder()
      .ipv4({.src = ipv4_address("198.18.0.1"), .dst = ipv4_address("10.88.1.2")})
      .icmp({.type = kIcmpDestUnreachable, .code = 4, .rest = 1400, .body = quoted})
      .frame();
}

Bytes udp_fragment(uint16_t id, uint16_t offset, bool more, uint16_t dport) {
  PacketBuilder b;
  b.ipv4({.src = ipv4_address("10.88.1.2"),
          .dst = ipv4_address("198.18.0.10"),
          .id = id,
          .more_fragments = more,
          .fragment_offset = offset});
  if (offset == 0) {
    b.udp({.sport = 40012, .dport = dport, .payload = Bytes(32, 0xab), .length = 1000});
  } else {
    b.l4({.protocol = kProtoUdp, .bytes = Bytes(64, 0xcd)});
  }
  return b.frame();
}

pc_flow_key flow_key(const char* a, uint16_t a_port, const char* b, uint16_t b_port, uint8_t proto) {
  // The canonical order of packet.h: the numerically lower endpoint first.
  pc_flow_key key{};
  union pc_addr x {};
  union pc_addr y {};
  const bool v6 = std::strchr(a, ':') != nullptr;
  inet_pton(v6 ? AF_INET6 : AF_INET, a, x.bytes);
  inet_pton(v6 ? AF_INET6 : AF_INET, b, y.bytes);
  const int order = std::memcmp(x.bytes, y.bytes, 16);
  const bool a_first = order < 0 || (order == 0 && a_port <= b_port);
  key.lo_addr = a_first ? x : y;
  key.hi_addr = a_first ? y : x;
  key.lo_port = a_first ? a_port : b_port;
  key.hi_port = a_first ? b_port : a_port;
  key.family = v6 ? 6 : 4;
  key.proto = proto;
  return key;
}

}  // namespace portcullis::test
