/* XDP entry point on the inside interfaces (gateway mode): the early drop for flows already denied, before
 * the kernel builds an skb. Everything else goes on to TC, which decides new flows. */
#include "portcullis/compat.h"

#include "portcullis/maps.h"
#include "portcullis/parse.h"

SEC("xdp")
int portcullis_xdp(struct xdp_md *ctx)
{
	struct pc_packet pkt;
	struct pc_flow_key key;
	const struct pc_flow *flow;
	__u8 direction;

	/* A malformed packet is TC's to count and drop, so the counters see it once. */
	if (pc_parse_packet((const void *)(long)ctx->data, (const void *)(long)ctx->data_end, &pkt) != PC_DROP_NONE)
		return XDP_PASS;
	if (pkt.inner_family != PC_FAMILY_NONE || pc_flow_key_from_packet(&pkt, &key, &direction) < 0)
		return XDP_PASS;
	flow = bpf_map_lookup_elem(&pc_flows, &key);
	if (!flow || flow->verdict != PC_VERDICT_DENY)
		return XDP_PASS;
	pc_state_count(PC_DROP_FLOW_DENIED);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
