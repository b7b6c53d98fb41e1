/* Why the data plane drops a packet: one reason per failure, shared by the parser, the classifier and
 * the per-reason counter table the daemon reports. Plain C for both builds.
 *
 * The values index counter maps that stay pinned across daemon restarts, so they are fixed: add new
 * reasons in the free slots of their block and never renumber. */
#ifndef PORTCULLIS_DROP_REASONS_H
#define PORTCULLIS_DROP_REASONS_H

#include "portcullis/compat.h"

enum pc_drop_reason {
	PC_DROP_NONE = 0,

	/* Parsing (parse.h): the packet cannot be read as what it claims to be. A frame that is not
	 * IPv4 or IPv6 (ARP, LLDP, ...) is not a drop: the parser reports it as not IP. */
	PC_DROP_ETH_TRUNCATED = 1,
	PC_DROP_VLAN_TRUNCATED = 2,
	PC_DROP_VLAN_TOO_MANY_TAGS = 3,
	PC_DROP_IPV4_TRUNCATED = 4,
	PC_DROP_IPV4_BAD_HEADER = 5,		/* version is not 4, or IHL below 5 */
	PC_DROP_IPV4_BAD_LENGTH = 6,		/* total length shorter than the headers it carries */
	PC_DROP_IPV6_TRUNCATED = 7,
	PC_DROP_IPV6_BAD_VERSION = 8,
	PC_DROP_IPV6_BAD_LENGTH = 9,		/* payload length shorter than the headers it carries */
	PC_DROP_IPV6_EXT_CHAIN_TOO_LONG = 10,
	PC_DROP_IPV6_EXT_TRUNCATED = 11,
	PC_DROP_FRAGMENT_L4_TRUNCATED = 12,	/* a first fragment that does not hold its whole L4 header */
	PC_DROP_FRAGMENT_OVERLAPS_L4 = 13,	/* a later fragment that would rewrite the TCP header */
	PC_DROP_TCP_TRUNCATED = 14,
	PC_DROP_TCP_BAD_DATA_OFFSET = 15,
	PC_DROP_UDP_TRUNCATED = 16,
	PC_DROP_UDP_BAD_LENGTH = 17,
	PC_DROP_ICMP_TRUNCATED = 18,		/* ICMP and ICMPv6 */
	PC_DROP_ICMP_QUOTE_TRUNCATED = 19,	/* an error quoting less than an IP header and 8 bytes */
	PC_DROP_ICMP_QUOTE_MALFORMED = 20,	/* an error quoting something that is not its IP version */
	PC_DROP_FRAGMENT_NO_FIRST = 21,		/* a later fragment whose first fragment was not seen */
	PC_DROP_ICMP_ERROR_NO_FLOW = 22,	/* an ICMP error about a flow that is not allowed */
	/* 23..31: free for parsing */

	/* Policy (the classifier) */
	PC_DROP_NEEDS_L7 = 32,			/* pending a name the flow has not shown, and cannot be held */
	PC_DROP_DENIED_BY_RULE = 33,
	PC_DROP_DENIED_BY_DEFAULT = 34,
	PC_DROP_SOURCE_NOT_IN_GROUP = 35,
	PC_DROP_DNS_NOT_RESOLVER = 36,
	PC_DROP_FLOW_DENIED = 37,		/* XDP early drop of a flow already denied */
	PC_DROP_UNSOLICITED_INBOUND = 38,	/* gateway: a packet from outside that belongs to no flow */

	/* Punt and hold (punt.h), and what the daemon decides for a pending flow */
	PC_DROP_NO_DAEMON = 39,			/* pending, and no daemon is there to read its name */
	PC_DROP_PUNT_RATE = 40,			/* the source punts faster than its token bucket allows */
	PC_DROP_HOLD_LIMIT = 41,		/* the flow's held bytes would pass their bound */
	PC_DROP_PUNT_QUEUE_FULL = 42,		/* the punt ring had no room */
	PC_DROP_PUNT_TOO_LARGE = 43,		/* a frame larger than the punt buffer */
	PC_DROP_L7_TIMEOUT = 44,		/* the flow showed no name within l7_timeout_ms */
	PC_DROP_L7_MISMATCH = 45,		/* the flow does not start the way its rules require */
	PC_DROP_L7_MALFORMED = 46,		/* a ClientHello, request or banner that cannot be read safely */
	PC_DROP_STREAM_CONFLICT = 47,		/* retransmitted bytes that differ from the first copy */
	PC_DROP_NO_DNS_BINDING = 48,		/* matched by name, but DNS never bound the address to it */
	PC_DROP_HOLD_MEMORY = 49,		/* the daemon's held memory is full */
	PC_DROP_ECH_REFUSED = 50,		/* an ECH ClientHello under `ech: deny` */
	PC_DROP_QUIC_UNKNOWN_VERSION = 51,	/* QUIC whose Initials cannot be read, under `quic_unknown_version: deny` */
	PC_DROP_QUERY_FILTERED = 52,		/* a DNS query for a name no rule of the client's could allow */
	PC_DROP_REVOKED = 53,			/* allowed, until a reloaded policy stopped allowing it */
	/* Not drops: why a flow waits, or which allow it got. */
	PC_DROP_AWAITS_EXPECTATION = 54,	/* held: maybe an FTP data connection whose expectation is on its way */
	PC_DROP_EXPECTED = 55,			/* allowed as the data connection its control connection announced */
	PC_DROP_NO_EXPECTATION = 56,		/* between FTP peers, but no control connection announced it */
	PC_DROP_BOUND_NAME = 57,		/* held: its address is bound to a name a deny rule names (bound_names.h) */
	PC_DROP_ANSWER_FRAGMENTED = 58,		/* a DNS answer in IP fragments: what it binds cannot be read */
	/* 59..: free */

	PC_DROP_MAX = 59,
};

PC_STATIC_ASSERT(sizeof(enum pc_drop_reason) == 4, "drop reasons are stored as __u32 in maps and records");

#ifndef __bpf__
/* The reason's name in counters and logs; "unknown" for a value this build does not know. */
static inline const char *pc_drop_reason_name(enum pc_drop_reason reason)
{
	switch (reason) {
	case PC_DROP_NONE: return "none";
	case PC_DROP_ETH_TRUNCATED: return "ethernet-truncated";
	case PC_DROP_VLAN_TRUNCATED: return "vlan-truncated";
	case PC_DROP_VLAN_TOO_MANY_TAGS: return "vlan-too-many-tags";
	case PC_DROP_IPV4_TRUNCATED: return "ipv4-truncated";
	case PC_DROP_IPV4_BAD_HEADER: return "ipv4-bad-header";
	case PC_DROP_IPV4_BAD_LENGTH: return "ipv4-bad-total-length";
	case PC_DROP_IPV6_TRUNCATED: return "ipv6-truncated";
	case PC_DROP_IPV6_BAD_VERSION: return "ipv6-bad-version";
	case PC_DROP_IPV6_BAD_LENGTH: return "ipv6-bad-payload-length";
	case PC_DROP_IPV6_EXT_CHAIN_TOO_LONG: return "ipv6-ext-chain-too-long";
	case PC_DROP_IPV6_EXT_TRUNCATED: return "ipv6-ext-header-truncated";
	case PC_DROP_FRAGMENT_L4_TRUNCATED: return "first-fragment-l4-truncated";
	case PC_DROP_FRAGMENT_OVERLAPS_L4: return "fragment-overlaps-l4-header";
	case PC_DROP_TCP_TRUNCATED: return "tcp-truncated";
	case PC_DROP_TCP_BAD_DATA_OFFSET: return "tcp-bad-data-offset";
	case PC_DROP_UDP_TRUNCATED: return "udp-truncated";
	case PC_DROP_UDP_BAD_LENGTH: return "udp-bad-length";
	case PC_DROP_ICMP_TRUNCATED: return "icmp-truncated";
	case PC_DROP_ICMP_QUOTE_TRUNCATED: return "icmp-quote-truncated";
	case PC_DROP_ICMP_QUOTE_MALFORMED: return "icmp-quote-malformed";
	case PC_DROP_FRAGMENT_NO_FIRST: return "fragment-without-first";
	case PC_DROP_ICMP_ERROR_NO_FLOW: return "icmp-error-without-flow";
	case PC_DROP_NEEDS_L7: return "needs-l7";
	case PC_DROP_DENIED_BY_RULE: return "denied-by-rule";
	case PC_DROP_DENIED_BY_DEFAULT: return "denied-by-default";
	case PC_DROP_SOURCE_NOT_IN_GROUP: return "source-not-in-group";
	case PC_DROP_DNS_NOT_RESOLVER: return "dns-not-resolver";
	case PC_DROP_FLOW_DENIED: return "flow-denied";
	case PC_DROP_UNSOLICITED_INBOUND: return "unsolicited-inbound";
	case PC_DROP_NO_DAEMON: return "no-daemon";
	case PC_DROP_PUNT_RATE: return "punt-rate-limited";
	case PC_DROP_HOLD_LIMIT: return "hold-limit";
	case PC_DROP_PUNT_QUEUE_FULL: return "punt-queue-full";
	case PC_DROP_PUNT_TOO_LARGE: return "punt-too-large";
	case PC_DROP_L7_TIMEOUT: return "l7-timeout";
	case PC_DROP_L7_MISMATCH: return "l7-mismatch";
	case PC_DROP_L7_MALFORMED: return "l7-malformed";
	case PC_DROP_STREAM_CONFLICT: return "stream-conflict";
	case PC_DROP_NO_DNS_BINDING: return "no-dns-binding";
	case PC_DROP_HOLD_MEMORY: return "hold-memory";
	case PC_DROP_ECH_REFUSED: return "ech-refused";
	case PC_DROP_QUIC_UNKNOWN_VERSION: return "quic-unknown-version";
	case PC_DROP_QUERY_FILTERED: return "query-filtered";
	case PC_DROP_REVOKED: return "revoked";
	case PC_DROP_AWAITS_EXPECTATION: return "awaits-expectation";
	case PC_DROP_EXPECTED: return "expected";
	case PC_DROP_NO_EXPECTATION: return "no-expectation";
	case PC_DROP_BOUND_NAME: return "bound-name";
	case PC_DROP_ANSWER_FRAGMENTED: return "answer-fragmented";
	case PC_DROP_MAX: break;
	}
	return "unknown";
}
#endif

#endif
