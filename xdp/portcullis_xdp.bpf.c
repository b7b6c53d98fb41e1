/* XDP entry point on the inside interfaces: the early-drop fast path for flows already denied.
 * Until the flow table exists it counts and passes every frame. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "portcullis/counters.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PC_COUNTER_MAX);
	__type(key, __u32);
	__type(value, struct pc_counter);
} counters SEC(".maps");

SEC("xdp")
int portcullis_xdp(struct xdp_md *ctx)
{
	__u32 key = PC_COUNTER_XDP_SEEN;
	struct pc_counter *c = bpf_map_lookup_elem(&counters, &key);

	if (c) {
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
