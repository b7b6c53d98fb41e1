/* TC entry point: per-flow classification of every packet.
 * Until the classifier exists it counts and passes every packet. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "portcullis/counters.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PC_COUNTER_MAX);
	__type(key, __u32);
	__type(value, struct pc_counter);
} counters SEC(".maps");

SEC("tc")
int portcullis_tc(struct __sk_buff *skb)
{
	__u32 key = PC_COUNTER_TC_SEEN;
	struct pc_counter *c = bpf_map_lookup_elem(&counters, &key);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
