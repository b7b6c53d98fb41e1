/* TC entry points. Table of contents:
 *   portcullis_inside   gateway: ingress of the inside interfaces; host: egress of the uplinks.
 *                       Every packet leaving the protected side; new flows are classified here, and the
 *                       first packets of pending flows are punted to the daemon and held.
 *   portcullis_outside  gateway: ingress of the outside interfaces; host: ingress of the uplinks.
 *                       Replies of known flows; host mode also admits flows started from outside.
 *   portcullis_reinject gateway: egress of the inside and outside interfaces. Frames the daemon sends back
 *                       (punt.h) turn round into the interface's ingress; everything else passes.
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

/* Whether the daemon wants the packet a new flow was denied at (run --pcap-denied): within the source's punt
 * token bucket, so that a source opening denied flows fast cannot crowd the ring. */
static __always_inline int pc_capture_denied(const struct pc_packet *pkt)
{
	const struct pc_punt_config *config = pc_state_punt_config();

	if (!config || !(config->flags & PC_PUNT_CAPTURE_DENIED))
		return 0;
	return pc_take_punt_token(&pkt->src, config, bpf_ktime_get_ns());
}

__noinline __u32 pc_tc_punt(struct __sk_buff *skb, __u32 len, __u32 ifindex, __u32 path, __u32 gso);

/* `ifindex` and `egress` are read from the skb before any helper may move its data: the verifier refuses
 * context reads through a pointer the compiler has offset.
 *
 * A global function: the verifier checks it once, not once for every way the classifier can reach it (the
 * paths through the parser, the classifier and the reject builders multiply otherwise). */
__noinline int pc_tc_refuse(struct __sk_buff *skb, const struct pc_packet *pkt, __u64 packed, __u32 ifindex,
			    __u32 egress)
{
	const struct pc_outcome out = pc_outcome_unpack(packed);

	if (!skb || !pkt)
		return TC_ACT_SHOT;
	/* The packet a new flow was denied at, for --pcap-denied: copied before a reject rewrites it. */
	if (out.new_denied && pc_capture_denied(pkt))
		pc_tc_punt(skb, skb->len, ifindex, PC_PUNT_DENIED, 0);
	if (out.action == PC_REJECT) {
		if (pc_reject(skb, pkt, ifindex, egress) == 0) {
			pc_state_count(PC_COUNTER_REJECT_SENT);
			/* Back where it came from: to the client's interface (gateway), or up the local stack
			 * (host, where the packet was leaving). Up the stack, or out of the inside interface of a
			 * masquerading gateway, it meets portcullis_outside, which would take it for a packet of the
			 * denied flow: the mark lets it through. */
			skb->mark = PC_REJECT_MARK;
			return bpf_redirect(ifindex, egress ? BPF_F_INGRESS : 0);
		}
		pc_state_count(PC_COUNTER_REJECT_UNSUPPORTED);
	}
	return TC_ACT_SHOT;
}

static __always_inline int pc_tc_verdict(struct __sk_buff *skb, const struct pc_packet *pkt, struct pc_outcome out,
					  __u32 ifindex, int egress)
{
	if (out.action == PC_PASS)
		return TC_ACT_OK;
	return pc_tc_refuse(skb, pkt, pc_outcome_pack(out), ifindex, egress);
}

/* Copies the frame into the punt ring and holds it: returns PC_DROP_NONE, or why it could not. */
__noinline __u32 pc_tc_punt(struct __sk_buff *skb, __u32 len, __u32 ifindex, __u32 path, __u32 gso)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct pc_punt_scratch *scratch = bpf_map_lookup_elem(&pc_punt_scratch, &cpu);

	if (!skb || !scratch)
		return PC_DROP_PUNT_QUEUE_FULL;
	if (len < PC_ETH_LEN || len > PC_PUNT_MAX_FRAME)
		return PC_DROP_PUNT_TOO_LARGE;
	/* The same length, bounded to [1, PC_PUNT_BUFFER] where the verifier sees it. */
	__u32 copy = len - 1;

	pc_mask_index(copy, PC_PUNT_BUFFER - 1);
	copy += 1;
	if (bpf_skb_load_bytes(skb, 0, scratch->frame, copy) < 0)
		return PC_DROP_PUNT_QUEUE_FULL;
	scratch->header.timestamp_ns = bpf_ktime_get_ns();
	scratch->header.ifindex = ifindex;
	scratch->header.len = copy;
	scratch->header.gso_size = gso & 0xffff;
	scratch->header.gso_segs = gso >> 16;
	scratch->header.path = path;
	if (bpf_ringbuf_output(&pc_punts, scratch, sizeof(scratch->header) + copy, 0) != 0)
		return PC_DROP_PUNT_QUEUE_FULL;
	pc_state_count(PC_COUNTER_PUNTED);
	return PC_DROP_NONE;
}

/* Takes a held frame out of the path while telling the sender it went. Shooting it would not do: on host
 * egress the local TCP stack takes a shot segment for never sent and retransmits it 200 ms later. TC_ACT_STOLEN
 * says the right thing on clsact, but TCX knows only pass, drop, redirect and next, and runs anything else as
 * next: the frame would go on. A redirect to no device (ifindex 0) is consumed by the kernel as stolen on both,
 * and reported as sent. */
static __always_inline int pc_tc_steal(void)
{
	return bpf_redirect(0, 0);
}

SEC("tc")
int portcullis_inside(struct __sk_buff *skb)
{
	const __u32 ifindex = skb->ifindex;
	/* At ingress, ingress_ifindex is the device itself; at egress it is 0 for locally generated packets
	 * and the receiving device for forwarded ones, never the sending device. */
	const int egress = skb->ingress_ifindex != ifindex;
	const __u32 len = skb->len;
	const __u32 gso = (skb->gso_segs << 16) | (skb->gso_size & 0xffff);
	struct pc_packet pkt;

	if (skb->mark == PC_REINJECT_MARK) {
		skb->mark = 0;
		pc_state_count(PC_COUNTER_REINJECTED);
		return TC_ACT_OK;
	}
	if (skb->mark == PC_RECLASSIFY_MARK)
		skb->mark = 0;
	if (skb->mark == PC_DELIVER_MARK) {
		/* Up the local stack, where portcullis_outside lets the mark through. */
		skb->mark = PC_REJECT_MARK;
		return bpf_redirect(ifindex, BPF_F_INGRESS);
	}
	enum pc_drop_reason reason = pc_parse_skb(skb, &pkt);

	if (reason != PC_DROP_NONE) {
		pc_state_count(reason);
		return TC_ACT_SHOT;
	}
	struct pc_flow_key key;
	struct pc_outcome out = pc_datapath_inside(&pkt, len, &key);

	if (out.action == PC_PUNT) {
		reason = pc_tc_punt(skb, len, ifindex, egress ? PC_PUNT_EGRESS : PC_PUNT_INGRESS, gso);
		if (reason == PC_DROP_NONE)
			return pc_tc_steal();
		out = pc_punt_failed(&pkt, &key, reason);
	}
	return pc_tc_verdict(skb, &pkt, out, ifindex, egress);
}

/* A frame the daemon sent back out of an interface to be turned round into its ingress (punt.h). */
static __always_inline int pc_turns_round(const struct __sk_buff *skb)
{
	return skb->mark == PC_REINJECT_MARK || skb->mark == PC_RECLASSIFY_MARK;
}

SEC("tc")
int portcullis_reinject(struct __sk_buff *skb)
{
	if (pc_turns_round(skb))
		return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
	return TC_ACT_OK;
}

SEC("tc")
int portcullis_outside(struct __sk_buff *skb)
{
	const __u32 ifindex = skb->ifindex;
	const __u32 len = skb->len;
	struct pc_packet pkt;

	/* A gateway that masquerades sees its sandboxes' flows un-NATed only on the inside: there this program
	 * runs at egress, in place of portcullis_reinject, and turns the daemon's reinjected frames round as it
	 * would. */
	const int egress = skb->ingress_ifindex != ifindex;
	const __u32 gso = (skb->gso_segs << 16) | (skb->gso_size & 0xffff);

	if (egress && pc_turns_round(skb))
		return bpf_redirect(ifindex, BPF_F_INGRESS);
	/* A held DNS answer the daemon released (gateway): portcullis_reinject turned it round at this
	 * interface's egress, and it goes on as if it had just arrived. */
	if (!egress && skb->mark == PC_REINJECT_MARK) {
		skb->mark = 0;
		pc_state_count(PC_COUNTER_REINJECTED);
		return TC_ACT_OK;
	}

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
	struct pc_outcome out = pc_datapath_outside(&pkt, len);

	if (out.action == PC_HOLD_ANSWER) {
		reason = pc_tc_punt(skb, len, ifindex, egress ? PC_PUNT_ANSWER_EGRESS : PC_PUNT_ANSWER, gso);
		if (reason == PC_DROP_NONE)
			return pc_tc_steal();
		pc_state_count(reason);
		return TC_ACT_SHOT;
	}
	return out.action == PC_PASS ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
