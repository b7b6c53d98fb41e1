// What `replay` runs packets through: the data plane's code built for userspace (the default, unprivileged), or
// the BPF programs themselves in the kernel, packet by packet with BPF_PROG_TEST_RUN (`--kernel`, root). Both
// run include/portcullis/datapath.h; a test requires that they agree flow by flow.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "dataplane/policy_tables.h"
#include "portcullis/bound_names.h"
#include "portcullis/flow.h"

namespace portcullis::replay {

struct PlaneOutcome {
  bool passed = false;  // the packet goes on
  bool punted = false;  // the packet was handed to the daemon and held
};

class ReplayDataPlane {
 public:
  virtual ~ReplayDataPlane() = default;
  // Forgets every flow: the next capture starts afresh.
  virtual void reset() = 0;
  // The capture's time of the next packet; also keeps the daemon's heartbeat alive for the data plane.
  virtual void set_clock(uint64_t capture_ns) = 0;
  virtual PlaneOutcome inside(std::span<const uint8_t> frame) = 0;
  virtual PlaneOutcome outside(std::span<const uint8_t> frame) = 0;
  virtual std::optional<pc_flow> flow(const pc_flow_key& key) = 0;
  // Installs the verdict the daemon decided for a pending flow; false when the flow is gone.
  virtual bool set_verdict(const pc_flow_key& key, uint8_t verdict, uint32_t rule_id, uint32_t reason) = 0;
  // What the daemon writes to pc_bound_names (punt::BoundNameTable), `name` null to delete; its expiry on the
  // capture's clock. False when the write failed.
  virtual bool set_bound_name(const pc_bound_key& key, const pc_bound_name* name) = 0;
};

using ReplayDataPlaneFactory = std::function<std::unique_ptr<ReplayDataPlane>(dataplane::PolicyTables tables)>;

// The punt bounds replay holds flows with: `run`'s default per flow; no rate limit, which is an operational
// bound that a capture read at full speed (the kernel's clock) would trip where live traffic does not.
inline constexpr uint32_t kReplayFlowHoldBytes = 64 * 1024;
inline constexpr uint32_t kReplayPuntRate = 1000000000;  // the most pc_punt_bucket_take can count
inline constexpr uint32_t kReplayPuntBurst = 0xffffffff;

std::unique_ptr<ReplayDataPlane> make_userspace_data_plane(dataplane::PolicyTables tables);

}  // namespace portcullis::replay
