// What a pending flow shows at its start, and the verdict that follows from it. Pure: byte spans and the
// policy in, results out, so every case is testable without a kernel.
//
// A TCP client's first bytes are read as the protocol their first byte announces: a TLS handshake record
// (0x16) as a ClientHello, "SSH-" as an SSH banner, anything else as an HTTP/1.x request head. Bytes that fit
// none of them are a flow of no known protocol: only L4 rules can allow it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "parsers/quic_initial.h"
#include "policy/compiled_policy.h"
#include "portcullis/drop_reasons.h"

namespace portcullis::punt {

struct FlowIdentity {
  enum class State : uint8_t {
    need_more,   // the bytes so far are the start of something: wait for more
    identified,  // l7 and name are known (name may be absent: a ClientHello without SNI, HTTP/1.0)
    unknown,     // the bytes are no protocol portcullis reads: l7 none
    malformed,   // the protocol is clear but its message cannot be read safely: deny
  };
  State state = State::need_more;
  policy::L7Proto l7 = policy::L7Proto::none;
  std::optional<std::string> name;  // normalized SNI or Host; never an IP literal
  bool ech = false;                 // the ClientHello carries encrypted_client_hello: name is the outer one
  // QUIC of a version whose Initials cannot be read: defaults.quic_unknown_version decides.
  bool quic_unknown_version = false;
  std::string detail;  // the parser's reason, for logs
};

// Reads the start of a TCP client's stream.
FlowIdentity identify_tcp_stream(std::span<const uint8_t> stream);

// Whether a UDP client's first datagram starts a QUIC long header (RFC 9000 17.2: form and fixed bits).
bool starts_quic_long_header(std::span<const uint8_t> datagram);

// What a QUIC client's datagrams so far show (QuicClientHelloReader's result).
FlowIdentity identify_quic(const parsers::QuicClientHelloResult& result);
// What one DNS query (a message, without a TCP length prefix) shows: dns, asking for its name; or malformed.
FlowIdentity identify_dns_query(std::span<const uint8_t> message);

// The first packet of a pending flow, from its initiator.
struct PendingFlowFacts {
  policy::IpAddress src;
  policy::IpAddress dst;
  policy::L4Proto proto = policy::L4Proto::tcp;
  uint16_t dport = 0;
  uint8_t icmp_type = 0;
};

struct PendingVerdict {
  bool allow = false;
  uint32_t reason = PC_DROP_NONE;  // enum pc_drop_reason for a deny
  const policy::Rule* rule = nullptr;
  std::optional<size_t> group;
};

// The verdict for a flow that showed `identity` (identified or unknown; need_more is the caller's to wait
// out). Name rules hold only with a DNS binding when sni_ip_binding is dns: a match without one is denied as
// no-dns-binding. QUIC of an unreadable version is allowed or denied as
// defaults.quic_unknown_version says, with no rule: its name cannot be known.
// `name_bound`: DNS bound the flow's destination address to the name it shows (DnsBindings).
PendingVerdict decide_pending_flow(const policy::CompiledPolicy& policy, policy::Mode mode,
                                   const PendingFlowFacts& flow, const FlowIdentity& identity, bool name_bound = false);

// For a flow that shows no name and cannot (SSH, plain TCP or UDP, ICMP: not TLS, QUIC or HTTP, which must
// show theirs): decided as if it showed each name DNS bound its destination to (`bound_names`). An allow by
// one of them allows; a rule's deny of one of them wins; with none, as decide_pending_flow decides it.
// A flow that shows a name is decided by it, but a deny of its protocol to one of the names its destination is
// bound to (a tcp, udp, icmp, any, ssh or ftp rule) holds all the same.
PendingVerdict decide_by_bound_names(const policy::CompiledPolicy& policy, policy::Mode mode,
                                     const PendingFlowFacts& flow, const FlowIdentity& identity,
                                     const std::vector<std::string>& bound_names);

// The deny of a rule that matches the flow through one of `bound_names` only (a rule of another protocol than
// tls, quic, http and https, whose destination names it), or nullopt.
std::optional<PendingVerdict> denied_by_bound_names(const policy::CompiledPolicy& policy, policy::Mode mode,
                                                    const PendingFlowFacts& flow, const FlowIdentity& identity,
                                                    const std::vector<std::string>& bound_names);

}  // namespace portcullis::punt
