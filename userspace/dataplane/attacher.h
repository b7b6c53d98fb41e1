// Attaches the data plane's programs to interfaces, and takes them off again.
//
// TC programs go on the clsact qdisc through libbpf's netlink API (bpf_tc_attach, one handle and priority of
// our own), not TCX: libbpf 1.1 here has no TCX attach and the system's UAPI headers predate it. XDP goes on
// natively (veth supports it), in generic mode where the driver does not.
//
// Netlink attachments outlive the process, which is what makes a crash fail closed. A program already on a
// hook is ours when it uses one of our (pinned) maps: that is the previous daemon of the same pin directory,
// killed without cleaning up, and its programs are replaced atomically (BPF_TC_F_REPLACE, XDP_FLAGS_REPLACE)
// so that enforcement never gaps. Any other program on a hook we need is never touched: attaching fails,
// naming the interface.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "policy/compiled_policy.h"

namespace portcullis::dataplane {

enum class AttachPoint : uint8_t { xdp, tc_ingress, tc_egress };
enum class DataPlaneProgram : uint8_t { inside, outside, xdp };

std::string_view to_string(AttachPoint point);
std::string_view to_string(DataPlaneProgram program);

struct PlannedAttachment {
  std::string iface;
  AttachPoint point;
  DataPlaneProgram program;
};

// Gateway mode: every inside interface gets XDP (early drop) and the inside program on TC ingress; every
// outside interface the outside program on TC ingress. Host mode (`inside` are the uplinks, `outside` empty):
// the inside program on TC egress and the outside program on TC ingress.
std::vector<PlannedAttachment> plan_attachments(policy::Mode mode, const std::vector<std::string>& inside,
                                                const std::vector<std::string>& outside);

struct Attachment {
  std::string iface;
  int ifindex = 0;
  AttachPoint point = AttachPoint::xdp;
  int prog_fd = -1;
  uint32_t prog_id = 0;
  uint32_t xdp_mode_flag = 0;  // XDP: XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  bool replaced = false;       // a previous daemon's program was there and was replaced
};

// "native" or "generic" for an XDP attachment.
std::string_view xdp_mode_name(const Attachment& attachment);

class Attacher {
 public:
  // `our_map_ids`: the kernel ids of the pinned maps (BpfObjects::map_ids).
  explicit Attacher(std::vector<uint32_t> our_map_ids);

  // Throws std::runtime_error naming the interface when it does not exist, when the hook holds a program that
  // is not ours, or when the kernel refuses.
  const Attachment& attach(const std::string& iface, AttachPoint point, int prog_fd);

  // Takes off every program attach() put on (skipping hooks where another program has replaced ours since)
  // and removes clsact qdiscs left empty. Returns the problems, one per line; empty on success.
  std::string detach_all();
  // After a failed start: takes off only the attachments that were new. Replaced ones stay: the previous
  // daemon is gone and they enforce the pinned policy.
  std::string detach_new();

  const std::vector<Attachment>& attachments() const { return attachments_; }

 private:
  struct Identity {
    std::string name;
    bool ours = false;
  };
  Identity identify(uint32_t prog_id) const;
  Attachment attach_xdp(Attachment attachment);
  Attachment attach_tc(Attachment attachment);
  std::string detach(const Attachment& attachment);

  std::set<uint32_t> our_map_ids_;
  std::vector<Attachment> attachments_;
};

}  // namespace portcullis::dataplane
