/* What the data plane does with one packet, written once for the BPF programs and for userspace.
 *
 * Two entry points, by where the packet comes from:
 *   - pc_datapath_inside: packets leaving the protected side (gateway: ingress of the inside interfaces;
 *     host: egress of the uplinks). New flows start here and are classified.
 *   - pc_datapath_outside: packets arriving from the outside (gateway: ingress of the outside
 *     interfaces; host: ingress of the uplinks). Only replies of known flows pass, and in host mode new
 *     inbound flows, which an egress firewall does not police.
 *
 * The build provides the state through these functions (maps.h in BPF; the replay tables in userspace):
 *   struct pc_flow *pc_state_flow_lookup(const struct pc_flow_key *key);
 *   struct pc_flow *pc_state_flow_insert(const struct pc_flow_key *key, const struct pc_flow *flow);
 *   void pc_state_flow_delete(const struct pc_flow_key *key);
 *   const struct pc_frag *pc_state_frag_lookup(const struct pc_frag_key *key);
 *   void pc_state_frag_insert(const struct pc_frag_key *key, const struct pc_frag *frag);
 *   __u32 pc_state_source_scope(const struct pc_packet *pkt);        source -> scope, 0 for none
 *   const struct pc_rule_set *pc_state_dst_rules(__u32 scope, const struct pc_packet *pkt);
 *   const struct pc_rule_set *pc_state_name_rules(__u32 scope);
 *   const struct pc_policy_config *pc_state_config(void);
 *   void pc_state_count(__u32 slot);                                 enum pc_drop_reason or pc_counter_slot
 *   void pc_state_emit_verdict(const struct pc_packet *pkt, const struct pc_flow *flow);  with pc_verdict_event_fill
 *   __u64 pc_state_now_ns(void);
 *   const struct pc_punt_config *pc_state_punt_config(void);          null: no daemon configured punts
 *   struct pc_punt_bucket *pc_state_punt_bucket(const union pc_addr *owner);   the address's, created full
 *   struct pc_expect *pc_state_expect_lookup(const struct pc_expect_key *key);   FTP data connections (expect.h)
 *   int pc_state_expect_delete(const struct pc_expect_key *key);            0 when this call deleted it
 *   const struct pc_ftp_peer *pc_state_ftp_peer_lookup(const struct pc_ftp_peer_key *key);
 *   const struct pc_bound_name *pc_state_bound_name_lookup(const struct pc_bound_key *key);  (bound_names.h)
 *
 * A pending flow's packets come back as PC_PUNT: the build copies the frame to the daemon and holds it
 * (punt.h); when it cannot, it calls pc_punt_failed, which denies the flow. A DNS answer comes back as
 * PC_HOLD_ANSWER: the build copies it to the daemon and holds it, and drops it when it cannot. */
#ifndef PORTCULLIS_DATAPATH_H
#define PORTCULLIS_DATAPATH_H

#include "portcullis/bound_names.h"
#include "portcullis/classify.h"
#include "portcullis/compat.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/expect.h"
#include "portcullis/flow.h"
#include "portcullis/packet.h"
#include "portcullis/policy_maps.h"
#include "portcullis/punt.h"

enum pc_action_kind {
	PC_PASS = 0,
	PC_DROP = 1,
	PC_REJECT = 2, /* drop, and answer with a TCP RST or an ICMP administratively-prohibited */
	PC_PUNT = 3,   /* copy the frame to the daemon and hold it: the flow waits for its name */
	PC_HOLD_ANSWER = 4, /* a DNS answer: copy the frame to the daemon and hold it; it learns what the answer
			     * binds, then sends it on */
};

struct pc_outcome {
	__u8 action;	 /* enum pc_action_kind */
	__u8 new_denied; /* the packet is the one a new flow was denied at */
	__u8 pad[2];
	__u32 reason; /* enum pc_drop_reason when the packet does not pass */
};

/* A pc_outcome packed in the scalar a subprogram (PC_SUBPROG) returns. */
static __always_inline __u64 pc_outcome_pack(struct pc_outcome out)
{
	return out.action | ((__u64)out.new_denied << 8) | ((__u64)out.reason << 32);
}

static __always_inline struct pc_outcome pc_outcome_unpack(__u64 packed)
{
	struct pc_outcome out = {.action = (__u8)packed, .new_denied = (__u8)(packed >> 8), .reason = (__u32)(packed >> 32)};

	return out;
}

static __always_inline struct pc_outcome pc_pass(void)
{
	struct pc_outcome out = {.action = PC_PASS, .reason = PC_DROP_NONE};

	pc_state_count(PC_COUNTER_PASS);
	return out;
}

static __always_inline struct pc_outcome pc_drop(__u32 reason)
{
	struct pc_outcome out = {.action = PC_DROP, .reason = reason};

	pc_state_count(reason);
	return out;
}

/* A denied flow's packet: rejected or dropped as the policy says. Pending flows are dropped: they wait
 * for a name, and answering them would tell the client the flow is refused before it is. */
static __always_inline struct pc_outcome pc_refuse(__u8 verdict, __u32 reason)
{
	struct pc_outcome out = pc_drop(reason);
	const struct pc_policy_config *config = pc_state_config();

	if (verdict == PC_VERDICT_DENY && config && config->on_deny_reject)
		out.action = PC_REJECT;
	return out;
}

static __always_inline __u8 pc_l4_bit_of(__u8 family, __u8 proto)
{
	if (proto == 6)
		return PC_L4_TCP;
	if (proto == 17)
		return PC_L4_UDP;
	if (proto == 1 && family == PC_FAMILY_IPV4)
		return PC_L4_ICMP;
	if (proto == 58 && family == PC_FAMILY_IPV6)
		return PC_L4_ICMPV6;
	return PC_L4_OTHER;
}

/* Neighbour discovery (router and neighbour solicitation and advertisement, redirect) is how IPv6
 * hosts find each other on a link; like ARP it passes without rules. */
static __always_inline int pc_is_neighbour_discovery(const struct pc_packet *pkt)
{
	return pkt->family == PC_FAMILY_IPV6 && pkt->proto == 58 && pkt->icmp_type >= 133 && pkt->icmp_type <= 137;
}

static __always_inline void pc_frag_key_of(const struct pc_packet *pkt, struct pc_frag_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->src = pkt->src;
	key->dst = pkt->dst;
	key->id = pkt->frag_id;
	key->family = pkt->family;
	key->proto = pkt->proto;
}

/* Fragments after the first follow the verdict their first fragment got. */
PC_SUBPROG __u64 pc_follow_first_fragment_packed(const struct pc_packet *pkt)
{
	struct pc_frag_key key;
	const struct pc_frag *frag;

	if (!pkt)
		return PC_DROP;
	pc_frag_key_of(pkt, &key);
	frag = pc_state_frag_lookup(&key);
	if (!frag)
		return pc_outcome_pack(pc_drop(PC_DROP_FRAGMENT_NO_FIRST));
	if (frag->verdict == PC_VERDICT_PENDING || frag->verdict == PC_VERDICT_DRAINING ||
	    frag->verdict == PC_VERDICT_INSPECT) {
		/* Held with the first fragment, and released or refused with it. */
		struct pc_outcome out = {.action = PC_PUNT, .reason = PC_DROP_NEEDS_L7};

		return pc_outcome_pack(out);
	}
	if (frag->verdict != PC_VERDICT_ALLOW)
		return pc_outcome_pack(pc_drop(frag->reason));
	return pc_outcome_pack(pc_pass());
}

static __always_inline struct pc_outcome pc_follow_first_fragment(const struct pc_packet *pkt)
{
	return pc_outcome_unpack(pc_follow_first_fragment_packed(pkt));
}

PC_SUBPROG int pc_remember_fragment_verdict(const struct pc_packet *pkt, __u32 verdict, __u32 reason)
{
	struct pc_frag_key key;
	struct pc_frag frag = {.verdict = (__u8)verdict, .reason = reason};

	if (!pkt)
		return 0;
	pc_frag_key_of(pkt, &key);
	pc_state_frag_insert(&key, &frag);
	return 0;
}

static __always_inline void pc_remember_first_fragment(const struct pc_packet *pkt, __u8 verdict, __u32 reason)
{
	if (pkt->is_first_fragment)
		pc_remember_fragment_verdict(pkt, verdict, reason);
}

/* An ICMP error passes when the flow it reports on is allowed. */
PC_SUBPROG __u64 pc_follow_quoted_flow_packed(const struct pc_packet *pkt)
{
	struct pc_flow_key key;
	__u8 direction;
	const struct pc_flow *flow;

	if (!pkt || pc_flow_key_from_quoted(pkt, &key, &direction) < 0)
		return pc_outcome_pack(pc_drop(PC_DROP_ICMP_ERROR_NO_FLOW));
	flow = pc_state_flow_lookup(&key);
	if (!flow || flow->verdict == PC_VERDICT_DENY || flow->verdict == PC_VERDICT_PENDING)
		return pc_outcome_pack(pc_drop(PC_DROP_ICMP_ERROR_NO_FLOW));
	return pc_outcome_pack(pc_pass());
}

static __always_inline struct pc_outcome pc_follow_quoted_flow(const struct pc_packet *pkt)
{
	return pc_outcome_unpack(pc_follow_quoted_flow_packed(pkt));
}

static __always_inline void pc_account(struct pc_flow *flow, __u8 direction, __u32 len, __u8 tcp_flags)
{
	const __u8 d = direction & 1;

	/* Plain adds, not atomic ones: the two locked adds cost 45 ns per packet, twice the rest of the
	 * established path. A direction's packets come in on one CPU (one queue per flow), so a lost count
	 * needs one flow's same-direction packets on two CPUs at the same instant. */
	flow->packets[d] += 1;
	flow->bytes[d] += len;
	flow->last_seen_ns = pc_state_now_ns();
	if ((flow->tcp_flags[d] | tcp_flags) != flow->tcp_flags[d])
		flow->tcp_flags[d] |= tcp_flags;
}

/* A SYN (without ACK) on a TCP flow that has closed (a FIN or RST was seen either way) opens a new
 * connection on the same addresses and ports: it is a new flow, decided afresh. Otherwise a client could
 * close an allowed connection and reopen its tuple to show another name under the old verdict. */
static __always_inline int pc_tcp_reopens(const struct pc_packet *pkt, const struct pc_flow *flow)
{
	const __u8 closing = PC_TCP_FIN | PC_TCP_RST;

	return pkt->proto == 6 && (pkt->tcp_flags & (PC_TCP_SYN | PC_TCP_ACK)) == PC_TCP_SYN &&
	       ((flow->tcp_flags[0] | flow->tcp_flags[1]) & closing);
}

/* Decides a flow's first packet from the rules of the top-level scope and of the source's group. */
static __always_inline struct pc_decision pc_classify(const struct pc_packet *pkt, __u32 scope,
						       const struct pc_policy_config *config)
{
	struct pc_rule_scan scan;
	struct pc_flow_facts facts = {.l4_bit = pc_l4_bit_of(pkt->family, pkt->proto)};

	facts.port = (facts.l4_bit & (PC_L4_ICMP | PC_L4_ICMPV6)) ? pkt->icmp_type : pkt->dport;
	pc_rule_scan_init(&scan);
	pc_rule_scan_add(&scan, pc_state_dst_rules(PC_SCOPE_TOP_LEVEL, pkt), &facts);
	pc_rule_scan_add(&scan, pc_state_name_rules(PC_SCOPE_TOP_LEVEL), &facts);
	if (scope != PC_SCOPE_TOP_LEVEL) {
		pc_rule_scan_add(&scan, pc_state_dst_rules(scope, pkt), &facts);
		pc_rule_scan_add(&scan, pc_state_name_rules(scope), &facts);
	}
	return pc_decide(&scan, &facts, config->default_action);
}

static __always_inline void pc_emit(const struct pc_packet *pkt, const struct pc_flow *flow)
{
	pc_state_emit_verdict(pkt, flow);
}

/* Ends a pending flow that cannot be held: denied for `reason`, logged, and refused. */
static __always_inline struct pc_outcome pc_deny_pending(const struct pc_packet *pkt, struct pc_flow *flow,
							 __u32 reason)
{
	flow->verdict = PC_VERDICT_DENY;
	flow->reason = reason;
	flow->rule_id = PC_RULE_NONE;
	pc_emit(pkt, flow);
	return pc_refuse(PC_VERDICT_DENY, reason);
}

/* One token of `owner`'s punt bucket (punt.h), taken at `now`; 0 when there is none. */
static __always_inline int pc_take_punt_token(const union pc_addr *owner, const struct pc_punt_config *punt, __u64 now)
{
	struct pc_punt_bucket *bucket = pc_state_punt_bucket(owner);

	return bucket && pc_punt_bucket_take(bucket, punt, now);
}

/* Pending flows the daemon decides from their SYN, which is held too: a connection that may be an FTP data
 * connection (the daemon asks the kernel), and one to an address bound to a name a deny rule names (the daemon
 * decides it from the names bound there). */
static __always_inline int pc_held_from_syn(__u32 reason)
{
	return reason == PC_DROP_AWAITS_EXPECTATION || reason == PC_DROP_BOUND_NAME;
}

/* A packet of a pending flow from its initiator. The TCP handshake and bare ACKs pass: there is nothing
 * to read in them, and the client must get to send its first bytes. Anything with data, and anything
 * after a held frame (so the daemon can release them in order), is punted and held within the bounds. */
static __always_inline struct pc_outcome pc_hold_pending(const struct pc_packet *pkt, struct pc_flow *flow, __u32 len)
{
	const struct pc_punt_config *punt;
	struct pc_outcome out = {.action = PC_PUNT, .reason = PC_DROP_NEEDS_L7};
	__u64 now;

	if (pkt->proto == 6 && pkt->payload_len == 0 && flow->held_bytes == 0 && !pc_held_from_syn(flow->reason))
		return pc_pass();
	punt = pc_state_punt_config();
	now = pc_state_now_ns();
	if (!pc_daemon_alive(punt, now))
		return pc_deny_pending(pkt, flow, PC_DROP_NO_DAEMON);
	if (len > PC_PUNT_MAX_FRAME)
		return pc_deny_pending(pkt, flow, PC_DROP_PUNT_TOO_LARGE);
	if (flow->held_bytes + len > punt->flow_hold_bytes)
		return pc_deny_pending(pkt, flow, PC_DROP_HOLD_LIMIT);
	if (!pc_take_punt_token(&pkt->src, punt, now))
		return pc_deny_pending(pkt, flow, PC_DROP_PUNT_RATE);
	flow->held_bytes += len;
	return out;
}

/* The build could not hand a PC_PUNT frame to the daemon: the flow is denied, fail closed. `key` is the
 * one pc_datapath_inside filled. */
static __always_inline struct pc_outcome pc_punt_failed(const struct pc_packet *pkt, const struct pc_flow_key *key,
							__u32 reason)
{
	struct pc_flow *flow;

	if (pkt->is_fragment && !pkt->is_first_fragment)
		return pc_drop(reason); /* its first fragment's flow waits for the daemon, and times out */
	flow = pc_state_flow_lookup(key);
	if (!flow || flow->verdict != PC_VERDICT_PENDING)
		return pc_drop(reason);
	return pc_deny_pending(pkt, flow, reason);
}

/* A new flow's entry as `decision` decided it, for the initiator's `scope`, opened in `direction`. */
static __always_inline void pc_flow_init(struct pc_flow *flow, const struct pc_decision *decision, __u32 scope,
					 __u32 generation, __u8 direction)
{
	__builtin_memset(flow, 0, sizeof(*flow));
	flow->first_seen_ns = pc_state_now_ns();
	flow->last_seen_ns = flow->first_seen_ns;
	flow->rule_id = decision->rule_id;
	flow->reason = decision->reason;
	flow->scope = scope;
	flow->generation = generation;
	flow->verdict = decision->verdict;
	flow->initiator = direction;
}

/* A TCP SYN no rule allows that is the data connection an FTP control connection announced: allowed once by its
 * expectation, as the control connection's rule. Returns 1 with `decision` and `scope` changed when it is. */
static __always_inline int pc_ftp_expected(const struct pc_packet *pkt, struct pc_decision *decision, __u32 *scope)
{
	struct pc_expect_key expect_key;
	struct pc_expect_key *key = &expect_key;
	struct pc_expect *expect;

	if (pkt->proto != 6 || (pkt->tcp_flags & (PC_TCP_SYN | PC_TCP_ACK)) != PC_TCP_SYN)
		return 0;
	__builtin_memset(key, 0, sizeof(*key));
	key->src = pkt->src;
	key->dst = pkt->dst;
	key->dport = pkt->dport;
	key->family = pkt->family;
	key->proto = pkt->proto;
	expect = pc_state_expect_lookup(key);
	if (expect) {
		const struct pc_flow *master = pc_state_flow_lookup(&expect->master);
		const int live = pc_state_now_ns() <= expect->expires_ns && master &&
				 (master->verdict == PC_VERDICT_ALLOW || master->verdict == PC_VERDICT_DRAINING);
		const __u32 rule_id = expect->rule_id;
		const __u32 expect_scope = expect->scope;

		/* One connection per expectation, as the kernel's: of two SYNs at once, the one whose delete
		 * took it. */
		if (pc_state_expect_delete(key) == 0 && live) {
			decision->verdict = PC_VERDICT_ALLOW;
			decision->reason = PC_DROP_EXPECTED;
			decision->rule_id = rule_id;
			*scope = expect_scope;
			return 1;
		}
	}
	return 0;
}

/* A TCP connection no rule allows may be the data connection an FTP control connection announced: allowed
 * once by its expectation (pc_ftp_expected); held for the daemon when it is between FTP peers (the SYN's source
 * the client, its destination the server) and no expectation is here yet. Returns 1 with `decision` changed when
 * FTP decides. */
static __always_inline int pc_ftp_data(const struct pc_packet *pkt, struct pc_decision *decision, __u32 *scope)
{
	struct pc_ftp_peer_key peer_key;
	struct pc_ftp_peer_key *peer = &peer_key;
	const struct pc_ftp_peer *known;

	if (pc_ftp_expected(pkt, decision, scope))
		return 1;
	if (pkt->proto != 6 || (pkt->tcp_flags & (PC_TCP_SYN | PC_TCP_ACK)) != PC_TCP_SYN)
		return 0;
	__builtin_memset(peer, 0, sizeof(*peer));
	peer->client = pkt->src;
	peer->server = pkt->dst;
	peer->family = pkt->family;
	known = pc_state_ftp_peer_lookup(peer);
	if (!known || known->control_flows == 0)
		return 0;
	decision->verdict = PC_VERDICT_PENDING;
	decision->reason = PC_DROP_AWAITS_EXPECTATION;
	decision->rule_id = PC_RULE_NONE;
	return 1;
}

/* Whether DNS bound the destination, for the source's scope, to a name that a deny rule of the flow's protocol
 * names (bound_names.h). A global function: its key stays off the new-flow path's stack. */
PC_SUBPROG int pc_bound_to_denied_name(const struct pc_packet *pkt, __u32 scope)
{
	struct pc_bound_key key;
	const struct pc_bound_name *bound;

	if (!pkt)
		return 0;
	__builtin_memset(&key, 0, sizeof(key));
	key.addr = pkt->dst;
	key.scope = scope;
	key.family = pkt->family;
	bound = pc_state_bound_name_lookup(&key);
	return bound && (bound->l4_mask & pc_l4_bit_of(pkt->family, pkt->proto)) &&
	       pc_state_now_ns() <= bound->expires_ns;
}

static __always_inline struct pc_outcome pc_new_flow_decide(const struct pc_packet *pkt, const struct pc_flow_key *key,
							    __u8 direction, __u32 len)
{
	const struct pc_policy_config *config = pc_state_config();
	struct pc_flow flow;
	struct pc_decision decision;
	struct pc_flow *stored;
	__u32 scope;

	if (!config)
		return pc_drop(PC_DROP_DENIED_BY_DEFAULT);
	scope = pc_state_source_scope(pkt);
	if (config->mode == PC_MODE_GATEWAY && scope == PC_SCOPE_TOP_LEVEL)
		return pc_drop(PC_DROP_SOURCE_NOT_IN_GROUP); /* spoofed: no flow entry, no table exhaustion */

	decision = pc_classify(pkt, scope, config);
	/* Only what nothing else decides: a rule's deny stands, and a flow pending its name waits for it. */
	if (decision.verdict == PC_VERDICT_DENY && decision.reason == PC_DROP_DENIED_BY_DEFAULT)
		pc_ftp_data(pkt, &decision, &scope);
	else if (decision.verdict == PC_VERDICT_ALLOW && pc_bound_to_denied_name(pkt, scope)) {
		decision.verdict = PC_VERDICT_PENDING;
		decision.reason = PC_DROP_BOUND_NAME;
		decision.rule_id = PC_RULE_NONE;
	}
	pc_flow_init(&flow, &decision, scope, config->generation, direction);
	/* On port 53 only dns rules allow (classify.h): under filter_queries the daemon reads every query. */
	if (decision.verdict == PC_VERDICT_ALLOW && config->filter_queries && pkt->dport == PC_DNS_PORT &&
	    (pkt->proto == 6 || pkt->proto == 17))
		flow.verdict = PC_VERDICT_INSPECT;
	stored = pc_state_flow_insert(key, &flow);
	if (stored)
		pc_account(stored, direction, len, pkt->tcp_flags);
	pc_state_count(PC_COUNTER_NEW_FLOW);
	pc_emit(pkt, &flow);
	pc_remember_first_fragment(pkt, decision.verdict, decision.reason);
	if (flow.verdict == PC_VERDICT_INSPECT && stored && stored->verdict == PC_VERDICT_INSPECT) {
		struct pc_outcome inspected = {.action = PC_PUNT, .reason = PC_DROP_NEEDS_L7};

		/* TCP's handshake passes: only what carries a query needs reading. */
		if (pkt->proto == 6 && pkt->payload_len == 0)
			return pc_pass();
		return inspected;
	}
	if (decision.verdict == PC_VERDICT_ALLOW)
		return pc_pass();
	if (decision.verdict == PC_VERDICT_PENDING && stored && stored->verdict == PC_VERDICT_PENDING)
		return pc_hold_pending(pkt, stored, len);
	struct pc_outcome refused = pc_refuse(decision.verdict, decision.reason);

	refused.new_denied = 1;
	return refused;
}

PC_SUBPROG __u64 pc_new_flow_packed(const struct pc_packet *pkt, const struct pc_flow_key *key, __u32 direction,
				    __u32 len)
{
	struct pc_outcome out;

	if (!pkt || !key)
		return PC_DROP;
	out = pc_new_flow_decide(pkt, key, (__u8)direction, len);
	return pc_outcome_pack(out);
}

static __always_inline struct pc_outcome pc_new_flow(const struct pc_packet *pkt, const struct pc_flow_key *key,
						     __u8 direction, __u32 len)
{
	return pc_outcome_unpack(pc_new_flow_packed(pkt, key, direction, len));
}

/* Settles the packets that pass without rules (not IP, neighbour discovery) or that follow another
 * packet's verdict (later fragments, ICMP errors): returns 1 with `out` set. Otherwise returns 0 with the
 * packet's flow key and direction. */
static __always_inline int pc_datapath_common(const struct pc_packet *pkt, struct pc_outcome *out,
					      struct pc_flow_key *key, __u8 *direction)
{
	if (pkt->family == PC_FAMILY_NONE || pc_is_neighbour_discovery(pkt)) {
		*out = pc_pass();
		return 1;
	}
	if (pkt->is_fragment && !pkt->is_first_fragment) {
		*out = pc_follow_first_fragment(pkt);
		return 1;
	}
	if (pkt->inner_family != PC_FAMILY_NONE) {
		*out = pc_follow_quoted_flow(pkt);
		return 1;
	}
	/* A later fragment was the only IP packet without a tuple of its own. */
	if (pc_flow_key_from_packet(pkt, key, direction) < 0) {
		*out = pc_drop(PC_DROP_FRAGMENT_NO_FIRST);
		return 1;
	}
	return 0;
}

/* `key` is scratch for the packet's flow key; after a PC_PUNT it is what pc_punt_failed needs. */
static __always_inline struct pc_outcome pc_datapath_inside(const struct pc_packet *pkt, __u32 len,
							    struct pc_flow_key *key)
{
	struct pc_outcome out;
	struct pc_flow *flow;
	__u8 direction;

	if (pc_datapath_common(pkt, &out, key, &direction))
		return out;
	flow = pc_state_flow_lookup(key);
	if (flow && pc_tcp_reopens(pkt, flow)) {
		pc_state_flow_delete(key);
		flow = 0;
	}
	if (flow && flow->verdict == PC_VERDICT_DENY) {
		/* A flow refused under an older policy is decided again under the new one: a reload that
		 * opens it takes effect for its next packet. (Revoking allowed flows is the daemon's job, and
		 * so is deciding pending ones, whose frames it holds.) */
		const struct pc_policy_config *config = pc_state_config();

		if (config && config->generation != flow->generation) {
			pc_state_flow_delete(key);
			flow = 0;
		}
	}
	if (!flow)
		return pc_new_flow(pkt, key, direction, len);
	pc_account(flow, direction, len, pkt->tcp_flags);
	pc_remember_first_fragment(pkt, flow->verdict, flow->reason);
	if (flow->verdict == PC_VERDICT_ALLOW)
		return pc_pass();
	if (flow->verdict == PC_VERDICT_PENDING && direction == flow->initiator)
		return pc_hold_pending(pkt, flow, len);
	if (flow->verdict == PC_VERDICT_INSPECT && direction == flow->initiator && pkt->proto == 6 &&
	    pkt->payload_len == 0)
		return pc_pass(); /* no query in it */
	if (flow->verdict == PC_VERDICT_DRAINING || (flow->verdict == PC_VERDICT_INSPECT && direction == flow->initiator)) {
		/* Allowed, but behind held frames, or carrying queries the daemon reads: queued for the daemon,
		 * without the pending flow's bounds. A frame that cannot be queued is dropped, not the flow, and
		 * the sender sends it again. */
		struct pc_outcome queued = {.action = PC_PUNT, .reason = PC_DROP_NEEDS_L7};

		return queued;
	}
	return pc_refuse(flow->verdict, flow->reason);
}

/* Gateway: a connection from outside is refused unless it is the data connection an FTP control connection
 * announced (active mode: the server connects to the client). No hold here: were the expectation's copy still
 * on its way, the server sends its SYN again a second later. */
static __always_inline struct pc_outcome pc_expected_inbound(const struct pc_packet *pkt, const struct pc_flow_key *key,
							      __u8 direction, __u32 len,
							      const struct pc_policy_config *config)
{
	struct pc_decision decision = {.verdict = PC_VERDICT_DENY, .reason = PC_DROP_UNSOLICITED_INBOUND};
	struct pc_flow flow;
	struct pc_flow *stored;
	__u32 scope = PC_SCOPE_TOP_LEVEL;

	if (!pc_ftp_expected(pkt, &decision, &scope))
		return pc_drop(PC_DROP_UNSOLICITED_INBOUND);
	pc_flow_init(&flow, &decision, scope, config->generation, direction);
	stored = pc_state_flow_insert(key, &flow);
	if (stored)
		pc_account(stored, direction, len, pkt->tcp_flags);
	pc_state_count(PC_COUNTER_NEW_FLOW);
	pc_emit(pkt, &flow);
	return pc_pass();
}

/* A DNS answer from a resolver on its way to a client: held while the daemon learns what it binds, so that no
 * flow the client opens on reading it meets the data plane first. Fail closed, and the client asks again: an
 * answer is dropped without a daemon, past the client's punt bucket, or in IP fragments (the daemon would read
 * only the first: their later fragments follow it and are dropped too). */
static __always_inline struct pc_outcome pc_hold_answer(const struct pc_packet *pkt, __u32 len)
{
	const struct pc_punt_config *punt = pc_state_punt_config();
	struct pc_outcome held = {.action = PC_HOLD_ANSWER, .reason = PC_DROP_NONE};
	const __u64 now = pc_state_now_ns();

	if (pkt->is_fragment) {
		pc_remember_first_fragment(pkt, PC_VERDICT_DENY, PC_DROP_ANSWER_FRAGMENTED);
		return pc_drop(PC_DROP_ANSWER_FRAGMENTED);
	}
	if (!pc_daemon_alive(punt, now))
		return pc_drop(PC_DROP_NO_DAEMON);
	if (len > PC_PUNT_MAX_FRAME)
		return pc_drop(PC_DROP_PUNT_TOO_LARGE);
	if (!pc_take_punt_token(&pkt->dst, punt, now))
		return pc_drop(PC_DROP_PUNT_RATE);
	return held;
}

static __always_inline struct pc_outcome pc_datapath_outside(const struct pc_packet *pkt, __u32 len)
{
	const struct pc_policy_config *config;
	struct pc_outcome out;
	struct pc_flow_key key;
	struct pc_flow *flow;
	__u8 direction;

	if (pc_datapath_common(pkt, &out, &key, &direction))
		return out;
	flow = pc_state_flow_lookup(&key);
	if (flow && pc_tcp_reopens(pkt, flow)) {
		pc_state_flow_delete(&key);
		flow = 0;
	}
	if (flow) {
		pc_account(flow, direction, len, pkt->tcp_flags);
		/* An answer: from port 53 of a flow the protected side opened, which only a dns rule allows there (a
		 * flow opened from outside, host mode's inbound, binds nothing). */
		if ((flow->verdict == PC_VERDICT_ALLOW || flow->verdict == PC_VERDICT_INSPECT) && direction != flow->initiator &&
		    pkt->sport == PC_DNS_PORT && (pkt->proto == 6 || pkt->proto == 17) && pkt->payload_len > 0)
			return pc_hold_answer(pkt, len);
		pc_remember_first_fragment(pkt, flow->verdict, flow->reason);
		/* A pending flow's server answers the handshake, and may speak first (SSH, SMTP): its
		 * packets pass while the client's first bytes are read. */
		if (flow->verdict != PC_VERDICT_DENY)
			return pc_pass();
		return pc_drop(flow->reason);
	}
	config = pc_state_config();
	if (config && config->mode == PC_MODE_GATEWAY)
		return pc_expected_inbound(pkt, &key, direction, len, config);
	if (!config)
		return pc_drop(PC_DROP_UNSOLICITED_INBOUND);

	/* Host mode: a flow started from outside (a connection to a service of this host) is not egress;
	 * it is allowed, and the host's replies find it. */
	const struct pc_decision admitted = {.verdict = PC_VERDICT_ALLOW, .reason = PC_DROP_NONE, .rule_id = PC_RULE_INBOUND};
	struct pc_flow inbound;

	pc_flow_init(&inbound, &admitted, PC_SCOPE_TOP_LEVEL, config->generation, direction);
	flow = pc_state_flow_insert(&key, &inbound);
	if (flow)
		pc_account(flow, direction, len, pkt->tcp_flags);
	pc_remember_first_fragment(pkt, PC_VERDICT_ALLOW, PC_DROP_NONE);
	return pc_pass();
}

#endif
