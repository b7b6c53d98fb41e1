/* Test-only: runs the shared packet parser in the kernel, from TC and from XDP, on what
 * BPF_PROG_TEST_RUN hands it, and leaves the result in global variables: the .bss section, a
 * single-entry array map the test reads through the skeleton. test/bpf/packet_parse_test.cpp compares
 * it with the userspace build of the same parser. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "portcullis/parse.h"

struct pc_packet packet;
__u32 drop_reason;
struct pc_flow_key flow_key;
__s32 flow_key_status;
__u8 direction;
struct pc_flow_key quoted_key;
__s32 quoted_key_status;
__u8 quoted_direction;

static __always_inline void parse_and_record(const void *data, const void *data_end)
{
	drop_reason = pc_parse_packet(data, data_end, &packet);
	flow_key_status = pc_flow_key_from_packet(&packet, &flow_key, &direction);
	quoted_key_status = pc_flow_key_from_quoted(&packet, &quoted_key, &quoted_direction);
}

SEC("tc")
int parse_test_tc(struct __sk_buff *skb)
{
	parse_and_record((const void *)(long)skb->data, (const void *)(long)skb->data_end);
	return TC_ACT_OK;
}

SEC("xdp")
int parse_test_xdp(struct xdp_md *ctx)
{
	parse_and_record((const void *)(long)ctx->data, (const void *)(long)ctx->data_end);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
