/* The data plane's maps and the state functions datapath.h needs, for the BPF build. Every map is
 * pinned by name under the daemon's pin directory, so the XDP and TC objects share them and a restarted
 * daemon adopts them with the flows they hold. Sizes here are defaults the daemon may change before
 * loading. */
#ifndef PORTCULLIS_MAPS_H
#define PORTCULLIS_MAPS_H

#ifndef __bpf__
#error "maps.h is for the BPF programs; userspace provides the state functions itself"
#endif

#include "portcullis/bound_names.h"
#include "portcullis/compat.h"
#include "portcullis/expect.h"
#include "portcullis/flow.h"
#include "portcullis/packet.h"
#include "portcullis/policy_maps.h"
#include "portcullis/punt.h"

#define PC_FLOW_TABLE_SIZE 262144
#define PC_FRAG_TABLE_SIZE 16384
#define PC_RULE_SETS_SIZE 65536
#define PC_PREFIXES_SIZE 262144
#define PC_SOURCES_SIZE 4096
#define PC_EVENTS_BYTES (1 << 20)
#define PC_PUNTS_BYTES (1 << 24)
#define PC_PUNT_BUCKETS_SIZE 65536
#define PC_BOUND_NAMES_SIZE 65536
/* One punt buffer per CPU: a plain array indexed by CPU, since per-CPU values cap at 32 KiB. The daemon
 * sets the number of CPUs before loading. */
#define PC_PUNT_SCRATCH_CPUS 64

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PC_FLOW_TABLE_SIZE);
	__type(key, struct pc_flow_key);
	__type(value, struct pc_flow);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PC_FRAG_TABLE_SIZE);
	__type(key, struct pc_frag_key);
	__type(value, struct pc_frag);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PC_RULE_SETS_SIZE);
	__type(key, __u32);
	__type(value, struct pc_rule_set);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_rule_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PC_PREFIXES_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pc_dst4_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PC_PREFIXES_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pc_dst6_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_dst6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PC_SOURCES_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pc_src4_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_src4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PC_SOURCES_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pc_src6_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_src6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PC_MAX_SCOPES);
	__type(key, __u32);
	__type(value, struct pc_scope);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_scopes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pc_policy_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PC_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PC_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PC_PUNTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_punts SEC(".maps");

struct pc_punt_scratch {
	struct pc_punt_header header;
	__u8 frame[PC_PUNT_BUFFER];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PC_PUNT_SCRATCH_CPUS);
	__type(key, __u32);
	__type(value, struct pc_punt_scratch);
} pc_punt_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pc_punt_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_punt_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PC_PUNT_BUCKETS_SIZE);
	__type(key, union pc_addr);
	__type(value, struct pc_punt_bucket);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_punt_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PC_EXPECTS_SIZE);
	__type(key, struct pc_expect_key);
	__type(value, struct pc_expect);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_expects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PC_FTP_PEERS_SIZE);
	__type(key, struct pc_ftp_peer_key);
	__type(value, struct pc_ftp_peer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_ftp_peers SEC(".maps");

/* LRU: were it ever full, the oldest binding would go before the newest is refused. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PC_BOUND_NAMES_SIZE);
	__type(key, struct pc_bound_key);
	__type(value, struct pc_bound_name);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pc_bound_names SEC(".maps");

static __always_inline const struct pc_bound_name *pc_state_bound_name_lookup(const struct pc_bound_key *key)
{
	return bpf_map_lookup_elem(&pc_bound_names, key);
}

static __always_inline struct pc_expect *pc_state_expect_lookup(const struct pc_expect_key *key)
{
	return bpf_map_lookup_elem(&pc_expects, key);
}

static __always_inline int pc_state_expect_delete(const struct pc_expect_key *key)
{
	return bpf_map_delete_elem(&pc_expects, key);
}

static __always_inline const struct pc_ftp_peer *pc_state_ftp_peer_lookup(const struct pc_ftp_peer_key *key)
{
	return bpf_map_lookup_elem(&pc_ftp_peers, key);
}

static __always_inline struct pc_flow *pc_state_flow_lookup(const struct pc_flow_key *key)
{
	return bpf_map_lookup_elem(&pc_flows, key);
}

static __always_inline struct pc_flow *pc_state_flow_insert(const struct pc_flow_key *key, const struct pc_flow *flow)
{
	/* BPF_NOEXIST: when two CPUs see a flow's first packets at once, the first decision stands. */
	bpf_map_update_elem(&pc_flows, key, flow, BPF_NOEXIST);
	return bpf_map_lookup_elem(&pc_flows, key);
}

static __always_inline void pc_state_flow_delete(const struct pc_flow_key *key)
{
	bpf_map_delete_elem(&pc_flows, key);
}

static __always_inline const struct pc_frag *pc_state_frag_lookup(const struct pc_frag_key *key)
{
	return bpf_map_lookup_elem(&pc_frags, key);
}

static __always_inline void pc_state_frag_insert(const struct pc_frag_key *key, const struct pc_frag *frag)
{
	bpf_map_update_elem(&pc_frags, key, frag, BPF_ANY);
}

static __always_inline __u32 pc_state_source_scope(const struct pc_packet *pkt)
{
	__u32 *scope;

	if (pkt->family == PC_FAMILY_IPV4) {
		struct pc_src4_key key = {.prefixlen = 32};

		__builtin_memcpy(key.addr, pkt->src.bytes, 4);
		scope = bpf_map_lookup_elem(&pc_src4, &key);
	} else {
		struct pc_src6_key key = {.prefixlen = 128};

		__builtin_memcpy(key.addr, pkt->src.bytes, 16);
		scope = bpf_map_lookup_elem(&pc_src6, &key);
	}
	return scope ? *scope : PC_SCOPE_TOP_LEVEL;
}

static __always_inline const struct pc_rule_set *pc_rule_set_by_id(const __u32 *id)
{
	if (!id)
		return 0;
	return bpf_map_lookup_elem(&pc_rule_sets, id);
}

static __always_inline const struct pc_rule_set *pc_state_dst_rules(__u32 scope, const struct pc_packet *pkt)
{
	if (pkt->family == PC_FAMILY_IPV4) {
		struct pc_dst4_key key = {.prefixlen = 64, .scope = bpf_htonl(scope)};

		__builtin_memcpy(key.addr, pkt->dst.bytes, 4);
		return pc_rule_set_by_id(bpf_map_lookup_elem(&pc_dst4, &key));
	}
	struct pc_dst6_key key = {.prefixlen = 160, .scope = bpf_htonl(scope)};

	__builtin_memcpy(key.addr, pkt->dst.bytes, 16);
	return pc_rule_set_by_id(bpf_map_lookup_elem(&pc_dst6, &key));
}

static __always_inline const struct pc_rule_set *pc_state_name_rules(__u32 scope)
{
	const struct pc_scope *info = bpf_map_lookup_elem(&pc_scopes, &scope);

	return info ? pc_rule_set_by_id(&info->name_rule_set) : 0;
}

static __always_inline const struct pc_policy_config *pc_state_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pc_config, &zero);
}

static __always_inline void pc_state_count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&pc_counters, &slot);

	if (value)
		*value += 1;
}

/* Filled in place in the ring: no copy on the stack, which the punt path needs for itself. */
static __always_inline void pc_state_emit_verdict(const struct pc_packet *pkt, const struct pc_flow *flow)
{
	struct pc_verdict_event *event = bpf_ringbuf_reserve(&pc_events, sizeof(*event), 0);

	if (!event) {
		pc_state_count(PC_COUNTER_EVENT_LOST);
		return;
	}
	pc_verdict_event_fill(event, pkt, flow);
	bpf_ringbuf_submit(event, 0);
}

static __always_inline const struct pc_punt_config *pc_state_punt_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&pc_punt_config, &zero);
}

/* The token bucket of one address: the source of what a flow punts, the client of a held DNS answer. */
static __always_inline struct pc_punt_bucket *pc_state_punt_bucket(const union pc_addr *owner)
{
	struct pc_punt_bucket *bucket = bpf_map_lookup_elem(&pc_punt_buckets, owner);
	const struct pc_punt_config *config;

	if (bucket)
		return bucket;
	config = pc_state_punt_config();
	if (!config)
		return 0;
	struct pc_punt_bucket full = {.refilled_ns = bpf_ktime_get_coarse_ns(), .tokens = config->burst};

	bpf_map_update_elem(&pc_punt_buckets, owner, &full, BPF_NOEXIST);
	return bpf_map_lookup_elem(&pc_punt_buckets, owner);
}

/* Flow times are for timeouts and logs: the coarse clock (a jiffy's resolution) costs a fraction of the
 * precise one on every packet. */
static __always_inline __u64 pc_state_now_ns(void)
{
	return bpf_ktime_get_coarse_ns();
}

#endif
