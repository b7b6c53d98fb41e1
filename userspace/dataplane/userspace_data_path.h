// The per-packet data path of include/portcullis/datapath.h, built for userspace: the very code the TC
// programs run, over tables of its own instead of BPF maps ("one classifier, two builds"). For `replay`
// and for tests that need no kernel.
//
// State, as maps.h holds it in the kernel:
//   - flows: an LRU table of `flow_capacity` entries keyed by pc_flow_key (like the kernel's LRU hash, a
//     full table evicts its least recently used flow; a lookup counts as a use);
//   - fragments: an LRU table of first fragments' verdicts, keyed by pc_frag_key;
//   - the policy: a PolicyTables, looked up with the same longest-prefix rules as the LPM tries;
//   - counters: one per drop reason and counter slot (PC_COUNTER_MAX), summed (not per CPU);
//   - verdict events: every event the data path emits, in order (no ring buffer, none lost);
//   - addresses bound to names deny rules name (bound_names.h), as the daemon writes them;
//   - a clock set by the caller, so flow times and events are deterministic.
//
// Rejects are not built: a packet the kernel would answer with a RST or an ICMP error comes back as
// PC_REJECT, and PC_COUNTER_REJECT_SENT is not counted.
//
// Not thread-safe: one instance runs one packet at a time. Instances on different threads are
// independent (the shared C code reaches its instance through a thread_local pointer set for each packet).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dataplane/policy_tables.h"
#include "portcullis/bound_names.h"
#include "portcullis/flow.h"
#include "portcullis/punt.h"

namespace portcullis::dataplane {

// What the data path did with one packet: pc_outcome of datapath.h (which needs the state functions
// declared before it, so it stays out of this header), with parse failures as drops.
// The actions are datapath.h's enum pc_action_kind (the .cpp checks they agree).
inline constexpr uint8_t kActionPass = 0;        // PC_PASS
inline constexpr uint8_t kActionDrop = 1;        // PC_DROP
inline constexpr uint8_t kActionReject = 2;      // PC_REJECT: the kernel answers with a RST or an ICMP error
inline constexpr uint8_t kActionPunt = 3;        // PC_PUNT: the frame goes to the daemon and is held
inline constexpr uint8_t kActionHoldAnswer = 4;  // PC_HOLD_ANSWER: a DNS answer the daemon reads, then sends on

struct PacketOutcome {
  uint8_t action = kActionPass;
  uint32_t reason = 0;  // enum pc_drop_reason when the packet does not pass

  friend bool operator==(const PacketOutcome&, const PacketOutcome&) = default;
};

class UserspaceDataPath {
 public:
  static constexpr size_t kDefaultFlowCapacity = 262144;     // PC_FLOW_TABLE_SIZE
  static constexpr size_t kDefaultFragmentCapacity = 16384;  // PC_FRAG_TABLE_SIZE

  explicit UserspaceDataPath(PolicyTables tables, size_t flow_capacity = kDefaultFlowCapacity,
                             size_t fragment_capacity = kDefaultFragmentCapacity);
  ~UserspaceDataPath();
  UserspaceDataPath(UserspaceDataPath&&) noexcept;
  UserspaceDataPath& operator=(UserspaceDataPath&&) noexcept;

  // A reload: new tables (with a higher config.generation) replace the policy; flows, fragments,
  // counters and events stay, and refused flows are decided again on their next packet.
  void load(PolicyTables tables);
  const PolicyTables& tables() const;

  // One Ethernet frame through portcullis_inside (leaving the protected side) or portcullis_outside.
  PacketOutcome inside(std::span<const uint8_t> frame);
  PacketOutcome outside(std::span<const uint8_t> frame);

  // The flow the key names, or nullptr. Does not count as a use for the LRU.
  const pc_flow* flow(const pc_flow_key& key) const;
  // What the daemon does to a pending flow it decided: installs its verdict. False when the flow is gone.
  bool set_verdict(const pc_flow_key& key, uint8_t verdict, uint32_t rule_id, uint32_t reason);
  size_t flow_count() const;
  size_t fragment_count() const;

  const std::vector<uint64_t>& counters() const;  // PC_COUNTER_MAX slots
  uint64_t counter(uint32_t slot) const;
  const std::vector<pc_verdict_event>& events() const;
  std::vector<pc_verdict_event> take_events();  // the events so far, and forgets them

  // The punt settings the daemon writes (include/portcullis/punt.h). Until they are set there is no daemon,
  // and pending flows are denied as no-daemon, as in the kernel.
  void set_punt_config(const pc_punt_config& config);

  // What the daemon writes to pc_bound_names: `name` null deletes the entry.
  void set_bound_name(const pc_bound_key& key, const pc_bound_name* name);
  size_t bound_name_count() const;

  uint64_t now_ns() const;
  void set_now_ns(uint64_t now);
  void advance_ns(uint64_t delta);

  struct Impl;  // also what the pc_state_* functions of the shared code work on

 private:
  PacketOutcome run(std::span<const uint8_t> frame, bool from_inside);

  std::unique_ptr<Impl> impl_;
};

}  // namespace portcullis::dataplane
