/* Turns the first packet of a denied flow into the answer that makes the client give up at once: a TCP
 * RST for TCP, an ICMP or ICMPv6 administratively-prohibited error for anything else. The packet is
 * rewritten in place and sent back the way it came (the caller redirects it). BPF (TC) only.
 *
 * Supported: untagged Ethernet, IPv4 without options, IPv6 without extension headers, unfragmented.
 * Anything else is dropped silently and counted, since a wrong answer is worse than none. The answer
 * comes from the address the client tried to reach, as if that host had refused it. */
#ifndef PORTCULLIS_REJECT_H
#define PORTCULLIS_REJECT_H

#ifndef __bpf__
#error "reject.h rewrites skbs; it is for the TC program"
#endif

#include "portcullis/compat.h"
#include "portcullis/packet.h"
#include "portcullis/parse.h"
#include "portcullis/punt.h"

#define PC_ETH_LEN 14
#define PC_IPV4_LEN 20
#define PC_IPV6_LEN 40
#define PC_TCP_LEN 20
#define PC_ICMP_LEN 8
#define PC_REJECT_TTL 64

struct pc_ipv4_pseudo {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

struct pc_ipv6_pseudo {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

static __always_inline __u16 pc_csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline void pc_swap_macs(struct pc_eth_hdr *eth)
{
	__u8 tmp[6];

	__builtin_memcpy(tmp, eth->dst, 6);
	__builtin_memcpy(eth->dst, eth->src, 6);
	__builtin_memcpy(eth->src, tmp, 6);
}

/* `to_client`: the answer goes from pkt->dst back to pkt->src; else on the packet's own way. */
static __always_inline void pc_fill_ipv4_dir(struct pc_ipv4_hdr *ip, const struct pc_packet *pkt, __u8 proto, __u16 len,
					     int to_client)
{
	ip->version_ihl = 0x45;
	ip->tos = 0;
	ip->total_len = bpf_htons(len);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = PC_REJECT_TTL;
	ip->protocol = proto;
	ip->check = 0;
	ip->saddr = to_client ? pkt->dst.v4 : pkt->src.v4;
	ip->daddr = to_client ? pkt->src.v4 : pkt->dst.v4;
	ip->check = pc_csum_fold(bpf_csum_diff(0, 0, (__be32 *)ip, PC_IPV4_LEN, 0));
}

static __always_inline void pc_fill_ipv4(struct pc_ipv4_hdr *ip, const struct pc_packet *pkt, __u8 proto, __u16 len)
{
	pc_fill_ipv4_dir(ip, pkt, proto, len, 1);
}

static __always_inline void pc_fill_ipv6_dir(struct pc_ipv6_hdr *ip, const struct pc_packet *pkt, __u8 proto, __u16 len,
					     int to_client)
{
	ip->version_tc = 0x60;
	ip->tc_flow[0] = 0;
	ip->tc_flow[1] = 0;
	ip->tc_flow[2] = 0;
	ip->payload_len = bpf_htons(len);
	ip->nexthdr = proto;
	ip->hop_limit = PC_REJECT_TTL;
	__builtin_memcpy(ip->saddr, to_client ? pkt->dst.words : pkt->src.words, 16);
	__builtin_memcpy(ip->daddr, to_client ? pkt->src.words : pkt->dst.words, 16);
}

static __always_inline void pc_fill_ipv6(struct pc_ipv6_hdr *ip, const struct pc_packet *pkt, __u8 proto, __u16 len)
{
	pc_fill_ipv6_dir(ip, pkt, proto, len, 1);
}

/* The checksum seed of the pseudo-header of a packet from pkt->dst to pkt->src (the pseudo-header sum does
 * not depend on the order of the two addresses, so it serves both ways). */
static __always_inline __s64 pc_pseudo_sum(const struct pc_packet *pkt, __u8 proto, __u16 len)
{
	if (pkt->family == PC_FAMILY_IPV4) {
		struct pc_ipv4_pseudo ph = {
			.saddr = pkt->dst.v4, .daddr = pkt->src.v4, .zero = 0, .proto = proto, .len = bpf_htons(len)};

		return bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	}
	struct pc_ipv6_pseudo ph;

	__builtin_memset(&ph, 0, sizeof(ph));
	__builtin_memcpy(ph.saddr, pkt->dst.words, 16);
	__builtin_memcpy(ph.daddr, pkt->src.words, 16);
	ph.len = bpf_htonl(len);
	ph.nexthdr = proto;
	return bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
}

static __always_inline __u32 pc_ip_len_of(const struct pc_packet *pkt)
{
	return pkt->family == PC_FAMILY_IPV4 ? PC_IPV4_LEN : PC_IPV6_LEN;
}

/* `v4` is a constant at each call, so every offset below is one too: the verifier tracks packet bounds
 * only through constant offsets. */
static __always_inline int pc_reject_tcp(struct __sk_buff *skb, const struct pc_packet *pkt, const int v4, __u32 ifindex,
					  int egress)
{
	const __u32 ip_len = v4 ? PC_IPV4_LEN : PC_IPV6_LEN;
	const __u32 frame_len = PC_ETH_LEN + ip_len + PC_TCP_LEN;
	__u32 seq, ack_seq, flags;
	void *data, *data_end;
	struct pc_tcp_hdr *tcp;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	tcp = data + PC_ETH_LEN + ip_len;
	if ((void *)(tcp + 1) > data_end)
		return -1;
	/* RFC 793 reset generation: answer an ACK with its acknowledged sequence, anything else with an ACK
	 * of everything the segment occupied. */
	flags = tcp->flags;
	if (flags & PC_TCP_RST)
		return -1; /* never answer a reset */
	const __u32 client_seq = bpf_ntohl(tcp->seq);
	const __u32 client_ack = bpf_ntohl(tcp->ack_seq);

	seq = (flags & PC_TCP_ACK) ? client_ack : 0;
	ack_seq = client_seq + pkt->payload_len + !!(flags & PC_TCP_SYN) + !!(flags & PC_TCP_FIN);

	if (bpf_skb_change_tail(skb, frame_len, 0))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + frame_len > data_end)
		return -1;
	if ((flags & (PC_TCP_SYN | PC_TCP_ACK)) == PC_TCP_ACK) {
		/* The connection is open on the server (its handshake passed, as a pending flow's does): a copy
		 * goes on to the server as a reset at the sequence number it expects, and is let through by the
		 * reinjection mark. */
		tcp = data + PC_ETH_LEN + ip_len;
		tcp->seq = bpf_htonl(client_seq);
		tcp->ack_seq = bpf_htonl(client_ack);
		tcp->data_offset = (PC_TCP_LEN / 4) << 4;
		tcp->flags = PC_TCP_RST | PC_TCP_ACK;
		tcp->window = 0;
		tcp->urg_ptr = 0;
		tcp->check = 0;
		tcp->check = pc_csum_fold(
			bpf_csum_diff(0, 0, (__be32 *)tcp, PC_TCP_LEN, pc_pseudo_sum(pkt, 6, PC_TCP_LEN)));
		if (v4)
			pc_fill_ipv4_dir(data + PC_ETH_LEN, pkt, 6, PC_IPV4_LEN + PC_TCP_LEN, 0);
		else
			pc_fill_ipv6_dir(data + PC_ETH_LEN, pkt, 6, PC_TCP_LEN, 0);
		skb->mark = PC_REINJECT_MARK;
		bpf_clone_redirect(skb, ifindex, egress ? 0 : BPF_F_INGRESS);
		skb->mark = 0;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + frame_len > data_end)
			return -1;
	}
	pc_swap_macs(data);
	tcp = data + PC_ETH_LEN + ip_len;
	tcp->sport = bpf_htons(pkt->dport);
	tcp->dport = bpf_htons(pkt->sport);
	tcp->seq = bpf_htonl(seq);
	tcp->ack_seq = bpf_htonl(ack_seq);
	tcp->data_offset = (PC_TCP_LEN / 4) << 4;
	tcp->flags = (flags & PC_TCP_ACK) ? PC_TCP_RST : (PC_TCP_RST | PC_TCP_ACK);
	tcp->window = 0;
	tcp->urg_ptr = 0;
	tcp->check = 0;
	tcp->check = pc_csum_fold(bpf_csum_diff(0, 0, (__be32 *)tcp, PC_TCP_LEN, pc_pseudo_sum(pkt, 6, PC_TCP_LEN)));
	if (v4)
		pc_fill_ipv4(data + PC_ETH_LEN, pkt, 6, PC_IPV4_LEN + PC_TCP_LEN);
	else
		pc_fill_ipv6(data + PC_ETH_LEN, pkt, 6, PC_TCP_LEN);
	return 0;
}

/* The error quotes the offending IP header and the first 8 bytes after it. */
static __always_inline int pc_reject_icmp(struct __sk_buff *skb, const struct pc_packet *pkt, const int v4)
{
	const __u32 ip_len = v4 ? PC_IPV4_LEN : PC_IPV6_LEN;
	const __u32 quote_len = ip_len + PC_ICMP_QUOTED_L4_LEN;
	const __u32 icmp_len = PC_ICMP_LEN + quote_len;
	const __u32 frame_len = PC_ETH_LEN + ip_len + icmp_len;
	struct pc_icmp_hdr *icmp;
	void *data, *data_end;

	if (bpf_skb_adjust_room(skb, ip_len + PC_ICMP_LEN, BPF_ADJ_ROOM_MAC, 0))
		return -1;
	if (bpf_skb_change_tail(skb, frame_len, 0))
		return -1;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (data + frame_len > data_end)
		return -1;
	pc_swap_macs(data);
	icmp = data + PC_ETH_LEN + ip_len;
	icmp->type = v4 ? 3 : 1;  /* destination unreachable */
	icmp->code = v4 ? 13 : 1; /* communication administratively prohibited */
	icmp->check = 0;
	icmp->echo_id = 0;
	icmp->echo_seq = 0;
	if (v4) {
		icmp->check = pc_csum_fold(bpf_csum_diff(0, 0, (__be32 *)icmp,
							 PC_ICMP_LEN + PC_IPV4_LEN + PC_ICMP_QUOTED_L4_LEN, 0));
		pc_fill_ipv4(data + PC_ETH_LEN, pkt, 1, PC_IPV4_LEN + icmp_len);
	} else {
		icmp->check = pc_csum_fold(bpf_csum_diff(0, 0, (__be32 *)icmp,
							 PC_ICMP_LEN + PC_IPV6_LEN + PC_ICMP_QUOTED_L4_LEN,
							 pc_pseudo_sum(pkt, 58, icmp_len)));
		pc_fill_ipv6(data + PC_ETH_LEN, pkt, 58, icmp_len);
	}
	/* The new frame's protocol is the old one's; only the IPv4 header changed. */
	return 0;
}

/* One subprogram per family, so that the compiler cannot merge the two bodies into one whose packet
 * offsets depend on the family: the verifier only follows constant ones. */
static __attribute__((noinline)) int pc_reject_ipv4(struct __sk_buff *skb, const struct pc_packet *pkt, __u32 ifindex,
						    int egress)
{
	return pkt->proto == PC_IPPROTO_TCP ? pc_reject_tcp(skb, pkt, 1, ifindex, egress) : pc_reject_icmp(skb, pkt, 1);
}

static __attribute__((noinline)) int pc_reject_ipv6(struct __sk_buff *skb, const struct pc_packet *pkt, __u32 ifindex,
						    int egress)
{
	return pkt->proto == PC_IPPROTO_TCP ? pc_reject_tcp(skb, pkt, 0, ifindex, egress) : pc_reject_icmp(skb, pkt, 0);
}

/* Rewrites the packet into its reject. Returns 0 when the skb now holds the answer. A TCP segment of an
 * established connection also resets the server first (a clone on the packet's way, `ifindex` being the
 * interface it is on, `egress` whether it is leaving it). */
static __always_inline int pc_reject(struct __sk_buff *skb, const struct pc_packet *pkt, __u32 ifindex, int egress)
{
	if (pkt->vlan_count != 0 || pkt->is_fragment || pkt->l4_off != PC_ETH_LEN + pc_ip_len_of(pkt))
		return -1;
	/* ICMP errors about ICMP errors are forbidden (RFC 1122); the datapath never rejects those. */
	return pkt->family == PC_FAMILY_IPV4 ? pc_reject_ipv4(skb, pkt, ifindex, egress)
					     : pc_reject_ipv6(skb, pkt, ifindex, egress);
}

#endif
