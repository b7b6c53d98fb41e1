#include "conntrack/connection_cutter.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "dataplane/frame_fields.h"
#include "portcullis/punt.h"
#include "punt/frame_offloads.h"

namespace portcullis::conntrack {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kIcmp = 1;
constexpr uint8_t kIcmpv6 = 58;

std::string describe(const pc_verdict_event& event) {
  const policy::IpAddress src = dataplane::address_of(event.src, event.family);
  const policy::IpAddress dst = dataplane::address_of(event.dst, event.family);
  return src.to_string() + " port " + std::to_string(event.sport) + " to " + dst.to_string() + " port " +
         std::to_string(event.dport);
}

}  // namespace

ConnectionCutter::~ConnectionCutter() {
  if (conntrack_ != nullptr) nfct_close(conntrack_);
  if (raw_v4_ >= 0) ::close(raw_v4_);
  if (raw_v6_ >= 0) ::close(raw_v6_);
}

std::string ConnectionCutter::cut(const TrackedFlow& flow) {
  std::string problems = delete_conntrack_entry(flow.event);
  if (flow.event.proto == kTcp) {
    const std::string problem = send_probe(flow.event);
    if (!problem.empty()) problems += (problems.empty() ? "" : "; ") + problem;
  }
  return problems;
}

std::string ConnectionCutter::delete_conntrack_entry(const pc_verdict_event& event) {
  if (conntrack_ == nullptr) {
    conntrack_ = nfct_open(CONNTRACK, 0);
    if (conntrack_ == nullptr) return std::string("cannot open ctnetlink: ") + std::strerror(errno);
  }
  nf_conntrack* entry = nfct_new();
  if (entry == nullptr) return "out of memory";
  const bool v4 = event.family == PC_FAMILY_IPV4;
  nfct_set_attr_u8(entry, ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
  if (v4) {
    nfct_set_attr_u32(entry, ATTR_IPV4_SRC, event.src.v4);
    nfct_set_attr_u32(entry, ATTR_IPV4_DST, event.dst.v4);
  } else {
    nfct_set_attr(entry, ATTR_IPV6_SRC, event.src.bytes);
    nfct_set_attr(entry, ATTR_IPV6_DST, event.dst.bytes);
  }
  nfct_set_attr_u8(entry, ATTR_L4PROTO, event.proto);
  if (event.proto == kIcmp || event.proto == kIcmpv6) {
    nfct_set_attr_u8(entry, ATTR_ICMP_TYPE, static_cast<uint8_t>(event.dport));
    nfct_set_attr_u8(entry, ATTR_ICMP_CODE, 0);
    nfct_set_attr_u16(entry, ATTR_ICMP_ID, htons(event.sport));
  } else {
    nfct_set_attr_u16(entry, ATTR_PORT_SRC, htons(event.sport));
    nfct_set_attr_u16(entry, ATTR_PORT_DST, htons(event.dport));
  }
  const int result = nfct_query(conntrack_, NFCT_Q_DESTROY, entry);
  const int error = errno;
  nfct_destroy(entry);
  if (result == 0) return {};
  // Not tracked (no conntrack in this namespace, or the entry timed out): nothing to end.
  if (error == ENOENT) return {};
  return "cannot delete the conntrack entry of " + describe(event) + ": " + std::strerror(error);
}

std::string ConnectionCutter::send_probe(const pc_verdict_event& event) {
  const bool v4 = event.family == PC_FAMILY_IPV4;
  int& fd = v4 ? raw_v4_ : raw_v6_;
  if (fd < 0) {
    // IPPROTO_RAW: the packet carries its own IP header, from the server's address.
    fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) return std::string("cannot open a raw socket: ") + std::strerror(errno);
    // A masquerading gateway runs portcullis_outside where the probe leaves, on the revoked flow: the mark
    // that lets the data plane's own answers through lets it through.
    const uint32_t mark = PC_REJECT_MARK;
    (void)::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
  }
  const policy::IpAddress client = dataplane::address_of(event.src, event.family);
  const policy::IpAddress server = dataplane::address_of(event.dst, event.family);
  // A different sequence number each time: a receive window is a sliver of the sequence space.
  probe_seq_ = probe_seq_ * 1664525u + 1013904223u;
  const std::vector<uint8_t> packet = punt::tcp_ack_probe(server, event.dport, client, event.sport, probe_seq_);
  ssize_t sent = 0;
  if (v4) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    std::memcpy(&to.sin_addr, client.bytes.data(), 4);
    sent = ::sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  } else {
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    std::memcpy(&to.sin6_addr, client.bytes.data(), 16);
    sent = ::sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  }
  if (sent < 0) return "cannot send the reset probe to " + describe(event) + ": " + std::strerror(errno);
  return {};
}

}  // namespace portcullis::conntrack
