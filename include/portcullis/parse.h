/* The packet parser of the data plane, written once for the BPF programs (TC and XDP) and for
 * userspace (replay, tests, fuzzers): Ethernet, up to two VLAN tags, IPv4 with options and fragments,
 * IPv6 with a bounded extension-header walk, TCP, UDP, ICMP, ICMPv6, and the packet an ICMP error
 * quotes.
 *
 * One style throughout: a cursor holds an offset into [data, data_end), one small function per header
 * asks pc_cursor_peek() for the header's bytes and advances past them. pc_cursor_peek() is the only
 * place packet bytes are bounds-checked, so every read has the check the verifier needs right before
 * it. Loops have constant bounds: the verifier walks every iteration, and a program that inlines
 * pc_parse_packet pays about 150k of its 1M verified instructions for it, mostly the three VLAN layouts
 * times the IPv6 extension walks (see pc_walk_ipv6_extensions for what keeps that linear).
 *
 * Two lengths bound a header: the bytes present (data_end) and what the IP header declares. They fail
 * with different reasons: a header past data_end is truncated; a header longer than the IP length
 * leaves room for is a malformed length, or, in a first fragment, a fragment too short. IP lengths are
 * never compared with data_end, because data_end is not the packet's end for a non-linear skb. */
#ifndef PORTCULLIS_PARSE_H
#define PORTCULLIS_PARSE_H

#include "portcullis/compat.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/packet.h"

/* Wire formats, declared here rather than taken from <linux/ip.h> and friends: in userspace those
 * collide with glibc's <netinet/in.h>, <netinet/ip.h> and <net/if.h>, and this header must be
 * includable next to them in any order. */
#define PC_ETH_P_IPV4 0x0800
#define PC_ETH_P_IPV6 0x86DD
#define PC_ETH_P_8021Q 0x8100
#define PC_ETH_P_8021AD 0x88A8

#define PC_IPPROTO_HOPOPTS 0
#define PC_IPPROTO_ICMP 1
#define PC_IPPROTO_TCP 6
#define PC_IPPROTO_UDP 17
#define PC_IPPROTO_ROUTING 43
#define PC_IPPROTO_FRAGMENT 44
#define PC_IPPROTO_AH 51
#define PC_IPPROTO_ICMPV6 58
#define PC_IPPROTO_NONE 59
#define PC_IPPROTO_DSTOPTS 60

#define PC_MAX_VLAN_TAGS 2
/* Real traffic carries two or three; a long chain is a way to hide the upper layer from firewalls. */
#define PC_MAX_IPV6_EXT_HEADERS 8
/* An ICMP error quotes the offending IP header and at least this much of what followed (RFC 792). */
#define PC_ICMP_QUOTED_L4_LEN 8

#define PC_VLAN_VID_MASK 0x0FFF
#define PC_IPV4_MF 0x2000
#define PC_IPV4_OFFSET_MASK 0x1FFF	/* in 8-byte units */
#define PC_IPV6_FRAG_MF 0x0001
#define PC_IPV6_FRAG_OFFSET_MASK 0xFFF8 /* already in bytes */

struct pc_eth_hdr {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
} PC_WIRE_STRUCT;

struct pc_vlan_hdr {
	__be16 tci;
	__be16 proto;
} PC_WIRE_STRUCT;

struct pc_ipv4_hdr {
	__u8 version_ihl;
	__u8 tos;
	__be16 total_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
} PC_WIRE_STRUCT;

struct pc_ipv6_hdr {
	__u8 version_tc;
	__u8 tc_flow[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
} PC_WIRE_STRUCT;

/* Hop-by-hop, routing, destination options and AH start alike: next header, then length. */
struct pc_ipv6_ext_hdr {
	__u8 nexthdr;
	__u8 len;
} PC_WIRE_STRUCT;

struct pc_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
} PC_WIRE_STRUCT;

struct pc_tcp_hdr {
	__be16 sport;
	__be16 dport;
	__be32 seq;
	__be32 ack_seq;
	__u8 data_offset;	/* upper 4 bits, in 32-bit words */
	__u8 flags;
	__be16 window;
	__be16 check;
	__be16 urg_ptr;
} PC_WIRE_STRUCT;

struct pc_udp_hdr {
	__be16 sport;
	__be16 dport;
	__be16 len;
	__be16 check;
} PC_WIRE_STRUCT;

/* ICMP and ICMPv6 share it; echo_id and echo_seq only mean that in echo messages. */
struct pc_icmp_hdr {
	__u8 type;
	__u8 code;
	__be16 check;
	__be16 echo_id;
	__be16 echo_seq;
} PC_WIRE_STRUCT;

PC_STATIC_ASSERT(sizeof(struct pc_eth_hdr) == 14, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_vlan_hdr) == 4, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_ipv4_hdr) == 20, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_ipv6_hdr) == 40, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_ipv6_frag_hdr) == 8, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_tcp_hdr) == 20, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_udp_hdr) == 8, "wire format");
PC_STATIC_ASSERT(sizeof(struct pc_icmp_hdr) == 8, "wire format");

struct pc_cursor {
	const __u8 *data;
	const void *data_end;
	__u32 off; /* the next unread byte, from data */
};

/* The len bytes at the cursor, or null when they would end past data_end. */
static __always_inline const void *pc_cursor_peek(const struct pc_cursor *c, __u32 len)
{
	const __u8 *p = c->data + c->off;

	if ((const void *)(p + len) > c->data_end)
		return 0;
	return p;
}

/* What an IPv6 extension-header walk found: the upper-layer protocol and the fragment header, if any. */
struct pc_ipv6_chain {
	__u32 frag_id;
	__u16 frag_offset; /* bytes */
	__u8 nexthdr;
	__u8 is_fragment;
};

static __always_inline int pc_is_vlan_tpid(__be16 proto)
{
	return proto == bpf_htons(PC_ETH_P_8021Q) || proto == bpf_htons(PC_ETH_P_8021AD);
}

/* What the extension-header walk needs to know of each next-header value. An extension header is at
 * least 8 bytes; its length field counts the rest in units of 8 bytes (AH: 4). The fragment header
 * has a fixed length: its unit is 0. Zero: not an extension header, the walk stops there. */
#define PC_IPV6_EXT_MIN_LEN 8
#define PC_IPV6_EXT_UNIT_MASK 0x0C
#define PC_IPV6_EXT_FRAGMENT 0x01
static const __u8 pc_ipv6_ext_kind[256] = {
	/*  0 hop-by-hop */ 8, 0, 0, 0, 0, 0, 0, 0,
	/*  8 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 16 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 24 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 32 */ 0, 0, 0, 0, 0, 0, 0, 0,
	/* 40 */ 0, 0, 0, /* 43 routing */ 8, /* 44 fragment */ PC_IPV6_EXT_FRAGMENT, 0, 0, 0,
	/* 48 */ 0, 0, 0, /* 51 authentication */ 4, 0, 0, 0, 0,
	/* 56 */ 0, 0, 0, 0, /* 60 destination options */ 8,
};

/* ICMP belongs to IPv4 and ICMPv6 to IPv6; the other pairing is just an unknown protocol. */
static __always_inline int pc_is_icmp(__u8 family, __u8 proto)
{
	return proto == (family == PC_FAMILY_IPV4 ? PC_IPPROTO_ICMP : PC_IPPROTO_ICMPV6);
}

static __always_inline int pc_icmp_is_echo(__u8 family, __u8 type)
{
	if (family == PC_FAMILY_IPV4)
		return type == 8 || type == 0;		/* echo request, echo reply */
	return type == 128 || type == 129;
}

/* The errors that quote a packet of a flow the host sent: destination unreachable (which includes
 * IPv4's fragmentation needed), ICMPv6 packet too big, time exceeded, parameter problem. */
static __always_inline int pc_icmp_is_error(__u8 family, __u8 type)
{
	if (family == PC_FAMILY_IPV4)
		return type == 3 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/* RFC 1858: a later fragment that starts inside the TCP header would, once reassembled, rewrite the
 * ports and flags the first fragment was judged by. */
static __always_inline int pc_fragment_overlaps_l4(__u8 proto, __u32 byte_offset)
{
	return proto == PC_IPPROTO_TCP && byte_offset < sizeof(struct pc_tcp_hdr);
}

/* An L4 header longer than the IP length leaves room for. */
static __always_inline enum pc_drop_reason pc_l4_exceeds_ip_length(const struct pc_packet *pkt)
{
	if (pkt->is_first_fragment)
		return PC_DROP_FRAGMENT_L4_TRUNCATED;
	return pkt->family == PC_FAMILY_IPV4 ? PC_DROP_IPV4_BAD_LENGTH : PC_DROP_IPV6_BAD_LENGTH;
}

static __always_inline enum pc_drop_reason pc_parse_ethernet(struct pc_cursor *c, struct pc_packet *pkt)
{
	const struct pc_eth_hdr *eth = (const struct pc_eth_hdr *)pc_cursor_peek(c, sizeof(*eth));
	__be16 proto;
	int i;

	if (!eth)
		return PC_DROP_ETH_TRUNCATED;
	proto = eth->proto;
	c->off += sizeof(*eth);

	/* In TC the kernel usually holds the outer tag in skb->vlan_tci, out of the packet data: only
	 * tags still in the data are seen here. */
	for (i = 0; i < PC_MAX_VLAN_TAGS; i++) {
		const struct pc_vlan_hdr *vlan;

		if (!pc_is_vlan_tpid(proto))
			break;
		vlan = (const struct pc_vlan_hdr *)pc_cursor_peek(c, sizeof(*vlan));
		if (!vlan)
			return PC_DROP_VLAN_TRUNCATED;
		pkt->vlan_id[i] = bpf_ntohs(vlan->tci) & PC_VLAN_VID_MASK;
		pkt->vlan_count = i + 1;
		proto = vlan->proto;
		c->off += sizeof(*vlan);
	}
	if (pc_is_vlan_tpid(proto))
		return PC_DROP_VLAN_TOO_MANY_TAGS;
	pkt->ethertype = bpf_ntohs(proto);
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_ipv4(struct pc_cursor *c, struct pc_packet *pkt,
							 __u32 *l4_len)
{
	const struct pc_ipv4_hdr *ip = (const struct pc_ipv4_hdr *)pc_cursor_peek(c, sizeof(*ip));
	__u32 hdr_len, total_len;
	__u16 frag;

	if (!ip)
		return PC_DROP_IPV4_TRUNCATED;
	hdr_len = (ip->version_ihl & 0x0F) * 4;
	if ((ip->version_ihl >> 4) != 4 || hdr_len < sizeof(*ip))
		return PC_DROP_IPV4_BAD_HEADER;
	total_len = bpf_ntohs(ip->total_len);
	if (total_len < hdr_len)
		return PC_DROP_IPV4_BAD_LENGTH;
	pkt->family = PC_FAMILY_IPV4;
	pkt->proto = ip->protocol;
	pkt->src.v4 = ip->saddr;
	pkt->dst.v4 = ip->daddr;

	frag = bpf_ntohs(ip->frag_off);
	if (frag & (PC_IPV4_MF | PC_IPV4_OFFSET_MASK)) {
		pkt->is_fragment = 1;
		pkt->is_first_fragment = !(frag & PC_IPV4_OFFSET_MASK);
		pkt->frag_id = bpf_ntohs(ip->id);
		if (!pkt->is_first_fragment &&
		    pc_fragment_overlaps_l4(pkt->proto, (__u32)(frag & PC_IPV4_OFFSET_MASK) * 8))
			return PC_DROP_FRAGMENT_OVERLAPS_L4;
	}

	c->off += hdr_len;
	if (!pc_cursor_peek(c, 0))
		return PC_DROP_IPV4_TRUNCATED; /* the options run past the data */
	*l4_len = total_len - hdr_len;
	return PC_DROP_NONE;
}

static __always_inline void pc_read_ipv6_fragment_header(const struct pc_ipv6_frag_hdr *frag,
							 struct pc_ipv6_chain *chain)
{
	__u16 frag_off = bpf_ntohs(frag->frag_off);

	/* Offset 0 without M is an atomic fragment: a whole packet (RFC 6946). */
	if (frag_off & (PC_IPV6_FRAG_MF | PC_IPV6_FRAG_OFFSET_MASK)) {
		chain->is_fragment = 1;
		chain->frag_offset = frag_off & PC_IPV6_FRAG_OFFSET_MASK;
		chain->frag_id = bpf_ntohl(frag->id);
	}
}

/* Walks the extension headers from the cursor to the upper-layer header, which the cursor is left at.
 * A non-first fragment stops the walk at its fragment header: what follows is fragment data.
 *
 * Header lengths come from pc_ipv6_ext_kind through one formula, with no branch on the header type:
 * the verifier follows each branch separately and cannot merge walks whose offsets grew differently,
 * so a switch per type makes verification exponential in the chain length. */
static __always_inline enum pc_drop_reason pc_walk_ipv6_extensions(struct pc_cursor *c,
								   struct pc_ipv6_chain *chain)
{
	int i;

	for (i = 0; i < PC_MAX_IPV6_EXT_HEADERS; i++) {
		const struct pc_ipv6_ext_hdr *ext;
		__u32 kind = pc_ipv6_ext_kind[chain->nexthdr];

		if (!kind || chain->frag_offset)
			break;
		ext = (const struct pc_ipv6_ext_hdr *)pc_cursor_peek(c, PC_IPV6_EXT_MIN_LEN);
		if (!ext)
			return PC_DROP_IPV6_EXT_TRUNCATED;
		if (kind & PC_IPV6_EXT_FRAGMENT)
			pc_read_ipv6_fragment_header((const struct pc_ipv6_frag_hdr *)ext, chain);
		chain->nexthdr = ext->nexthdr;
		c->off += PC_IPV6_EXT_MIN_LEN + ext->len * (kind & PC_IPV6_EXT_UNIT_MASK);
	}
	if (pc_ipv6_ext_kind[chain->nexthdr] && !chain->frag_offset)
		return PC_DROP_IPV6_EXT_CHAIN_TOO_LONG;
	if (!pc_cursor_peek(c, 0))
		return PC_DROP_IPV6_EXT_TRUNCATED; /* the last header runs past the data */
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_ipv6(struct pc_cursor *c, struct pc_packet *pkt,
							 __u32 *l4_len)
{
	const struct pc_ipv6_hdr *ip6 = (const struct pc_ipv6_hdr *)pc_cursor_peek(c, sizeof(*ip6));
	struct pc_ipv6_chain chain;
	enum pc_drop_reason reason;
	__u32 payload_len, ext_start, ext_len;

	if (!ip6)
		return PC_DROP_IPV6_TRUNCATED;
	if ((ip6->version_tc >> 4) != 6)
		return PC_DROP_IPV6_BAD_VERSION;
	pkt->family = PC_FAMILY_IPV6;
	__builtin_memcpy(&pkt->src, ip6->saddr, sizeof(pkt->src));
	__builtin_memcpy(&pkt->dst, ip6->daddr, sizeof(pkt->dst));
	payload_len = bpf_ntohs(ip6->payload_len);
	chain.frag_id = 0;
	chain.frag_offset = 0;
	chain.nexthdr = ip6->nexthdr;
	chain.is_fragment = 0;
	c->off += sizeof(*ip6);

	ext_start = c->off;
	reason = pc_walk_ipv6_extensions(c, &chain);
	if (reason != PC_DROP_NONE)
		return reason;
	pkt->proto = chain.nexthdr;
	if (chain.is_fragment) {
		pkt->is_fragment = 1;
		pkt->is_first_fragment = chain.frag_offset == 0;
		pkt->frag_id = chain.frag_id;
		if (chain.frag_offset && pc_fragment_overlaps_l4(pkt->proto, chain.frag_offset))
			return PC_DROP_FRAGMENT_OVERLAPS_L4;
	}
	ext_len = c->off - ext_start;
	if (ext_len > payload_len)
		return PC_DROP_IPV6_BAD_LENGTH;
	*l4_len = payload_len - ext_len;
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_tcp(struct pc_cursor *c, struct pc_packet *pkt, __u32 l4_len)
{
	const struct pc_tcp_hdr *tcp = (const struct pc_tcp_hdr *)pc_cursor_peek(c, sizeof(*tcp));
	__u32 hdr_len;

	if (l4_len < sizeof(*tcp))
		return pc_l4_exceeds_ip_length(pkt);
	if (!tcp)
		return PC_DROP_TCP_TRUNCATED;
	hdr_len = (tcp->data_offset >> 4) * 4;
	if (hdr_len < sizeof(*tcp))
		return PC_DROP_TCP_BAD_DATA_OFFSET;
	if (hdr_len > l4_len)
		return pkt->is_first_fragment ? PC_DROP_FRAGMENT_L4_TRUNCATED : PC_DROP_TCP_BAD_DATA_OFFSET;
	pkt->sport = bpf_ntohs(tcp->sport);
	pkt->dport = bpf_ntohs(tcp->dport);
	pkt->tcp_flags = tcp->flags;
	c->off += hdr_len;
	if (!pc_cursor_peek(c, 0))
		return PC_DROP_TCP_TRUNCATED; /* the options run past the data */
	pkt->payload_off = c->off;
	pkt->payload_len = l4_len - hdr_len;
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_udp(struct pc_cursor *c, struct pc_packet *pkt, __u32 l4_len)
{
	const struct pc_udp_hdr *udp = (const struct pc_udp_hdr *)pc_cursor_peek(c, sizeof(*udp));
	__u32 udp_len;

	if (l4_len < sizeof(*udp))
		return pc_l4_exceeds_ip_length(pkt);
	if (!udp)
		return PC_DROP_UDP_TRUNCATED;
	pkt->sport = bpf_ntohs(udp->sport);
	pkt->dport = bpf_ntohs(udp->dport);
	c->off += sizeof(*udp);
	pkt->payload_off = c->off;
	if (pkt->is_first_fragment) {
		/* The datagram's length covers fragments still to come. */
		pkt->payload_len = l4_len - sizeof(*udp);
		return PC_DROP_NONE;
	}
	/* Receivers read the payload by the UDP length: the payload handed to L7 parsers must be the same. */
	udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || udp_len > l4_len)
		return PC_DROP_UDP_BAD_LENGTH;
	pkt->payload_len = udp_len - sizeof(*udp);
	return PC_DROP_NONE;
}

/* The first bytes of the quoted L4 header: ports, or an echo identifier. */
static __always_inline enum pc_drop_reason pc_parse_quoted_l4(struct pc_cursor *c, struct pc_packet *pkt)
{
	const struct pc_udp_hdr *ports = (const struct pc_udp_hdr *)pc_cursor_peek(c, PC_ICMP_QUOTED_L4_LEN);
	const struct pc_icmp_hdr *icmp = (const struct pc_icmp_hdr *)ports;

	if (!ports)
		return PC_DROP_ICMP_QUOTE_TRUNCATED;
	if (pkt->inner_is_fragment)
		return PC_DROP_NONE;
	if (pkt->inner_proto == PC_IPPROTO_TCP || pkt->inner_proto == PC_IPPROTO_UDP) {
		/* TCP starts with its ports as UDP does. */
		pkt->inner_sport = bpf_ntohs(ports->sport);
		pkt->inner_dport = bpf_ntohs(ports->dport);
	} else if (pc_is_icmp(pkt->inner_family, pkt->inner_proto) && pc_icmp_is_echo(pkt->inner_family, icmp->type)) {
		pkt->inner_sport = bpf_ntohs(icmp->echo_id);
		pkt->inner_dport = pkt->inner_sport;
	}
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_quoted_ipv4(struct pc_cursor *c, struct pc_packet *pkt,
								__u32 quote_len)
{
	const struct pc_ipv4_hdr *ip = (const struct pc_ipv4_hdr *)pc_cursor_peek(c, sizeof(*ip));
	__u32 hdr_len;

	if (quote_len < sizeof(*ip) + PC_ICMP_QUOTED_L4_LEN || !ip)
		return PC_DROP_ICMP_QUOTE_TRUNCATED;
	hdr_len = (ip->version_ihl & 0x0F) * 4;
	if ((ip->version_ihl >> 4) != 4 || hdr_len < sizeof(*ip))
		return PC_DROP_ICMP_QUOTE_MALFORMED;
	if (quote_len < hdr_len + PC_ICMP_QUOTED_L4_LEN)
		return PC_DROP_ICMP_QUOTE_TRUNCATED;
	pkt->inner_family = PC_FAMILY_IPV4;
	pkt->inner_proto = ip->protocol;
	pkt->inner_src.v4 = ip->saddr;
	pkt->inner_dst.v4 = ip->daddr;
	pkt->inner_is_fragment = (bpf_ntohs(ip->frag_off) & PC_IPV4_OFFSET_MASK) != 0;
	c->off += hdr_len;
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_quoted_ipv6(struct pc_cursor *c, struct pc_packet *pkt,
								__u32 quote_len)
{
	const struct pc_ipv6_hdr *ip6 = (const struct pc_ipv6_hdr *)pc_cursor_peek(c, sizeof(*ip6));
	struct pc_ipv6_chain chain;
	enum pc_drop_reason reason;
	__u32 quote_start = c->off;

	if (quote_len < sizeof(*ip6) + PC_ICMP_QUOTED_L4_LEN || !ip6)
		return PC_DROP_ICMP_QUOTE_TRUNCATED;
	if ((ip6->version_tc >> 4) != 6)
		return PC_DROP_ICMP_QUOTE_MALFORMED;
	pkt->inner_family = PC_FAMILY_IPV6;
	__builtin_memcpy(&pkt->inner_src, ip6->saddr, sizeof(pkt->inner_src));
	__builtin_memcpy(&pkt->inner_dst, ip6->daddr, sizeof(pkt->inner_dst));
	chain.frag_id = 0;
	chain.frag_offset = 0;
	chain.nexthdr = ip6->nexthdr;
	chain.is_fragment = 0;
	c->off += sizeof(*ip6);

	reason = pc_walk_ipv6_extensions(c, &chain);
	if (reason == PC_DROP_IPV6_EXT_TRUNCATED)
		return PC_DROP_ICMP_QUOTE_TRUNCATED;
	if (reason != PC_DROP_NONE)
		return PC_DROP_ICMP_QUOTE_MALFORMED;
	pkt->inner_proto = chain.nexthdr;
	pkt->inner_is_fragment = chain.frag_offset != 0;
	if (c->off - quote_start + PC_ICMP_QUOTED_L4_LEN > quote_len)
		return PC_DROP_ICMP_QUOTE_TRUNCATED;
	return PC_DROP_NONE;
}

/* The flow an ICMP error reports on: the quoted IP header and the first bytes of its L4 header. */
static __always_inline enum pc_drop_reason pc_parse_icmp_quote(struct pc_cursor *c, struct pc_packet *pkt,
							       __u32 quote_len)
{
	enum pc_drop_reason reason;

	if (pkt->family == PC_FAMILY_IPV4)
		reason = pc_parse_quoted_ipv4(c, pkt, quote_len);
	else
		reason = pc_parse_quoted_ipv6(c, pkt, quote_len);
	if (reason != PC_DROP_NONE)
		return reason;
	return pc_parse_quoted_l4(c, pkt);
}

/* ICMP over IPv4 and ICMPv6 over IPv6: the header is the same, the type numbers differ. */
static __always_inline enum pc_drop_reason pc_parse_icmp(struct pc_cursor *c, struct pc_packet *pkt, __u32 l4_len)
{
	const struct pc_icmp_hdr *icmp = (const struct pc_icmp_hdr *)pc_cursor_peek(c, sizeof(*icmp));

	if (l4_len < sizeof(*icmp))
		return pc_l4_exceeds_ip_length(pkt);
	if (!icmp)
		return PC_DROP_ICMP_TRUNCATED;
	pkt->icmp_type = icmp->type;
	pkt->icmp_code = icmp->code;
	c->off += sizeof(*icmp);
	pkt->payload_off = c->off;
	pkt->payload_len = l4_len - sizeof(*icmp);
	if (pc_icmp_is_echo(pkt->family, icmp->type)) {
		pkt->sport = bpf_ntohs(icmp->echo_id);
		pkt->dport = pkt->sport;
	} else if (pc_icmp_is_error(pkt->family, icmp->type)) {
		return pc_parse_icmp_quote(c, pkt, l4_len - sizeof(*icmp));
	}
	return PC_DROP_NONE;
}

static __always_inline enum pc_drop_reason pc_parse_l4(struct pc_cursor *c, struct pc_packet *pkt, __u32 l4_len)
{
	if (!pkt->is_fragment || pkt->is_first_fragment) {
		if (pkt->proto == PC_IPPROTO_TCP)
			return pc_parse_tcp(c, pkt, l4_len);
		if (pkt->proto == PC_IPPROTO_UDP)
			return pc_parse_udp(c, pkt, l4_len);
		if (pc_is_icmp(pkt->family, pkt->proto))
			return pc_parse_icmp(c, pkt, l4_len);
	}
	/* A protocol without ports (GRE, ESP, No Next Header, ...) or a non-first fragment's data. */
	pkt->payload_off = c->off;
	pkt->payload_len = l4_len;
	return PC_DROP_NONE;
}

/* Parses the Ethernet frame in [data, data_end) into pkt. PC_DROP_NONE with pkt->family ==
 * PC_FAMILY_NONE is a frame that is not IP (ARP, ...), for the caller to pass; any other reason is a
 * malformed packet to drop and count.
 *
 * In TC, data_end ends the skb's linear part: the caller pulls the headers in first
 * (bpf_skb_pull_data) or a non-linear packet reads as truncated. */
static __always_inline enum pc_drop_reason pc_parse_packet(const void *data, const void *data_end,
							   struct pc_packet *pkt)
{
	struct pc_cursor c;
	enum pc_drop_reason reason;
	__u32 l4_len = 0;

	c.data = (const __u8 *)data;
	c.data_end = data_end;
	c.off = 0;
	__builtin_memset(pkt, 0, sizeof(*pkt));

	reason = pc_parse_ethernet(&c, pkt);
	if (reason != PC_DROP_NONE)
		return reason;
	pkt->l3_off = c.off;
	if (pkt->ethertype == PC_ETH_P_IPV4)
		reason = pc_parse_ipv4(&c, pkt, &l4_len);
	else if (pkt->ethertype == PC_ETH_P_IPV6)
		reason = pc_parse_ipv6(&c, pkt, &l4_len);
	else
		return PC_DROP_NONE;
	if (reason != PC_DROP_NONE)
		return reason;
	pkt->l4_off = c.off;
	return pc_parse_l4(&c, pkt, l4_len);
}

#endif
