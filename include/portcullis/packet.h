/* What the parser (parse.h) reads out of a packet, and the flow key both directions of a flow share.
 * Plain C for both builds; these layouts become map keys and event records, so every field is
 * fixed-size, padding is explicit and each size is pinned. */
#ifndef PORTCULLIS_PACKET_H
#define PORTCULLIS_PACKET_H

#include "portcullis/compat.h"

#define PC_FAMILY_NONE 0 /* not IP: ARP, LLDP, ... */
#define PC_FAMILY_IPV4 4
#define PC_FAMILY_IPV6 6

#define PC_TCP_FIN 0x01
#define PC_TCP_SYN 0x02
#define PC_TCP_RST 0x04
#define PC_TCP_PSH 0x08
#define PC_TCP_ACK 0x10
#define PC_TCP_URG 0x20
#define PC_TCP_ECE 0x40
#define PC_TCP_CWR 0x80

/* An IPv4 or IPv6 address in network byte order; IPv4 fills the first 4 bytes, the rest stay zero. */
union pc_addr {
	__u8 bytes[16];
	__be32 v4;
	__be32 words[4];
	__u64 dwords[2];
};
PC_STATIC_ASSERT(sizeof(union pc_addr) == 16, "pc_addr layout is shared with BPF");

/* One packet as parsed. Offsets count from the first byte of the frame. payload_len is what the IP
 * and L4 headers declare: fewer bytes may be present (a non-linear skb, a capture's snap length).
 * On a drop, the fields parsed before the failure are kept, so a drop can be logged with its
 * addresses. */
struct pc_packet {
	union pc_addr src;
	union pc_addr dst;
	/* ICMP and ICMPv6 errors: the packet the error quotes, that is the flow it belongs to. */
	union pc_addr inner_src;
	union pc_addr inner_dst;
	__u32 frag_id;		/* IPv4: the 16-bit identification; IPv6: the fragment header's */
	__u16 ethertype;	/* after the VLAN tags */
	__u16 vlan_id[2];	/* outermost first */
	__u16 l3_off;
	__u16 l4_off;		/* non-first fragments: the fragment's data */
	__u16 payload_off;	/* after the L4 header; ICMP errors: the quoted packet */
	__u16 payload_len;
	/* Host byte order. ICMP echo request and reply carry the echo identifier in both, which is how
	 * the two directions of a ping find one flow. Zero when the packet has no ports. */
	__u16 sport;
	__u16 dport;
	__u16 inner_sport;	/* the quoted packet's ports, same conventions */
	__u16 inner_dport;
	__u8 vlan_count;
	__u8 family;		/* PC_FAMILY_* */
	__u8 proto;		/* the upper-layer protocol after any IPv6 extension headers */
	__u8 tcp_flags;		/* PC_TCP_* */
	__u8 icmp_type;
	__u8 icmp_code;
	/* A non-first fragment has no L4 header: the classifier finds its flow by frag_id. */
	__u8 is_fragment;
	__u8 is_first_fragment;
	__u8 inner_family;	/* PC_FAMILY_NONE unless the packet is an ICMP error with a parsed quote */
	__u8 inner_proto;
	__u8 inner_is_fragment;	/* the quote is a non-first fragment: it has no ports */
	__u8 pad[3];
};
PC_STATIC_ASSERT(sizeof(struct pc_packet) == 104, "pc_packet layout is shared with BPF");

/* Both directions of a flow map to one key: the endpoint whose (address, port) is numerically lower
 * is stored first. Ports in host byte order. */
struct pc_flow_key {
	union pc_addr lo_addr;
	union pc_addr hi_addr;
	__u16 lo_port;
	__u16 hi_port;
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};
PC_STATIC_ASSERT(sizeof(struct pc_flow_key) == 40, "pc_flow_key layout is shared with BPF");

/* Which way a packet travels within its flow. A flow whose two endpoints are equal (a socket talking to
 * itself) sees every packet as PC_FLOW_FROM_LO. */
#define PC_FLOW_FROM_LO 0
#define PC_FLOW_FROM_HI 1

static __always_inline int pc_endpoint_less(const union pc_addr *a, __u16 a_port, const union pc_addr *b,
					    __u16 b_port)
{
	const __u64 a0 = bpf_be64_to_cpu(a->dwords[0]), b0 = bpf_be64_to_cpu(b->dwords[0]);

	if (a0 != b0)
		return a0 < b0;
	const __u64 a1 = bpf_be64_to_cpu(a->dwords[1]), b1 = bpf_be64_to_cpu(b->dwords[1]);

	if (a1 != b1)
		return a1 < b1;
	return a_port < b_port;
}

static __always_inline void pc_flow_key_fill(struct pc_flow_key *key, __u8 family, __u8 proto,
					     const union pc_addr *src, __u16 sport, const union pc_addr *dst,
					     __u16 dport, __u8 *direction)
{
	if (pc_endpoint_less(dst, dport, src, sport)) {
		key->lo_addr = *dst;
		key->lo_port = dport;
		key->hi_addr = *src;
		key->hi_port = sport;
		*direction = PC_FLOW_FROM_HI;
	} else {
		key->lo_addr = *src;
		key->lo_port = sport;
		key->hi_addr = *dst;
		key->hi_port = dport;
		*direction = PC_FLOW_FROM_LO;
	}
	key->family = family;
	key->proto = proto;
	key->pad[0] = 0;
	key->pad[1] = 0;
}

/* The key of the flow the packet belongs to, and the way it travels. Returns -1 when the packet has
 * no tuple of its own: not IP, or a non-first fragment (found through its first fragment instead).
 * An ICMP error gets a key of its own here; pc_flow_key_from_quoted gives the flow it reports on. */
static __always_inline int pc_flow_key_from_packet(const struct pc_packet *pkt, struct pc_flow_key *key,
						   __u8 *direction)
{
	if (pkt->family == PC_FAMILY_NONE || (pkt->is_fragment && !pkt->is_first_fragment))
		return -1;
	pc_flow_key_fill(key, pkt->family, pkt->proto, &pkt->src, pkt->sport, &pkt->dst, pkt->dport, direction);
	return 0;
}

/* For an ICMP or ICMPv6 error: the key of the flow whose packet it quotes, and the way that quoted
 * packet travelled (the error itself comes back the other way). Returns -1 when the packet is not an
 * error with a quote, or when the quote is a non-first fragment and so has no ports. */
static __always_inline int pc_flow_key_from_quoted(const struct pc_packet *pkt, struct pc_flow_key *key,
						   __u8 *direction)
{
	if (pkt->inner_family == PC_FAMILY_NONE || pkt->inner_is_fragment)
		return -1;
	pc_flow_key_fill(key, pkt->inner_family, pkt->inner_proto, &pkt->inner_src, pkt->inner_sport,
			 &pkt->inner_dst, pkt->inner_dport, direction);
	return 0;
}

#endif
