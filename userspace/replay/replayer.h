// `portcullis replay`: runs captures through the data plane's own code and the daemon's decisions, offline and
// unprivileged. Every packet goes through UserspaceDataPath (include/portcullis/datapath.h built for
// userspace); frames the data plane would punt are decided as the daemon decides them (punt/flow_identity.h).
// Each flow's initiator is the side that sent its first packet in the capture: its packets go through the
// inside program, the other side's through the outside one.
//
// Every flow is identified, whether its verdict needed a name or not: the first bytes of the initiator's side
// as a ClientHello, HTTP request or SSH banner (TCP), or QUIC Initials (UDP). Capture timestamps are the
// clock: a pending flow that shows nothing within l7_timeout_ms of capture time is denied as it would be live.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/compiled_policy.h"
#include "replay/capture_writer.h"
#include "replay/replay_data_plane.h"

namespace portcullis::replay {

struct FlowReport {
  std::string capture;
  std::string proto;  // tcp, udp, icmp, icmpv6, or the protocol number
  std::string src;    // the initiator
  std::optional<uint16_t> sport;
  std::string dst;
  std::optional<uint16_t> dport;
  std::optional<uint8_t> icmp_type;
  std::string l7 = "none";  // tls, quic, http, ssh, none
  std::optional<std::string> name;
  std::string verdict;  // allow, deny, pending (the capture ended while the flow waited for its name)
  std::optional<std::string> rule;
  std::string reason;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

struct ReplayStats {
  uint64_t packets = 0;
  uint64_t truncated = 0;           // kept shorter than they were (snap length)
  uint64_t not_ip = 0;              // ARP, LLDP, ...
  uint64_t malformed = 0;           // dropped by the parser (the data plane would drop them too)
  std::vector<std::string> errors;  // damaged captures, one line each
};

class Replayer {
 public:
  // Without a policy every flow is allowed and only identified. The data plane is the userspace build of the
  // data path unless `factory` makes another (make_kernel_data_plane: the BPF programs).
  Replayer(std::shared_ptr<const policy::CompiledPolicy> policy, policy::Mode mode,
           ReplayDataPlaneFactory factory = make_userspace_data_plane);
  ~Replayer();
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;

  // Replays one capture (its flows are its own). Throws std::runtime_error when it cannot be opened; a damaged
  // record ends it, noted in stats().errors.
  void replay(const std::string& path);
  // The same over a capture file already open (closed by the replay); `name` stands for its path.
  void replay(std::FILE* file, const std::string& name);

  // From now on, replay(path) also writes each capture's packets again, unchanged, to `allowed_path` (those
  // the data plane would pass: packets of allowed flows) or `denied_path` (the rest); either may be empty.
  // Throws std::runtime_error when a file cannot be written.
  void split_into(const std::string& allowed_path, const std::string& denied_path);

  const std::vector<FlowReport>& flows() const { return flows_; }
  const ReplayStats& stats() const { return stats_; }

 private:
  class Capture;
  struct Split {
    std::string allowed_path;
    std::string denied_path;
    bool opened = false;  // the files take the first capture's link type
    std::unique_ptr<CaptureWriter> allowed;
    std::unique_ptr<CaptureWriter> denied;
  };
  void split(const std::string& path, const std::vector<bool>& allowed);
  ReplayDataPlane& plane();  // made on first use, for every capture

  std::unique_ptr<Split> split_;
  bool no_policy_;  // every flow allowed, only identified: no rule names a verdict
  std::shared_ptr<const policy::CompiledPolicy> policy_;
  policy::Mode mode_;
  ReplayDataPlaneFactory factory_;
  std::unique_ptr<ReplayDataPlane> plane_;
  std::vector<FlowReport> flows_;
  ReplayStats stats_;
};

}  // namespace portcullis::replay
