#include "dataplane/tcx_links.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace portcullis::dataplane {
namespace {

// A TCX hook holds at most 64 programs (BPF_MPROG_MAX).
constexpr size_t kMaxTcxPrograms = 64;

// The head of struct bpf_link_info as kernels with TCX lay it out: the union after prog_id is 8-aligned, and
// its `tcx` member is { __u32 ifindex; __u32 attach_type; }. The kernel fills no more than the size it is given.
struct TcxLinkInfo {
  uint32_t type;
  uint32_t id;
  uint32_t prog_id;
  uint32_t padding;
  uint32_t ifindex;
  uint32_t attach_type;
};
static_assert(sizeof(TcxLinkInfo) == 24);

bpf_attach_type attach_type(TcDirection direction) {
  // Within the range of the 6.1 headers' enum (up to 63), so the conversion is well defined.
  return static_cast<bpf_attach_type>(tcx_attach_type(direction));
}

}  // namespace

uint32_t tcx_attach_type(TcDirection direction) {
  return direction == TcDirection::egress ? kBpfTcxEgress : kBpfTcxIngress;
}

bool tcx_supported(int ifindex) {
  LIBBPF_OPTS(bpf_prog_query_opts, query);
  const int error = bpf_prog_query_opts(ifindex, attach_type(TcDirection::ingress), &query);
  // ENOENT: TCX, and the hook never had anything (some kernels say so rather than give a count of 0).
  if (error == 0 || error == -ENOENT) return true;
  if (error == -EINVAL) return false;
  throw std::runtime_error(std::string("cannot ask the kernel whether it has TCX: ") + std::strerror(-error));
}

std::vector<uint32_t> list_tcx_programs(int ifindex, TcDirection direction) {
  std::array<uint32_t, kMaxTcxPrograms> ids{};
  LIBBPF_OPTS(bpf_prog_query_opts, query, .prog_ids = ids.data(), .prog_cnt = static_cast<uint32_t>(ids.size()));
  const int error = bpf_prog_query_opts(ifindex, attach_type(direction), &query);
  if (error == -ENOENT) return {};
  if (error != 0) throw std::runtime_error(std::string("cannot list the TCX programs: ") + std::strerror(-error));
  return {ids.begin(), ids.begin() + std::min<size_t>(query.prog_cnt, ids.size())};
}

int create_tcx_link(int prog_fd, int ifindex, TcDirection direction) {
  // libbpf 1.1 passes `flags` through for attach types it does not know and wants every other option zero:
  // link_create.tcx.relative_fd and expected_revision stay 0 (no relative object, no revision check).
  LIBBPF_OPTS(bpf_link_create_opts, options, .flags = kBpfFBefore);
  return bpf_link_create(prog_fd, ifindex, attach_type(direction), &options);
}

std::optional<LinkInfo> link_info(int link_fd) {
  TcxLinkInfo raw{};
  uint32_t length = sizeof(raw);
  if (bpf_obj_get_info_by_fd(link_fd, &raw, &length) != 0) return std::nullopt;
  LinkInfo info;
  info.type = raw.type;
  info.id = raw.id;
  info.prog_id = raw.prog_id;
  if (raw.type == kBpfLinkTypeTcx) {
    info.ifindex = raw.ifindex;
    info.attach_type = raw.attach_type;
  }
  return info;
}

}  // namespace portcullis::dataplane
