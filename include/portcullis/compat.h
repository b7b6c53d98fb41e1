/* The thin layer under the data-plane code that compiles twice: for BPF (clang -target bpf) and for
 * userspace C or C++ (replay, tests, fuzzers). Only what the shared headers need lives here.
 *
 * Shared code reads packets through a pointer cursor over [data, data_end): that works unchanged for
 * TC and XDP direct packet access and for a userspace buffer. */
#ifndef PORTCULLIS_COMPAT_H
#define PORTCULLIS_COMPAT_H

#ifdef __bpf__

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Packet headers are read in place; the verifier accepts their unaligned loads on the architectures
 * Portcullis runs on, and packed structs would make clang emit byte-wise loads. */
#define PC_WIRE_STRUCT

#else /* userspace */

#include <linux/types.h>

/* <linux/stddef.h> defines __always_inline as a plain hint; the shared code wants the guarantee. */
#undef __always_inline
#define __always_inline inline __attribute__((__always_inline__)) /* NOLINT(bugprone-reserved-identifier) */

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define bpf_ntohs(x) __builtin_bswap16(x)
#define bpf_ntohl(x) __builtin_bswap32(x)
#define bpf_be64_to_cpu(x) __builtin_bswap64(x)
#else
#define bpf_ntohs(x) (x)
#define bpf_ntohl(x) (x)
#define bpf_be64_to_cpu(x) (x)
#endif
#define bpf_htons(x) bpf_ntohs(x)
#define bpf_htonl(x) bpf_ntohl(x)

/* A userspace buffer holds headers at any byte offset (a frame's IP header sits 2 bytes off a 4-byte
 * boundary); packed makes reading them defined behaviour, and costs nothing on x86 and arm64. */
#define PC_WIRE_STRUCT __attribute__((__packed__))

#endif

/* idx & mask, done where the verifier sees it: clang otherwise folds a mask that a preceding bound check
 * makes redundant, and may index with a copy of the value the check never constrained. */
#ifdef __bpf__
#define pc_mask_index(idx, mask) asm volatile("%[v] &= %[m]" : [v] "+r"(idx) : [m] "i"(mask))
#else
#define pc_mask_index(idx, mask) ((idx) &= (mask))
#endif

/* Runs fn(i, ctx) for i in [0, n) until it returns non-zero. In BPF this is bpf_loop: the verifier
 * checks the body once instead of once per iteration and per path, which a loop over a rule set's
 * entries with several outcomes each would need. */
#ifdef __bpf__
#define pc_loop(n, fn, ctx) bpf_loop((n), (fn), (ctx), 0)
#else
static inline void pc_loop(__u32 n, int (*fn)(__u32, void *), void *ctx)
{
	for (__u32 i = 0; i < n; i++)
		if (fn(i, ctx))
			break;
}
#endif

/* A function the BPF verifier checks once, on its own, instead of at every path that reaches it (a global
 * function: scalar or pointer arguments, scalar result, pointers possibly null). Plain inline in userspace. */
#ifdef __bpf__
#define PC_SUBPROG __attribute__((noinline))
#else
#define PC_SUBPROG static inline
#endif

/* Map keys, values and records are shared by both builds: each layout is pinned by a size check. */
#ifdef __cplusplus
#define PC_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define PC_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#endif
