// Attaches the data plane's programs to interfaces, and takes them off again.
//
// TC programs go on with TCX where the kernel has it (Linux 6.6+: one BPF link per hook, see tcx_links.h), else
// on the clsact qdisc through libbpf's netlink API (bpf_tc_attach, one handle and priority of our own). Whether
// the kernel has TCX is asked once, on the first TC hook. XDP goes on natively (veth supports it), in generic
// mode where the driver does not.
//
// Attachments outlive the process, which is what makes a crash fail closed: netlink ones (XDP, clsact) by
// themselves, TCX links because each is pinned in the pin directory (link_<iface>_<hook>). A program already on
// a hook is ours when it uses one of our (pinned) maps, and a TCX link pinned in our (locked) pin directory is
// ours: that is the previous daemon of the same pin directory, killed without cleaning up, and its programs are
// replaced atomically (XDP_FLAGS_REPLACE, BPF_TC_F_REPLACE, BPF_LINK_UPDATE of the pinned link) so that
// enforcement never gaps. A clsact filter of ours found where TCX is now used is removed once the TCX link is in
// place (TCX runs first, and our verdicts end the hook).
//
// Any other program on a hook we need is never touched: attaching fails, naming the interface and the program.
// TCX would let programs share a hook, but not with this firewall: it must see every packet, and its verdicts
// (TC_ACT_OK, TC_ACT_SHOT, redirects) end the hook, so a program before it could pass or redirect packets it
// never saw, and one after it (or a clsact filter, which runs after TCX) would silently stop seeing the packets
// it passes. So a hook with any foreign TCX program or clsact filter is refused, our link goes first in the
// chain (BPF_F_BEFORE), and the hook is checked again once it is there. A program attached later is beyond
// our control: TCX has no way to forbid it.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "policy/compiled_policy.h"

namespace portcullis::dataplane {

enum class AttachPoint : uint8_t { xdp, tc_ingress, tc_egress };
enum class DataPlaneProgram : uint8_t { inside, outside, reinject, xdp };

std::string_view to_string(AttachPoint point);
std::string_view to_string(DataPlaneProgram program);

struct PlannedAttachment {
  std::string iface;
  AttachPoint point;
  DataPlaneProgram program;
};

// Whether the inside interfaces of a gateway get the XDP early drop, and how. Off by default: on veth, native
// XDP makes the driver hand every packet to XDP one MTU-sized frame at a time instead of passing GSO
// super-packets on, which cut bulk TCP through the gateway to a quarter (bench/gateway/throughput.sh); the TC
// program drops denied flows anyway. On a NIC whose driver runs XDP before GRO it costs nothing.
enum class XdpMode : uint8_t { off, native, generic };

// Gateway mode: every inside interface gets the inside program on TC ingress (and XDP unless `xdp` is off) and
// the reinjection program on TC egress; every outside interface the outside program on TC ingress and the
// reinjection program on TC egress (held DNS answers are released through it). With
// `masquerade` (the gateway NATs its sandboxes) the outside program goes on the inside interfaces' TC egress
// instead, where answers carry the sandboxes' addresses again; it turns reinjected frames round itself. Host
// mode (`inside` are the uplinks, `outside` empty): the inside program on TC egress, the outside program on TC
// ingress.
std::vector<PlannedAttachment> plan_attachments(policy::Mode mode, const std::vector<std::string>& inside,
                                                const std::vector<std::string>& outside, XdpMode xdp,
                                                bool masquerade = false);

// How TC programs go on: `automatic` is TCX where the kernel has it, else clsact; `clsact` forces the fallback
// (for tests of it on kernels with TCX).
enum class TcAttachMode : uint8_t { automatic, clsact };

struct Attachment {
  std::string iface;
  int ifindex = 0;
  AttachPoint point = AttachPoint::xdp;
  int prog_fd = -1;
  uint32_t prog_id = 0;
  uint32_t xdp_mode_flag = 0;  // XDP: XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  bool tcx = false;            // TC: a TCX link (else a clsact filter)
  int link_fd = -1;            // TCX: the link, owned by the Attacher
  std::string link_pin;        // TCX: where the link is pinned
  bool replaced = false;       // a previous daemon's program was there and was replaced
};

// The hook as logs name it: "xdp", "tcx-ingress", "tcx-egress", "tc-ingress" or "tc-egress".
std::string_view hook_name(const Attachment& attachment);
// "native" or "generic" for an XDP attachment.
std::string_view xdp_mode_name(const Attachment& attachment);

class Attacher {
 public:
  // `our_map_ids`: the kernel ids of the pinned maps (BpfObjects::map_ids); `pin_dir`: their directory
  // (BpfObjects::pin_dir), locked by this daemon, where TCX links are pinned too.
  Attacher(std::vector<uint32_t> our_map_ids, std::string pin_dir, TcAttachMode mode = TcAttachMode::automatic,
           XdpMode xdp = XdpMode::native);
  // Closes the TCX links' descriptors; the pins keep the links attached.
  ~Attacher();
  Attacher(const Attacher&) = delete;
  Attacher& operator=(const Attacher&) = delete;

  // Throws std::runtime_error naming the interface when it does not exist, when the hook holds a program that
  // is not ours, or when the kernel refuses.
  const Attachment& attach(const std::string& iface, AttachPoint point, int prog_fd);

  // Takes off every program attach() put on (skipping netlink hooks where another program has replaced ours
  // since), unpins and detaches the TCX links, and removes clsact qdiscs left empty. Returns the problems, one
  // per line; empty on success.
  std::string detach_all();
  // After a failed start: takes off only the attachments that were new. Replaced ones stay (TCX links stay
  // pinned): the previous daemon is gone and they enforce the pinned policy.
  std::string detach_new();
  // Takes off an XDP program of ours that a previous daemon left on `iface` (it ran with XDP, this one does
  // not). Returns the problem, or empty.
  std::string remove_stale_xdp(const std::string& iface);

  const std::vector<Attachment>& attachments() const { return attachments_; }

 private:
  struct Identity {
    std::string name;
    bool ours = false;
  };
  Identity identify(uint32_t prog_id) const;
  bool tcx_available(int ifindex);
  Attachment attach_xdp(Attachment attachment);
  Attachment attach_clsact(Attachment attachment);
  Attachment attach_tcx(Attachment attachment);
  void refuse_foreign_tcx(const Attachment& attachment, const std::string& where, uint32_t ours) const;
  bool check_clsact_filters(const Attachment& attachment, const std::string& where) const;
  std::string detach(Attachment& attachment);

  std::set<uint32_t> our_map_ids_;
  std::string pin_dir_;
  TcAttachMode mode_;
  XdpMode xdp_;
  std::optional<bool> tcx_available_;  // asked once
  std::vector<Attachment> attachments_;
};

}  // namespace portcullis::dataplane
