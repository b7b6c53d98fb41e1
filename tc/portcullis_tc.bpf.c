/* TC entry points. Table of contents:
 *   portcullis_inside   gateway: ingress of the inside interfaces; host: egress of the uplinks.
 *                       Every packet leaving the protected side; new flows are classified here.
 *   portcullis_outside  gateway: ingress of the outside interfaces; host: ingress of the uplinks.
 *                       Replies of known flows; host mode also admits flows started from outside.
 * The logic is in include/portcullis/datapath.h, shared with userspace; this file only adapts the skb. */
#include "portcullis/compat.h"
#include <linux/pkt_cls.h>

#include "portcullis/maps.h"
#include "portcullis/datapath.h"
#include "portcullis/parse.h"
#include "portcullis/reject.h"

/* Enough for Ethernet, two VLAN tags, IPv6 with a few extension headers, TCP with options and an ICMP
 * error's quote. */
#define PC_HEADER_BYTES 256

static __always_inline enum pc_drop_reason pc_parse_skb(struct __sk_buff *skb, struct pc_packet *pkt)
{
	const __u32 want = skb->len < PC_HEADER_BYTES ? skb->len : PC_HEADER_BYTES;

	/* Headers may sit in the skb's paged part (GSO, veth); make them readable in place. */
	if ((__u64)skb->data_end - (__u64)skb->data < want)
		bpf_skb_pull_data(skb, want);
	return pc_parse_packet((const void *)(long)skb->data, (const void *)(long)skb->data_end, pkt);
}

/* `ifindex` and `egress` are read from the skb before any helper may move its data: the verifier refuses
 * context reads through a pointer the compiler has offset. */
static __always_inline int pc_tc_verdict(struct __sk_buff *skb, const struct pc_packet *pkt, struct pc_outcome out,
					  __u32 ifindex, int egress)
{
	if (out.action == PC_PASS)
		return TC_ACT_OK;
	if (out.action == PC_REJECT) {
		if (pc_reject(skb, pkt, egress) == 0) {
			pc_state_count(PC_COUNTER_REJECT_SENT);
			/* Back where it came from: to the client's interface (gateway), or up the local stack
			 * (host, where the packet was leaving). Up the stack it meets portcullis_outside, which
			 * would take it for a packet of the denied flow: the mark lets it through. */
			if (egress)
				skb->mark = PC_REJECT_MARK;
			return bpf_redirect(ifindex, egress ? BPF_F_INGRESS : 0);
		}
		pc_state_count(PC_COUNTER_REJECT_UNSUPPORTED);
	}
	return TC_ACT_SHOT;
}

SEC("tc")
int portcullis_inside(struct __sk_buff *skb)
{
	const __u32 ifindex = skb->ifindex;
	/* At ingress, ingress_ifindex is the device itself; at egress it is 0 for locally generated packets
	 * and the receiving device for forwarded ones, never the sending device. */
	const int egress = skb->ingress_ifindex != ifindex;
	const __u32 len = skb->len;
	struct pc_packet pkt;
	enum pc_drop_reason reason = pc_parse_skb(skb, &pkt);

	if (reason != PC_DROP_NONE) {
		pc_state_count(reason);
		return TC_ACT_SHOT;
	}
	return pc_tc_verdict(skb, &pkt, pc_datapath_inside(&pkt, len), ifindex, egress);
}

SEC("tc")
int portcullis_outside(struct __sk_buff *skb)
{
	const __u32 len = skb->len;
	struct pc_packet pkt;

	/* A reject portcullis_inside sent up the stack (host mode). Marks never arrive from the wire: the
	 * kernel clears them when a packet crosses into another network namespace or comes from a device. */
	if (skb->mark == PC_REJECT_MARK) {
		skb->mark = 0;
		return TC_ACT_OK;
	}
	enum pc_drop_reason reason = pc_parse_skb(skb, &pkt);

	if (reason != PC_DROP_NONE) {
		pc_state_count(reason);
		return TC_ACT_SHOT;
	}
	return pc_datapath_outside(&pkt, len).action == PC_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
