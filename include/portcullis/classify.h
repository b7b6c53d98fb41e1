/* Deciding a new flow from the rule sets that apply to it. Pure: the caller looks the sets up (map
 * lookups in BPF, tables in userspace) and passes them in, so both builds run this very code.
 *
 * The verdict follows the policy semantics of userspace/policy/compiled_policy.cpp:
 *   - any matching deny wins over any allow; among rules of one kind the first listed decides;
 *   - a rule that needs the flow's protocol or name (tls, quic, http, ssh; a name destination) cannot be
 *     decided yet: if it could change the outcome the flow is pending;
 *   - on port 53 only dns rules can allow;
 *   - otherwise the policy's default action. */
#ifndef PORTCULLIS_CLASSIFY_H
#define PORTCULLIS_CLASSIFY_H

#include "portcullis/compat.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/policy_maps.h"

#define PC_DNS_PORT 53

enum pc_verdict {
	PC_VERDICT_ALLOW = 0,
	PC_VERDICT_DENY = 1,
	PC_VERDICT_PENDING = 2,	 /* the flow must show its protocol or name first */
	PC_VERDICT_DRAINING = 3, /* allowed; the daemon is still releasing its held frames, and later ones
				  * queue behind them so none overtakes (set by the daemon only) */
	PC_VERDICT_INSPECT = 4,	 /* allowed, but every packet the client sends is read by the daemon first
				  * (DNS queries under dns.filter_queries) */
};

/* What the classifier needs to know of a flow's first packet. */
struct pc_flow_facts {
	__u8 l4_bit; /* enum pc_l4_bit: exactly one bit */
	__u8 pad;
	__u16 port; /* destination port (tcp, udp) or ICMP type (icmp, icmpv6) */
};

struct pc_decision {
	__u8 verdict; /* enum pc_verdict */
	__u8 pad[3];
	__u32 reason;  /* enum pc_drop_reason for deny and pending; PC_DROP_NONE for allow */
	__u32 rule_id; /* deciding rule, or PC_RULE_NONE */
};
PC_STATIC_ASSERT(sizeof(struct pc_decision) == 12, "pc_decision is stored in flow records");

/* What the rule sets say about one flow, accumulated over every set that applies. */
struct pc_rule_scan {
	__u32 deny_rule;	/* first definite deny, or PC_RULE_NONE */
	__u32 allow_rule;	/* first definite allow, or PC_RULE_NONE */
	__u8 maybe_deny;	/* a deny that depends on the protocol or name matched */
	__u8 maybe_allow;	/* an allow that depends on the protocol or name matched */
	__u8 allow_not_dns;	/* an allow on port 53 that is not a dns rule matched */
	__u8 overflow;		/* a set did not fit its entries: userspace must decide */
};

static __always_inline void pc_rule_scan_init(struct pc_rule_scan *scan)
{
	scan->deny_rule = PC_RULE_NONE;
	scan->allow_rule = PC_RULE_NONE;
	scan->maybe_deny = 0;
	scan->maybe_allow = 0;
	scan->allow_not_dns = 0;
	scan->overflow = 0;
}

static __always_inline int pc_is_dns_port(const struct pc_flow_facts *flow)
{
	return (flow->l4_bit & (PC_L4_TCP | PC_L4_UDP)) && flow->port == PC_DNS_PORT;
}

struct pc_rule_scan_step {
	struct pc_rule_scan *scan;
	const struct pc_rule_set *set;
	const struct pc_flow_facts *flow;
};

static int pc_rule_scan_entry(__u32 i, void *arg)
{
	struct pc_rule_scan_step *step = (struct pc_rule_scan_step *)arg;
	struct pc_rule_scan *scan = step->scan;
	const struct pc_flow_facts *flow = step->flow;

	if (i >= PC_RULE_SET_CAPACITY || i >= step->set->count)
		return 1;
	pc_mask_index(i, PC_RULE_SET_CAPACITY - 1);
	const struct pc_rule_entry *entry = &step->set->entries[i];
	if (!(entry->l4_mask & flow->l4_bit) || flow->port < entry->lo || flow->port > entry->hi)
		return 0;
	const int conditional = entry->flags & (PC_RULE_NEEDS_L7 | PC_RULE_BY_NAME);

	if (entry->flags & PC_RULE_DENY) {
		if (conditional)
			scan->maybe_deny = 1;
		else if (entry->rule_id < scan->deny_rule)
			scan->deny_rule = entry->rule_id;
		return 0;
	}
	if (pc_is_dns_port(flow) && !(entry->flags & PC_RULE_DNS)) {
		scan->allow_not_dns = 1;
		return 0;
	}
	if (conditional)
		scan->maybe_allow = 1;
	else if (entry->rule_id < scan->allow_rule)
		scan->allow_rule = entry->rule_id;
	return 0;
}

static __always_inline void pc_rule_scan_add(struct pc_rule_scan *scan, const struct pc_rule_set *set,
					     const struct pc_flow_facts *flow)
{
	struct pc_rule_scan_step step = {.scan = scan, .set = set, .flow = flow};

	if (!set)
		return;
	if (set->count == PC_RULE_SET_OVERFLOW) {
		scan->overflow = 1;
		return;
	}
	pc_loop(PC_RULE_SET_CAPACITY, pc_rule_scan_entry, &step);
}

static __always_inline struct pc_decision pc_decide(const struct pc_rule_scan *scan, const struct pc_flow_facts *flow,
						    __u8 default_action)
{
	struct pc_decision d = {.verdict = PC_VERDICT_DENY, .reason = PC_DROP_NONE, .rule_id = PC_RULE_NONE};

	if (scan->deny_rule != PC_RULE_NONE) {
		d.reason = PC_DROP_DENIED_BY_RULE;
		d.rule_id = scan->deny_rule;
	} else if (scan->overflow || scan->maybe_deny || (scan->allow_rule == PC_RULE_NONE && scan->maybe_allow)) {
		d.verdict = PC_VERDICT_PENDING;
		d.reason = PC_DROP_NEEDS_L7;
	} else if (scan->allow_rule != PC_RULE_NONE) {
		d.verdict = PC_VERDICT_ALLOW;
		d.rule_id = scan->allow_rule;
	} else if (pc_is_dns_port(flow) && (scan->allow_not_dns || default_action == PC_ACTION_ALLOW)) {
		d.reason = PC_DROP_DNS_NOT_RESOLVER;
	} else if (default_action == PC_ACTION_ALLOW) {
		d.verdict = PC_VERDICT_ALLOW;
	} else {
		d.reason = PC_DROP_DENIED_BY_DEFAULT;
	}
	return d;
}

#endif
