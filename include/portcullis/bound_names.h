/* Addresses DNS bound to names that deny rules name, for the flows an address rule or the default action would
 * allow outright. Plain C for both builds; layouts pinned by size checks.
 *
 * A rule of another protocol than tls, quic or http (tcp, udp, icmp, any, ssh, ftp) whose destination is a name
 * matches the addresses DNS answers bind to that name. An allow of that kind makes every flow it could match
 * pending, and the daemon decides it by the names its address is bound to. A deny cannot do the same without
 * making every flow of its protocol wait: instead, each answer that binds a name a deny rule names puts the
 * address here, for the client's scope, before the answer goes on (answers are held: punt.h). A new flow the
 * data plane would allow, of a protocol such a rule covers, to an address found here and not expired, is
 * pending instead (PC_DROP_BOUND_NAME) and the daemon decides it from its first packet, with every name bound
 * to the address. */
#ifndef PORTCULLIS_BOUND_NAMES_H
#define PORTCULLIS_BOUND_NAMES_H

#include "portcullis/compat.h"
#include "portcullis/packet.h"

struct pc_bound_key {
	union pc_addr addr; /* the address an answer bound */
	__u32 scope;	    /* the scope of the client the answer went to */
	__u8 family;
	__u8 pad[3];
};
PC_STATIC_ASSERT(sizeof(struct pc_bound_key) == 24, "pc_bound_key layout is shared with BPF");

struct pc_bound_name {
	__u64 expires_ns; /* CLOCK_MONOTONIC: the binding's end (the data plane reads it coarse) */
	__u8 l4_mask;	  /* enum pc_l4_bit: the protocols of the deny rules that name a name bound here */
	__u8 pad[7];
};
PC_STATIC_ASSERT(sizeof(struct pc_bound_name) == 16, "pc_bound_name layout is shared with BPF");

#endif
