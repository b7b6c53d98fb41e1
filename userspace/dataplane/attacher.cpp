#include "dataplane/attacher.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "dataplane/tc_filters.h"

namespace portcullis::dataplane {
namespace {

// Our filter's place on the clsact hook: priority 1 runs before any filter added after us.
constexpr uint32_t kTcHandle = 0x5043;  // "PC"
constexpr uint32_t kTcPriority = 1;

std::string error_text(int error) {
  return std::strerror(error < 0 ? -error : error);
}

bpf_tc_hook tc_hook(int ifindex, AttachPoint point) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = point == AttachPoint::tc_egress ? BPF_TC_EGRESS : BPF_TC_INGRESS;
  return hook;
}

uint32_t prog_id_of(int prog_fd) {
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &length) != 0) return 0;
  return info.id;
}

std::string describe(const char* what, uint32_t id, const std::string& name) {
  return std::string(what) + " '" + (name.empty() ? "?" : name) + "' (id " + std::to_string(id) + ")";
}

}  // namespace

std::string_view to_string(AttachPoint point) {
  switch (point) {
    case AttachPoint::xdp:
      return "xdp";
    case AttachPoint::tc_ingress:
      return "tc-ingress";
    case AttachPoint::tc_egress:
      return "tc-egress";
  }
  return "?";
}

std::string_view to_string(DataPlaneProgram program) {
  switch (program) {
    case DataPlaneProgram::inside:
      return "portcullis_inside";
    case DataPlaneProgram::outside:
      return "portcullis_outside";
    case DataPlaneProgram::xdp:
      return "portcullis_xdp";
  }
  return "?";
}

std::string_view xdp_mode_name(const Attachment& attachment) {
  return attachment.xdp_mode_flag == XDP_FLAGS_SKB_MODE ? "generic" : "native";
}

std::vector<PlannedAttachment> plan_attachments(policy::Mode mode, const std::vector<std::string>& inside,
                                                const std::vector<std::string>& outside) {
  std::vector<PlannedAttachment> plan;
  if (mode == policy::Mode::gateway) {
    for (const std::string& iface : inside) {
      plan.push_back({iface, AttachPoint::xdp, DataPlaneProgram::xdp});
      plan.push_back({iface, AttachPoint::tc_ingress, DataPlaneProgram::inside});
    }
    for (const std::string& iface : outside)
      plan.push_back({iface, AttachPoint::tc_ingress, DataPlaneProgram::outside});
  } else {
    for (const std::string& iface : inside) {
      plan.push_back({iface, AttachPoint::tc_egress, DataPlaneProgram::inside});
      plan.push_back({iface, AttachPoint::tc_ingress, DataPlaneProgram::outside});
    }
  }
  return plan;
}

Attacher::Attacher(std::vector<uint32_t> our_map_ids) : our_map_ids_(our_map_ids.begin(), our_map_ids.end()) {}

Attacher::Identity Attacher::identify(uint32_t prog_id) const {
  Identity identity;
  const int fd = bpf_prog_get_fd_by_id(prog_id);
  if (fd < 0) return identity;
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &length) == 0) {
    identity.name = info.name;
    std::vector<uint32_t> maps(info.nr_map_ids);
    bpf_prog_info with_maps{};
    with_maps.nr_map_ids = static_cast<uint32_t>(maps.size());
    with_maps.map_ids = reinterpret_cast<uint64_t>(maps.data());
    length = sizeof(with_maps);
    if (!maps.empty() && bpf_obj_get_info_by_fd(fd, &with_maps, &length) == 0) {
      for (uint32_t id : maps) identity.ours = identity.ours || our_map_ids_.contains(id);
    }
  }
  ::close(fd);
  return identity;
}

const Attachment& Attacher::attach(const std::string& iface, AttachPoint point, int prog_fd) {
  Attachment attachment;
  attachment.iface = iface;
  attachment.point = point;
  attachment.prog_fd = prog_fd;
  attachment.prog_id = prog_id_of(prog_fd);
  attachment.ifindex = static_cast<int>(::if_nametoindex(iface.c_str()));
  if (attachment.ifindex == 0) throw std::runtime_error("interface " + iface + ": " + std::strerror(errno));
  attachments_.push_back(point == AttachPoint::xdp ? attach_xdp(std::move(attachment))
                                                   : attach_tc(std::move(attachment)));
  return attachments_.back();
}

Attachment Attacher::attach_xdp(Attachment attachment) {
  const std::string where = attachment.iface + " (xdp)";
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (const int error = bpf_xdp_query(attachment.ifindex, 0, &query); error != 0) {
    throw std::runtime_error(where + ": cannot query XDP: " + error_text(error));
  }
  if (query.prog_id != 0) {
    const Identity present = identify(query.prog_id);
    if (!present.ours || query.attach_mode == XDP_ATTACHED_MULTI || query.attach_mode == XDP_ATTACHED_HW) {
      throw std::runtime_error(where + ": " + describe("XDP program", query.prog_id, present.name) +
                               " is attached already and is not portcullis's (of this pin directory); "
                               "portcullis does not replace it: detach it first (ip link set dev " +
                               attachment.iface + " xdp off) or choose another interface");
    }
    attachment.xdp_mode_flag = query.attach_mode == XDP_ATTACHED_SKB ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    const int old_fd = bpf_prog_get_fd_by_id(query.prog_id);
    LIBBPF_OPTS(bpf_xdp_attach_opts, replace, .old_prog_fd = old_fd);
    const int error = old_fd < 0 ? -errno
                                 : bpf_xdp_attach(attachment.ifindex, attachment.prog_fd,
                                                  XDP_FLAGS_REPLACE | attachment.xdp_mode_flag, &replace);
    if (old_fd >= 0) ::close(old_fd);
    if (error != 0)
      throw std::runtime_error(where + ": cannot replace the previous daemon's program: " + error_text(error));
    attachment.replaced = true;
    return attachment;
  }

  attachment.xdp_mode_flag = XDP_FLAGS_DRV_MODE;
  int error =
      bpf_xdp_attach(attachment.ifindex, attachment.prog_fd, XDP_FLAGS_UPDATE_IF_NOEXIST | XDP_FLAGS_DRV_MODE, nullptr);
  if (error != 0 && error != -EEXIST && error != -EBUSY) {
    attachment.xdp_mode_flag = XDP_FLAGS_SKB_MODE;
    error = bpf_xdp_attach(attachment.ifindex, attachment.prog_fd, XDP_FLAGS_UPDATE_IF_NOEXIST | XDP_FLAGS_SKB_MODE,
                           nullptr);
  }
  if (error == -EEXIST || error == -EBUSY) {
    throw std::runtime_error(where + ": another XDP program was attached meanwhile; portcullis does not replace it");
  }
  if (error != 0) throw std::runtime_error(where + ": cannot attach XDP: " + error_text(error));
  return attachment;
}

Attachment Attacher::attach_tc(Attachment attachment) {
  const TcDirection direction = attachment.point == AttachPoint::tc_egress ? TcDirection::egress : TcDirection::ingress;
  const std::string where = attachment.iface + " (" + std::string(to_string(attachment.point)) + ")";
  bpf_tc_hook hook = tc_hook(attachment.ifindex, attachment.point);
  if (const int error = bpf_tc_hook_create(&hook); error != 0 && error != -EEXIST) {
    throw std::runtime_error(where + ": cannot add the clsact qdisc: " + error_text(error));
  }
  bool previous_daemon = false;
  for (const TcFilter& filter : list_tc_filters(attachment.ifindex, direction)) {
    const Identity present = filter.kind == "bpf" ? identify(filter.bpf_prog_id) : Identity{};
    if (present.ours && filter.handle == kTcHandle && filter.priority == kTcPriority) {
      previous_daemon = true;
      continue;
    }
    std::string message = where + ": ";
    message += filter.kind == "bpf" ? describe("a BPF filter", filter.bpf_prog_id, present.name)
                                    : "a '" + filter.kind + "' filter";
    message += " is attached already (priority " + std::to_string(filter.priority) +
               ") and is not portcullis's (of this pin directory); portcullis does not run beside or replace it: "
               "remove it first (tc filter show dev ";
    message += attachment.iface + (direction == TcDirection::egress ? " egress" : " ingress");
    message += ") or choose another interface";
    throw std::runtime_error(message);
  }
  LIBBPF_OPTS(bpf_tc_opts, options, .prog_fd = attachment.prog_fd, .flags = previous_daemon ? BPF_TC_F_REPLACE : 0u,
              .handle = kTcHandle, .priority = kTcPriority);
  if (const int error = bpf_tc_attach(&hook, &options); error != 0) {
    throw std::runtime_error(where + ": cannot attach the TC program: " + error_text(error));
  }
  attachment.replaced = previous_daemon;
  return attachment;
}

std::string Attacher::detach(const Attachment& attachment) {
  const std::string where = attachment.iface + " (" + std::string(to_string(attachment.point)) + ")";
  if (attachment.point == AttachPoint::xdp) {
    // Only while it is still our program: XDP_FLAGS_REPLACE compares before it detaches.
    LIBBPF_OPTS(bpf_xdp_attach_opts, expected, .old_prog_fd = attachment.prog_fd);
    const int error = bpf_xdp_detach(attachment.ifindex, XDP_FLAGS_REPLACE | attachment.xdp_mode_flag, &expected);
    if (error != 0 && error != -ENODEV && error != -EEXIST)
      return where + ": cannot detach: " + error_text(error) + "\n";
    return {};
  }
  bpf_tc_hook hook = tc_hook(attachment.ifindex, attachment.point);
  LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
  if (bpf_tc_query(&hook, &query) != 0 || query.prog_id != attachment.prog_id) return {};  // gone or not ours
  LIBBPF_OPTS(bpf_tc_opts, ours, .handle = kTcHandle, .priority = kTcPriority);
  if (const int error = bpf_tc_detach(&hook, &ours); error != 0 && error != -ENOENT && error != -ENODEV) {
    return where + ": cannot detach: " + error_text(error) + "\n";
  }
  // The clsact qdisc goes too once nothing is left on it: an empty one is a leftover, whoever added it.
  try {
    if (list_tc_filters(attachment.ifindex, TcDirection::ingress).empty() &&
        list_tc_filters(attachment.ifindex, TcDirection::egress).empty()) {
      hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
      if (const int error = bpf_tc_hook_destroy(&hook); error != 0 && error != -ENOENT && error != -ENODEV) {
        return where + ": cannot remove the clsact qdisc: " + error_text(error) + "\n";
      }
    }
  } catch (const std::runtime_error& e) {
    return where + ": " + e.what() + "\n";
  }
  return {};
}

std::string Attacher::detach_all() {
  std::string problems;
  for (auto it = attachments_.rbegin(); it != attachments_.rend(); ++it) problems += detach(*it);
  attachments_.clear();
  return problems;
}

std::string Attacher::detach_new() {
  std::string problems;
  for (auto it = attachments_.rbegin(); it != attachments_.rend(); ++it) {
    if (!it->replaced) problems += detach(*it);
  }
  attachments_.clear();
  return problems;
}

}  // namespace portcullis::dataplane
