// Sends held frames back into the data path (include/portcullis/punt.h) with AF_PACKET sockets, one pair
// per interface, opened on first use:
//   - release: after an allow. Gateway: sent on the inside interface with PC_REINJECT_MARK, which
//     portcullis_reinject turns into that interface's ingress and portcullis_inside lets pass. Host: sent on
//     the uplink with PACKET_QDISC_BYPASS, which skips TC egress, so the frame leaves as the stack sent it.
//   - reclassify: after a deny, the first held frame meets the deny in portcullis_inside, which answers the
//     client with its reject. Gateway: PC_RECLASSIFY_MARK; host: a plain send through TC egress.
//   - pass_answer: a held DNS answer on to its client. Host: up the local stack (PC_DELIVER_MARK). Gateway:
//     into the outside interface's ingress (PC_REINJECT_MARK, turned round by portcullis_reinject there), to
//     be forwarded; taken at an inside interface's egress (masquerading), out of it with PACKET_QDISC_BYPASS.
// Frames go with a virtio-net header (frame_offloads.h), so checksum and segmentation offloads complete as
// they would have. Root (CAP_NET_RAW) only.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>

#include "policy/compiled_policy.h"

namespace portcullis::punt {

class Reinjector {
 public:
  explicit Reinjector(policy::Mode mode) : mode_(mode) {}
  ~Reinjector();
  Reinjector(const Reinjector&) = delete;
  Reinjector& operator=(const Reinjector&) = delete;

  // Each returns an empty string on success, else what failed. `frame` is modified (its L4 checksum field
  // gets the pseudo-header sum the offload completes).
  std::string release(uint32_t ifindex, std::span<uint8_t> frame, uint16_t gso_size);
  std::string reclassify(uint32_t ifindex, std::span<uint8_t> frame, uint16_t gso_size);
  // A frame the daemon made for the client (a synthesized DNS answer), back where `ifindex` faces the client:
  // gateway, out of the inside interface; host, up the local stack (PC_DELIVER_MARK).
  std::string deliver(uint32_t ifindex, std::span<uint8_t> frame);
  // `taken_at_egress`: the data plane took the answer leaving `ifindex` (PC_PUNT_ANSWER_EGRESS).
  std::string pass_answer(uint32_t ifindex, std::span<uint8_t> frame, uint16_t gso_size, bool taken_at_egress);

 private:
  enum class Purpose : uint8_t { release, reclassify, deliver, bypass };
  std::string send(uint32_t ifindex, Purpose purpose, std::span<uint8_t> frame, uint16_t gso_size);
  int socket_for(uint32_t ifindex, Purpose purpose, std::string& error);

  policy::Mode mode_;
  std::map<std::pair<uint32_t, Purpose>, int> sockets_;
};

}  // namespace portcullis::punt
