/* Punt and hold: how the data plane hands the first packets of a pending flow to the daemon and how the
 * daemon gives them back. Plain C for both builds.
 *
 *   - A pending flow's packets that carry data (and, once one is held, every later one of the client's)
 *     are copied whole into the punt ring, after a pc_punt_header, and held: the TC program steals them.
 *   - The daemon reads the name, installs the verdict in the flow table, and reinjects the held frames
 *     with AF_PACKET and a virtio-net header (so checksum and segmentation offloads are completed by the
 *     kernel, byte-identical to what the client sent):
 *       host mode: on the uplink with PACKET_QDISC_BYPASS, which skips TC egress;
 *       gateway mode: on the inside interface with PC_REINJECT_MARK; the inside interface's TC egress
 *       program (portcullis_reinject) redirects it into that interface's ingress, where portcullis_inside
 *       clears the mark and lets it pass, and it is forwarded as if it had just arrived.
 *   - A denied flow's first held frame is sent back the same way with PC_RECLASSIFY_MARK (gateway) or
 *     through TC egress (host), so the data plane meets the installed deny and answers the client with
 *     its reject.
 *
 * DNS answers (from port 53 of an allowed flow) are copied into the same ring and held: the daemon installs
 * what they bind (bound_names.h) and then sends them on, so no flow the client opens on reading an answer can
 * reach the data plane before its binding:
 *   host mode: on the uplink with PC_DELIVER_MARK, which portcullis_inside turns up the local stack;
 *   gateway mode: on the outside interface it came from with PC_REINJECT_MARK, which portcullis_reinject
 *   turns into that interface's ingress, where portcullis_outside lets it pass to be forwarded;
 *   a masquerading gateway takes answers at the inside interface's egress (PC_PUNT_ANSWER_EGRESS) and sends
 *   them out of it with PACKET_QDISC_BYPASS.
 *
 * Bounds, all fail-closed: a flow whose held bytes would pass pc_punt_config.flow_hold_bytes, a source
 * punting faster than its token bucket allows, a punt ring without room, a frame larger than the punt
 * buffer, or a daemon whose heartbeat is older than PC_DAEMON_STALE_NS: the flow is denied and the reason
 * counted. */
#ifndef PORTCULLIS_PUNT_H
#define PORTCULLIS_PUNT_H

#include "portcullis/compat.h"
#include "portcullis/packet.h"

/* skb->mark of a frame the daemon reinjects after an allow: it passes without classification. Marks
 * never arrive from a client: the kernel clears them when a packet crosses into another namespace. */
#define PC_REINJECT_MARK 0x50435249U /* "PCRI" */
/* skb->mark of a frame the daemon makes up for a local client (host mode: a synthesized DNS answer), sent on
 * the uplink: portcullis_inside turns it up the local stack. */
#define PC_DELIVER_MARK 0x50434456U /* "PCDV" */
/* skb->mark of a held frame the daemon sends back in to meet its flow's deny (gateway mode). */
#define PC_RECLASSIFY_MARK 0x50435243U /* "PCRC" */
/* skb->mark of what portcullis_outside lets through unread: a reject redirected into the ingress of the
 * interface it was leaving (host mode), and the daemon's reset probe (a masquerading gateway). */
#define PC_REJECT_MARK 0x5043524aU /* "PCRJ" */

/* Largest frame the punt buffer holds: a GSO super-packet of 64 KiB plus its headers. */
#define PC_PUNT_MAX_FRAME (65536 + 256)
/* Power of two above PC_PUNT_MAX_FRAME: the copy length is masked with it for the verifier. */
#define PC_PUNT_BUFFER 131072

/* A daemon that has not written its heartbeat for this long is gone: pending flows are denied. */
#define PC_DAEMON_STALE_NS 2000000000ULL

enum pc_punt_path {
	PC_PUNT_INGRESS = 0, /* gateway: taken at the inside interface's ingress */
	PC_PUNT_EGRESS = 1,  /* host: taken at the uplink's egress */
	PC_PUNT_ANSWER = 2,  /* a DNS answer taken where it arrived (held): the daemon learns bindings */
	PC_PUNT_DENIED = 3,  /* a copy of the packet a new flow was denied at (not held), for --pcap-denied */
	PC_PUNT_ANSWER_EGRESS = 4, /* a DNS answer taken leaving towards its client (masquerading gateway; held) */
};

/* pc_punt_config.flags */
#define PC_PUNT_CAPTURE_DENIED 1 /* copy the packet every new flow is denied at (PC_PUNT_DENIED) */

struct pc_punt_header {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 ifindex;      /* where the frame was taken, and where it goes back */
	__u32 len;          /* the frame's length; the frame follows the header */
	__u16 gso_size;     /* 0 unless the frame is a GSO super-packet */
	__u16 gso_segs;
	__u8 path;          /* enum pc_punt_path */
	__u8 pad[3];
};
PC_STATIC_ASSERT(sizeof(struct pc_punt_header) == 24, "pc_punt_header layout is shared with BPF");

/* Written by the daemon (single-entry array). A zero heartbeat means no daemon ever attached. */
struct pc_punt_config {
	__u64 heartbeat_ns;    /* CLOCK_MONOTONIC of the daemon's last sign of life */
	__u32 flow_hold_bytes; /* held bytes a pending flow may have; past them it is denied */
	__u32 rate_per_sec;    /* punts per second per source address (token bucket refill), at most 1e9 */
	__u32 burst;           /* bucket size */
	__u32 flags;           /* PC_PUNT_CAPTURE_DENIED */
};
PC_STATIC_ASSERT(sizeof(struct pc_punt_config) == 24, "pc_punt_config layout is shared with BPF");

/* Token bucket per source address (LRU hash keyed by the source address). */
struct pc_punt_bucket {
	__u64 refilled_ns;
	__u32 tokens;
	__u32 pad;
};
PC_STATIC_ASSERT(sizeof(struct pc_punt_bucket) == 16, "pc_punt_bucket layout is shared with BPF");

/* Whether the daemon that wrote `config` (null: none did) has given a sign of life by `now`. */
static __always_inline int pc_daemon_alive(const struct pc_punt_config *config, __u64 now)
{
	return config && config->heartbeat_ns != 0 && now <= config->heartbeat_ns + PC_DAEMON_STALE_NS;
}

/* Takes one token from `bucket` at `now`; returns 0 when there is none. */
static __always_inline int pc_punt_bucket_take(struct pc_punt_bucket *bucket, const struct pc_punt_config *config,
					       __u64 now)
{
	if (now > bucket->refilled_ns) {
		__u64 elapsed = now - bucket->refilled_ns;

		if (elapsed > 10000000000ULL) /* a full bucket by then; keeps the product below 2^64 */
			elapsed = 10000000000ULL;
		const __u64 earned = elapsed * config->rate_per_sec / 1000000000ULL;

		if (earned > 0) {
			const __u64 tokens = bucket->tokens + earned;

			bucket->tokens = tokens > config->burst ? config->burst : (__u32)tokens;
			bucket->refilled_ns = now;
		}
	}
	if (bucket->tokens == 0)
		return 0;
	bucket->tokens -= 1;
	return 1;
}

#endif
