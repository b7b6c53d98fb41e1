#include "dataplane/attacher.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "dataplane/tc_filters.h"
#include "dataplane/tcx_links.h"

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

TcDirection direction_of(AttachPoint point) {
  return point == AttachPoint::tc_egress ? TcDirection::egress : TcDirection::ingress;
}

std::string where_of(const Attachment& attachment) {
  return attachment.iface + " (" + std::string(hook_name(attachment)) + ")";
}

// The clsact qdisc goes once nothing is left on it: an empty one is a leftover, whoever added it.
std::string remove_clsact_if_empty(int ifindex, const std::string& where) {
  try {
    if (list_tc_filters(ifindex, TcDirection::ingress).empty() &&
        list_tc_filters(ifindex, TcDirection::egress).empty()) {
      bpf_tc_hook hook = tc_hook(ifindex, AttachPoint::tc_ingress);
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

// Takes a TCX link off: the pin first (so no later daemon adopts it), then the link itself, which detaches
// even if some other process holds a descriptor of it.
std::string release_link(int& link_fd, const std::string& pin, bool detach, const std::string& where) {
  std::string problems;
  if (!pin.empty() && ::unlink(pin.c_str()) != 0 && errno != ENOENT) {
    problems += where + ": cannot unpin " + pin + ": " + std::strerror(errno) + "\n";
  }
  if (link_fd >= 0) {
    if (detach) {
      if (const int error = bpf_link_detach(link_fd); error != 0 && error != -ENOLINK && error != -ENODEV) {
        problems += where + ": cannot detach the TCX link: " + error_text(error) + "\n";
      }
    }
    ::close(link_fd);
    link_fd = -1;
  }
  return problems;
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
    case DataPlaneProgram::reinject:
      return "portcullis_reinject";
    case DataPlaneProgram::xdp:
      return "portcullis_xdp";
  }
  return "?";
}

std::string_view hook_name(const Attachment& attachment) {
  switch (attachment.point) {
    case AttachPoint::xdp:
      return "xdp";
    case AttachPoint::tc_ingress:
      return attachment.tcx ? "tcx-ingress" : "tc-ingress";
    case AttachPoint::tc_egress:
      return attachment.tcx ? "tcx-egress" : "tc-egress";
  }
  return "?";
}

std::string_view xdp_mode_name(const Attachment& attachment) {
  return attachment.xdp_mode_flag == XDP_FLAGS_SKB_MODE ? "generic" : "native";
}

std::vector<PlannedAttachment> plan_attachments(policy::Mode mode, const std::vector<std::string>& inside,
                                                const std::vector<std::string>& outside, XdpMode xdp, bool masquerade) {
  std::vector<PlannedAttachment> plan;
  if (mode == policy::Mode::gateway) {
    for (const std::string& iface : inside) {
      if (xdp != XdpMode::off) plan.push_back({iface, AttachPoint::xdp, DataPlaneProgram::xdp});
      plan.push_back({iface, AttachPoint::tc_ingress, DataPlaneProgram::inside});
      // Behind NAT the answers carry the sandboxes' addresses only once they are on their way in.
      plan.push_back(
          {iface, AttachPoint::tc_egress, masquerade ? DataPlaneProgram::outside : DataPlaneProgram::reinject});
    }
    if (masquerade) return plan;
    for (const std::string& iface : outside) {
      plan.push_back({iface, AttachPoint::tc_ingress, DataPlaneProgram::outside});
      // Held DNS answers are released into the outside interface's ingress, to be forwarded.
      plan.push_back({iface, AttachPoint::tc_egress, DataPlaneProgram::reinject});
    }
  } else {
    for (const std::string& iface : inside) {
      plan.push_back({iface, AttachPoint::tc_egress, DataPlaneProgram::inside});
      plan.push_back({iface, AttachPoint::tc_ingress, DataPlaneProgram::outside});
    }
  }
  return plan;
}

Attacher::Attacher(std::vector<uint32_t> our_map_ids, std::string pin_dir, TcAttachMode mode, XdpMode xdp)
    : our_map_ids_(our_map_ids.begin(), our_map_ids.end()), pin_dir_(std::move(pin_dir)), mode_(mode), xdp_(xdp) {}

std::string Attacher::remove_stale_xdp(const std::string& iface) {
  const int ifindex = static_cast<int>(::if_nametoindex(iface.c_str()));
  LIBBPF_OPTS(bpf_xdp_query_opts, query);
  if (ifindex == 0 || bpf_xdp_query(ifindex, 0, &query) != 0 || query.prog_id == 0) return {};
  if (!identify(query.prog_id).ours) return {};  // not ours: left alone, as everywhere
  const uint32_t flag = query.attach_mode == XDP_ATTACHED_SKB ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  LIBBPF_OPTS(bpf_xdp_attach_opts, expected, .old_prog_fd = bpf_prog_get_fd_by_id(query.prog_id));
  const int error = bpf_xdp_detach(ifindex, XDP_FLAGS_REPLACE | flag, &expected);
  if (expected.old_prog_fd >= 0) ::close(expected.old_prog_fd);
  return error == 0 ? std::string()
                    : iface + " (xdp): cannot take off the previous daemon's program: " + error_text(error);
}

Attacher::~Attacher() {
  for (Attachment& attachment : attachments_) {
    if (attachment.link_fd >= 0) ::close(attachment.link_fd);
  }
}

bool Attacher::tcx_available(int ifindex) {
  if (!tcx_available_) tcx_available_ = tcx_supported(ifindex);
  return *tcx_available_;
}

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
  if (point == AttachPoint::xdp) {
    attachments_.push_back(attach_xdp(std::move(attachment)));
  } else if (mode_ == TcAttachMode::automatic && tcx_available(attachment.ifindex)) {
    attachments_.push_back(attach_tcx(std::move(attachment)));
  } else {
    attachments_.push_back(attach_clsact(std::move(attachment)));
  }
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

  attachment.xdp_mode_flag = xdp_ == XdpMode::generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  int error = bpf_xdp_attach(attachment.ifindex, attachment.prog_fd,
                             XDP_FLAGS_UPDATE_IF_NOEXIST | attachment.xdp_mode_flag, nullptr);
  if (error != 0 && error != -EEXIST && error != -EBUSY && attachment.xdp_mode_flag == XDP_FLAGS_DRV_MODE) {
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

// Every filter on the hook's clsact side must be ours (the previous daemon's, same handle and priority); any
// other one fails the attachment. Returns whether ours is there.
bool Attacher::check_clsact_filters(const Attachment& attachment, const std::string& where) const {
  const TcDirection direction = direction_of(attachment.point);
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
  return previous_daemon;
}

// Every program on the hook's TCX chain but `ours` (the program of our pinned link, 0 if none) fails the
// attachment.
void Attacher::refuse_foreign_tcx(const Attachment& attachment, const std::string& where, uint32_t ours) const {
  for (const uint32_t id : list_tcx_programs(attachment.ifindex, direction_of(attachment.point))) {
    if (id == ours) continue;
    const Identity present = identify(id);
    throw std::runtime_error(
        where + ": " + describe("a TCX program", id, present.name) +
        " is attached already and is not portcullis's (of this pin directory); portcullis does not run beside "
        "it (its verdicts end the hook, so one of them would not see every packet): detach it first or choose "
        "another interface");
  }
}

Attachment Attacher::attach_clsact(Attachment attachment) {
  const std::string where = where_of(attachment);
  // TCX programs run before clsact filters: on a kernel with TCX, one there could pass packets around ours.
  if (tcx_available(attachment.ifindex)) refuse_foreign_tcx(attachment, where, 0);
  bpf_tc_hook hook = tc_hook(attachment.ifindex, attachment.point);
  if (const int error = bpf_tc_hook_create(&hook); error != 0 && error != -EEXIST) {
    throw std::runtime_error(where + ": cannot add the clsact qdisc: " + error_text(error));
  }
  const bool previous_daemon = check_clsact_filters(attachment, where);
  LIBBPF_OPTS(bpf_tc_opts, options, .prog_fd = attachment.prog_fd, .flags = previous_daemon ? BPF_TC_F_REPLACE : 0u,
              .handle = kTcHandle, .priority = kTcPriority);
  if (const int error = bpf_tc_attach(&hook, &options); error != 0) {
    throw std::runtime_error(where + ": cannot attach the TC program: " + error_text(error));
  }
  attachment.replaced = previous_daemon;
  return attachment;
}

Attachment Attacher::attach_tcx(Attachment attachment) {
  attachment.tcx = true;
  const TcDirection direction = direction_of(attachment.point);
  const std::string where = where_of(attachment);
  const std::string pin = pin_dir_ + "/link_" + attachment.iface + "_" + std::string(hook_name(attachment));

  // The previous daemon's link, pinned where this one would be.
  int link_fd = -1;
  uint32_t previous_prog_id = 0;
  std::error_code ignored;
  if (std::filesystem::exists(pin, ignored)) {
    link_fd = bpf_obj_get(pin.c_str());
    if (link_fd < 0)
      throw std::runtime_error(where + ": cannot open the pinned link " + pin + ": " + error_text(errno));
    const std::optional<LinkInfo> info = link_info(link_fd);
    if (!info || info->type != kBpfLinkTypeTcx || info->attach_type != tcx_attach_type(direction) ||
        (info->ifindex != 0 && info->ifindex != static_cast<uint32_t>(attachment.ifindex))) {
      ::close(link_fd);
      throw std::runtime_error(where + ": " + pin + " is not the TCX link of this hook (is the interface another " +
                               "one by the same name now?); remove it or choose another pin directory");
    }
    if (info->ifindex == 0) {
      // Its interface is gone, and it with it: nothing to adopt.
      if (std::string problem = release_link(link_fd, pin, false, where); !problem.empty()) {
        problem.pop_back();
        throw std::runtime_error(problem);
      }
    } else {
      previous_prog_id = info->prog_id;
    }
  }

  bool previous_clsact = false;
  try {
    refuse_foreign_tcx(attachment, where, previous_prog_id);
    previous_clsact = check_clsact_filters(attachment, where);
  } catch (const std::runtime_error&) {
    if (link_fd >= 0) ::close(link_fd);
    throw;
  }

  if (link_fd >= 0) {
    // Atomic: the hook runs the old program or the new one, never neither. BPF_F_REPLACE makes it fail if
    // the link's program changed since it was read.
    const int old_fd = bpf_prog_get_fd_by_id(previous_prog_id);
    LIBBPF_OPTS(bpf_link_update_opts, update, .flags = BPF_F_REPLACE, .old_prog_fd = static_cast<uint32_t>(old_fd));
    const int error = old_fd < 0 ? -errno : bpf_link_update(link_fd, attachment.prog_fd, &update);
    if (old_fd >= 0) ::close(old_fd);
    if (error != 0) {
      ::close(link_fd);
      throw std::runtime_error(where + ": cannot replace the previous daemon's program: " + error_text(error));
    }
    attachment.replaced = true;
  } else {
    link_fd = create_tcx_link(attachment.prog_fd, attachment.ifindex, direction);
    if (link_fd < 0) throw std::runtime_error(where + ": cannot attach the TCX program: " + error_text(link_fd));
    if (bpf_obj_pin(link_fd, pin.c_str()) != 0) {
      const int error = errno;
      release_link(link_fd, {}, true, where);
      throw std::runtime_error(where + ": cannot pin the TCX link at " + pin + ": " + error_text(error));
    }
  }
  attachment.link_fd = link_fd;
  attachment.link_pin = pin;
  const auto fail = [&](const std::string& problem) {
    // A new link goes again; an adopted one stays, enforcing the pinned policy with the new program.
    if (attachment.replaced) {
      ::close(attachment.link_fd);
    } else {
      release_link(attachment.link_fd, attachment.link_pin, true, where);
    }
    throw std::runtime_error(problem);
  };

  // A clsact filter of ours (from a daemon that did not use TCX) sees nothing behind the TCX link any more,
  // and must not come back into force once the link goes.
  if (previous_clsact) {
    bpf_tc_hook hook = tc_hook(attachment.ifindex, attachment.point);
    LIBBPF_OPTS(bpf_tc_opts, ours, .handle = kTcHandle, .priority = kTcPriority);
    if (const int error = bpf_tc_detach(&hook, &ours); error != 0 && error != -ENOENT) {
      fail(where + ": cannot remove the previous daemon's clsact filter: " + error_text(error));
    }
    if (std::string problem = remove_clsact_if_empty(attachment.ifindex, where); !problem.empty()) {
      problem.pop_back();
      fail(problem);
    }
    attachment.replaced = true;
  }

  // Alone on the hook, or a program came in between the check and the attachment.
  std::vector<uint32_t> present;
  try {
    present = list_tcx_programs(attachment.ifindex, direction);
  } catch (const std::runtime_error& e) {
    fail(where + ": " + e.what());
  }
  if (present.size() != 1 || present.front() != attachment.prog_id) {
    fail(where + ": another TCX program was attached meanwhile; portcullis does not run beside it");
  }
  return attachment;
}

std::string Attacher::detach(Attachment& attachment) {
  const std::string where = where_of(attachment);
  if (attachment.point == AttachPoint::xdp) {
    // Only while it is still our program: XDP_FLAGS_REPLACE compares before it detaches.
    LIBBPF_OPTS(bpf_xdp_attach_opts, expected, .old_prog_fd = attachment.prog_fd);
    const int error = bpf_xdp_detach(attachment.ifindex, XDP_FLAGS_REPLACE | attachment.xdp_mode_flag, &expected);
    if (error != 0 && error != -ENODEV && error != -EEXIST)
      return where + ": cannot detach: " + error_text(error) + "\n";
    return {};
  }
  if (attachment.tcx) return release_link(attachment.link_fd, attachment.link_pin, true, where);
  bpf_tc_hook hook = tc_hook(attachment.ifindex, attachment.point);
  LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
  if (bpf_tc_query(&hook, &query) != 0 || query.prog_id != attachment.prog_id) return {};  // gone or not ours
  LIBBPF_OPTS(bpf_tc_opts, ours, .handle = kTcHandle, .priority = kTcPriority);
  if (const int error = bpf_tc_detach(&hook, &ours); error != 0 && error != -ENOENT && error != -ENODEV) {
    return where + ": cannot detach: " + error_text(error) + "\n";
  }
  return remove_clsact_if_empty(attachment.ifindex, where);
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
    if (!it->replaced) {
      problems += detach(*it);
    } else if (it->link_fd >= 0) {
      ::close(it->link_fd);  // the pin keeps it
      it->link_fd = -1;
    }
  }
  attachments_.clear();
  return problems;
}

}  // namespace portcullis::dataplane
