/* Per-CPU packet counters shared by the BPF programs and the daemon.
 * Included by BPF C (clang -target bpf) and by C++: plain C, fixed-size types only. */
#ifndef PORTCULLIS_COUNTERS_H
#define PORTCULLIS_COUNTERS_H

#include <linux/types.h>

/* Index into the per-CPU array map `counters`. The data-plane programs add their drop reasons here. */
enum pc_counter_index {
	PC_COUNTER_XDP_SEEN = 0,
	PC_COUNTER_TC_SEEN = 1,
	PC_COUNTER_MAX = 2,
};

struct pc_counter {
	__u64 packets;
	__u64 bytes;
};

#ifdef __cplusplus
static_assert(sizeof(struct pc_counter) == 16, "pc_counter layout is shared with BPF");
#else
_Static_assert(sizeof(struct pc_counter) == 16, "pc_counter layout is shared with BPF");
#endif

#endif
