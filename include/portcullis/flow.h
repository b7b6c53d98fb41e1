/* The flow table's values, the fragment table, and the verdict events the daemon logs. Plain C for both
 * builds; every layout is pinned by a size check. */
#ifndef PORTCULLIS_FLOW_H
#define PORTCULLIS_FLOW_H

#include "portcullis/classify.h"
#include "portcullis/compat.h"
#include "portcullis/packet.h"

/* One flow, both directions (indexed by PC_FLOW_FROM_LO / PC_FLOW_FROM_HI of its key). */
struct pc_flow {
	__u64 first_seen_ns;
	__u64 last_seen_ns;
	__u64 packets[2];
	__u64 bytes[2];
	__u32 rule_id;	  /* deciding rule, or PC_RULE_NONE */
	__u32 reason;	  /* enum pc_drop_reason for a deny or a pending flow */
	__u32 scope;	  /* the initiator's scope (its group + 1, or 0) */
	__u32 generation; /* of the policy that decided the flow */
	__u8 verdict;	  /* enum pc_verdict */
	__u8 initiator;	  /* direction of the flow's first packet */
	__u8 tcp_flags[2]; /* every TCP flag seen, per direction: the daemon tracks state from them */
	__u32 held_bytes;  /* pending: bytes punted and held so far */
};
PC_STATIC_ASSERT(sizeof(struct pc_flow) == 72, "pc_flow layout is shared with BPF");

/* Fragments after the first carry no ports: they find their flow's verdict by datagram. */
struct pc_frag_key {
	union pc_addr src;
	union pc_addr dst;
	__u32 id;
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};
PC_STATIC_ASSERT(sizeof(struct pc_frag_key) == 40, "pc_frag_key layout is shared with BPF");

struct pc_frag {
	__u8 verdict; /* of the datagram's flow when its first fragment passed */
	__u8 pad[3];
	__u32 reason;
};
PC_STATIC_ASSERT(sizeof(struct pc_frag) == 8, "pc_frag layout is shared with BPF");

/* Sent to the daemon when a new flow is decided. Addresses and ports as the initiator sent them. */
struct pc_verdict_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	union pc_addr src;
	union pc_addr dst;
	__u16 sport;	    /* ICMP: the echo identifier */
	__u16 dport;	    /* ICMP: the type */
	__u8 family;
	__u8 proto;
	__u8 verdict;	    /* enum pc_verdict */
	__u8 pad;
	__u32 reason;	    /* enum pc_drop_reason; PC_DROP_NONE for an allow */
	__u32 rule_id;	    /* PC_RULE_NONE when no rule decided */
	__u32 scope;
	__u32 generation;
};
PC_STATIC_ASSERT(sizeof(struct pc_verdict_event) == 64, "pc_verdict_event layout is shared with BPF");

/* The event for a flow decided at its packet `pkt`, sent by the flow's initiator. */
static __always_inline void pc_verdict_event_fill(struct pc_verdict_event *event, const struct pc_packet *pkt,
						  const struct pc_flow *flow)
{
	__builtin_memset(event, 0, sizeof(*event));
	event->timestamp_ns = flow->first_seen_ns;
	event->src = pkt->src;
	event->dst = pkt->dst;
	event->sport = pkt->sport;
	event->dport = (pkt->proto == 1 || pkt->proto == 58) ? pkt->icmp_type : pkt->dport;
	event->family = pkt->family;
	event->proto = pkt->proto;
	event->verdict = flow->verdict;
	event->reason = flow->reason;
	event->rule_id = flow->rule_id;
	event->scope = flow->scope;
	event->generation = flow->generation;
}

/* Counter slots after the drop reasons (the counter map has PC_COUNTER_MAX slots). */
enum pc_counter_slot {
	PC_COUNTER_PASS = PC_DROP_MAX,	   /* packets passed */
	PC_COUNTER_NEW_FLOW,		   /* flows decided */
	PC_COUNTER_REJECT_SENT,		   /* RSTs and ICMP errors sent for denied flows */
	PC_COUNTER_REJECT_UNSUPPORTED,	   /* denied packets dropped because no reject could be built */
	PC_COUNTER_EVENT_LOST,		   /* verdict events the ring buffer had no room for */
	PC_COUNTER_PUNTED,		   /* frames punted to the daemon and held */
	PC_COUNTER_REINJECTED,		   /* frames the daemon reinjected that passed through */
	PC_COUNTER_MAX,
};

#endif
