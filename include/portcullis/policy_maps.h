/* The compiled policy as the data plane holds it: map keys and values written by the daemon
 * (userspace/dataplane/policy_tables.cpp) and read by the classifier (classify.h).
 *
 * Scopes: scope 0 holds the top-level rules, which apply to every source; scope g + 1 holds the rules of
 * group g. A flow is decided by the rules of scope 0 and of its source's group scope.
 *
 * Destinations: every prefix of a scope maps (longest-prefix match) to a rule set holding every rule of
 * that scope whose prefixes contain it, so one lookup per scope finds all address rules that apply.
 * Rules that match the name a flow shows (SNI, Host: https, tls, quic, http to a name) cannot be decided
 * from an address: they sit in the scope's name rule set and make a flow they could match pending. Rules
 * of other protocols to a name match only addresses that DNS answers bind to that name. */
#ifndef PORTCULLIS_POLICY_MAPS_H
#define PORTCULLIS_POLICY_MAPS_H

#include "portcullis/compat.h"

#define PC_SCOPE_TOP_LEVEL 0
#define PC_MAX_SCOPES 1024
#define PC_RULE_SET_EMPTY 0		  /* rule set 0 is always the empty set */
#define PC_RULE_SET_CAPACITY 32		  /* entries per rule set; a power of two */
#define PC_RULE_SET_OVERFLOW 0xffffffffu  /* rule_set.count: the rules did not fit; userspace decides */
#define PC_RULE_NONE 0xffffffffu	  /* no rule decided (defaults, reasons without a rule) */
#define PC_RULE_INBOUND 0xfffffffeu	  /* host mode: a flow opened from outside, to a service of this host */

/* Layer-4 protocols an entry applies to (bit mask). */
enum pc_l4_bit {
	PC_L4_TCP = 1 << 0,
	PC_L4_UDP = 1 << 1,
	PC_L4_ICMP = 1 << 2,
	PC_L4_ICMPV6 = 1 << 3,
	PC_L4_OTHER = 1 << 4, /* any other IP protocol (SCTP, GRE, ...): only `any` rules match it */
	PC_L4_ALL = PC_L4_TCP | PC_L4_UDP | PC_L4_ICMP | PC_L4_ICMPV6 | PC_L4_OTHER,
};

enum pc_rule_flag {
	PC_RULE_DENY = 1 << 0,	   /* the rule's action is deny */
	PC_RULE_NEEDS_L7 = 1 << 1, /* matches only once the flow has shown its protocol (tls, quic, http, ssh) */
	PC_RULE_BY_NAME = 1 << 2,  /* the destination is a name the flow must show (SNI, Host) */
	PC_RULE_DNS = 1 << 3,	   /* a dns rule: the only kind that may allow port 53 */
};

/* One rule, one protocol set, one range. `lo`..`hi` is a destination port range for TCP and UDP and an
 * ICMP type range for ICMP and ICMPv6. A rule with several port ranges or ICMP types has several entries. */
struct pc_rule_entry {
	__u32 rule_id; /* the rule's index in the compiled policy, for logs and counters */
	__u8 flags;    /* enum pc_rule_flag */
	__u8 l4_mask;  /* enum pc_l4_bit */
	__u16 lo;
	__u16 hi;
	__u16 pad;
};
PC_STATIC_ASSERT(sizeof(struct pc_rule_entry) == 12, "pc_rule_entry is shared with BPF");

/* Entries in rule id order, so the first match of a kind is the rule the policy lists first. */
struct pc_rule_set {
	__u32 count; /* entries used, or PC_RULE_SET_OVERFLOW */
	__u32 pad;
	struct pc_rule_entry entries[PC_RULE_SET_CAPACITY];
};
PC_STATIC_ASSERT(sizeof(struct pc_rule_set) == 8 + 12 * PC_RULE_SET_CAPACITY, "pc_rule_set is shared with BPF");

/* Destination LPM keys: the scope is part of the key, so prefixlen counts its 32 bits too. */
struct pc_dst4_key {
	__u32 prefixlen; /* 32 + prefix length */
	__u32 scope;	 /* big-endian, so it is matched as the key's leading bits */
	__u8 addr[4];
};
PC_STATIC_ASSERT(sizeof(struct pc_dst4_key) == 12, "pc_dst4_key is shared with BPF");

struct pc_dst6_key {
	__u32 prefixlen; /* 32 + prefix length */
	__u32 scope;	 /* big-endian */
	__u8 addr[16];
};
PC_STATIC_ASSERT(sizeof(struct pc_dst6_key) == 24, "pc_dst6_key is shared with BPF");

/* Source LPM keys: which group a sandbox address belongs to (value: its scope, g + 1). */
struct pc_src4_key {
	__u32 prefixlen;
	__u8 addr[4];
};
PC_STATIC_ASSERT(sizeof(struct pc_src4_key) == 8, "pc_src4_key is shared with BPF");

struct pc_src6_key {
	__u32 prefixlen;
	__u8 addr[16];
};
PC_STATIC_ASSERT(sizeof(struct pc_src6_key) == 20, "pc_src6_key is shared with BPF");

/* Per scope: the rules whose destination is a name (value of the scope array, indexed by scope). */
struct pc_scope {
	__u32 name_rule_set;
	__u32 pad;
};
PC_STATIC_ASSERT(sizeof(struct pc_scope) == 8, "pc_scope is shared with BPF");

enum pc_mode {
	PC_MODE_HOST = 0,
	PC_MODE_GATEWAY = 1,
};

enum pc_action {
	PC_ACTION_ALLOW = 0,
	PC_ACTION_DENY = 1,
};

/* Policy-wide settings (single-entry array). */
struct pc_policy_config {
	__u8 mode;	     /* enum pc_mode */
	__u8 default_action; /* enum pc_action */
	__u8 on_deny_reject; /* 1: reject (RST / ICMP admin-prohibited), 0: drop silently */
	__u8 filter_queries; /* 1: every DNS query is read by the daemon before it goes on (dns.filter_queries) */
	__u32 generation;    /* bumped on every policy load, so flows can tell which policy decided them */
};
PC_STATIC_ASSERT(sizeof(struct pc_policy_config) == 8, "pc_policy_config is shared with BPF");

#endif
