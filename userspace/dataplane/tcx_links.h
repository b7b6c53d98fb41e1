// TCX: the kernel's TC hooks for BPF links (Linux 6.6+), used through what this system has. Debian's libbpf 1.1
// has no bpf_program__attach_tcx and the 6.1 UAPI headers predate TCX, but BPF_LINK_CREATE, BPF_LINK_UPDATE and
// BPF_PROG_QUERY pass the attach type to the kernel as a number: libbpf's bpf_link_create (with only `flags` set),
// bpf_link_update and bpf_prog_query_opts work for TCX once the kernel's values are known. They are defined here,
// checked against the kernel's include/uapi/linux/bpf.h, and exercised by the attacher's kernel tests.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/tc_filters.h"

namespace portcullis::dataplane {

// enum bpf_attach_type: ... BPF_LSM_CGROUP (43), BPF_STRUCT_OPS, BPF_NETFILTER, BPF_TCX_INGRESS, BPF_TCX_EGRESS.
inline constexpr uint32_t kBpfTcxIngress = 46;
inline constexpr uint32_t kBpfTcxEgress = 47;
// enum bpf_link_type: ... BPF_LINK_TYPE_NETFILTER (10), BPF_LINK_TYPE_TCX.
inline constexpr uint32_t kBpfLinkTypeTcx = 11;
// The generic attach flags of link_create.flags (BPF_F_REPLACE is 1 << 2): BPF_F_BEFORE without a relative
// program or link (link_create.tcx.relative_fd 0) puts the new link first in the hook's chain.
inline constexpr uint32_t kBpfFBefore = 1U << 3;

uint32_t tcx_attach_type(TcDirection direction);

// Whether the kernel has TCX, asked without changing anything: a BPF_PROG_QUERY of the TCX ingress hook of
// `ifindex`, which a kernel without TCX refuses as an unknown attach type (EINVAL). Throws std::runtime_error
// when the kernel cannot be asked at all.
bool tcx_supported(int ifindex);

// The ids of the programs on an interface's TCX hook, in the order they run. Throws std::runtime_error.
std::vector<uint32_t> list_tcx_programs(int ifindex, TcDirection direction);

// Links `prog_fd` to the interface's TCX hook, first in its chain (BPF_F_BEFORE). Returns the link's file
// descriptor, or -errno.
int create_tcx_link(int prog_fd, int ifindex, TcDirection direction);

// What the kernel says of a BPF link (struct bpf_link_info, whose `tcx` member the 6.1 headers lack).
struct LinkInfo {
  uint32_t type = 0;
  uint32_t id = 0;
  uint32_t prog_id = 0;
  uint32_t ifindex = 0;      // TCX: 0 once the interface is gone (the link is defunct)
  uint32_t attach_type = 0;  // TCX: kBpfTcxIngress or kBpfTcxEgress
};
std::optional<LinkInfo> link_info(int link_fd);

}  // namespace portcullis::dataplane
