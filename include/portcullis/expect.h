/* FTP data connections, announced by their control connection and let through by the kernel's FTP conntrack
 * helper's expectations, which the daemon mirrors here. Plain C for both builds; layouts pinned by size checks.
 *
 * pc_expects: one entry per expectation: the data connection's opener, its destination and port (any source
 * port), allowed once, as its control connection's rule, until the expectation's timeout. Only a connection
 * the policy denies by default is looked up: a rule's deny stands, and a flow pending its name waits for it.
 * pc_ftp_peers: one entry per client and server with an allowed FTP control connection between them. A new
 * TCP connection between them that no expectation covers yet is held for the daemon, which asks the kernel:
 * the expectation is made when the control reply passes the gateway, before the client can act on it, but
 * its copy here may still be on its way. */
#ifndef PORTCULLIS_EXPECT_H
#define PORTCULLIS_EXPECT_H

#include "portcullis/compat.h"
#include "portcullis/packet.h"

struct pc_expect_key {
	union pc_addr src; /* who opens the data connection: the client (passive) or the server (active) */
	union pc_addr dst;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u32 pad;
};
PC_STATIC_ASSERT(sizeof(struct pc_expect_key) == 40, "pc_expect_key layout is shared with BPF");

struct pc_expect {
	__u64 expires_ns;	   /* CLOCK_MONOTONIC (the data plane reads it coarse: up to a tick late) */
	struct pc_flow_key master; /* the control connection */
	__u32 rule_id;		   /* the rule that allowed it */
	__u32 scope;		   /* the client's */
};
PC_STATIC_ASSERT(sizeof(struct pc_expect) == 56, "pc_expect layout is shared with BPF");

struct pc_ftp_peer_key {
	union pc_addr client;
	union pc_addr server;
	__u8 family;
	__u8 pad[7];
};
PC_STATIC_ASSERT(sizeof(struct pc_ftp_peer_key) == 40, "pc_ftp_peer_key layout is shared with BPF");

struct pc_ftp_peer {
	__u32 control_flows; /* open control connections between the two */
	__u32 pad;
};
PC_STATIC_ASSERT(sizeof(struct pc_ftp_peer) == 8, "pc_ftp_peer layout is shared with BPF");

#define PC_EXPECTS_SIZE 16384
#define PC_FTP_PEERS_SIZE 16384

#endif
