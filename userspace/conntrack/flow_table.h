// The daemon's table of every flow the data plane holds: who opened it to where, what it showed (SNI, Host,
// query), the rule and verdict that decided it, its state and counters. The data plane's flow entries are
// the truth for verdicts and counters; this table adds what only the daemon knows, keeps the two consistent
// (entries the data plane evicted are forgotten, entries it holds that the table lacks are adopted) and ends
// idle flows after timeouts like the kernel's conntrack. Pure: entries in, keys to delete out.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dataplane/flow_key_hash.h"
#include "policy/ip_address.h"
#include "portcullis/flow.h"
#include "portcullis/packet.h"
#include "punt/flow_identity.h"

namespace portcullis::conntrack {

enum class FlowState : uint8_t {
  pending,      // waiting for the daemon to read its name
  handshake,    // TCP: the handshake has not completed
  established,  // TCP: both sides synchronized
  closing,      // TCP: a FIN was seen
  closed,       // TCP: a reset was seen
  one_way,      // UDP, ICMP: nothing came back yet
  replied,      // UDP, ICMP: the other side answered
  denied,
};
inline constexpr size_t kFlowStates = 8;
std::string_view to_string(FlowState state);

// Seconds a flow may stay idle in each state. The defaults are the kernel's conntrack defaults
// (nf_conntrack_tcp_timeout_syn_sent, _established, _fin_wait and _close; nf_conntrack_udp_timeout and
// _stream; nf_conntrack_icmp_timeout). A denied flow is remembered while it keeps trying, then forgotten.
struct Timeouts {
  uint32_t tcp_handshake = 120;
  uint32_t tcp_established = 432000;
  uint32_t tcp_closing = 120;
  uint32_t tcp_closed = 10;
  uint32_t udp = 30;
  uint32_t udp_replied = 120;
  uint32_t icmp = 30;
  uint32_t denied = 30;
};
// Sets one timeout from "NAME=SECONDS" (NAME as the field above). Returns an error message, or empty.
std::string set_timeout(Timeouts& timeouts, std::string_view assignment);

FlowState state_of(const pc_flow& flow, uint8_t proto);
// A TCP connection both ends have closed (a FIN each way) or one has reset: nothing more can pass on it.
bool finished(const pc_flow& flow, uint8_t proto);
uint32_t timeout_seconds(const Timeouts& timeouts, FlowState state, uint8_t proto);

struct TrackedFlow {
  pc_flow_key key{};
  // The flow as its initiator sent it (addresses, ports, ICMP type) and its verdict when it was decided.
  pc_verdict_event event{};
  pc_flow data{};  // the data plane's entry at the last sync: verdict, rule, counters, TCP flags
  // What the flow showed the daemon, when the daemon decided it; absent for flows the data plane decided on
  // addresses and ports alone.
  std::optional<punt::FlowIdentity> identity;
  // A flow that showed no name, decided by the names DNS had bound its destination to: those names then. A
  // flow established while its binding lived survives the binding's expiry, and a reload judges it by them.
  std::vector<std::string> bound_names;
  bool adopted = false;  // found in the data plane without being seen decided (a restart, a lost event)
  uint32_t synced = 0;   // the sync that last found it in the data plane

  FlowState state() const { return state_of(data, key.proto); }
  bool finished() const { return conntrack::finished(data, key.proto); }
  policy::IpAddress src() const;
  policy::IpAddress dst() const;
};

using dataplane::FlowKeyEqual;
using dataplane::FlowKeyHash;

// The key of the flow `event` describes (ICMP echo flows are keyed by their identifier on both sides), and
// which side of it the initiator is.
pc_flow_key key_of(const pc_verdict_event& event, uint8_t* initiator = nullptr);

class FlowTable {
 public:
  using Entry = std::pair<pc_flow_key, pc_flow>;

  explicit FlowTable(Timeouts timeouts = {}) : timeouts_(timeouts) {}
  void set_timeouts(const Timeouts& timeouts) { timeouts_ = timeouts; }

  // A flow the data plane decided (or found pending): its verdict event.
  void on_verdict(const pc_verdict_event& event);
  // A flow the daemon decided from what it showed.
  void on_decision(const pc_verdict_event& event, const punt::FlowIdentity& identity,
                   std::vector<std::string> bound_names);

  struct SyncResult {
    std::vector<pc_flow_key> expired;  // idle past their timeout: the caller deletes them from the data plane
    size_t adopted = 0;
    size_t forgotten = 0;  // gone from the data plane (evicted, or replaced by a new flow's entry)
  };
  // Brings the table in line with `entries`, every entry the data plane holds now, and finds the flows idle
  // past their timeout at `now_ns` (CLOCK_MONOTONIC, the data plane's clock). Expired flows leave the table.
  SyncResult sync(std::span<const Entry> entries, uint64_t now_ns);

  TrackedFlow* find(const pc_flow_key& key);
  size_t size() const { return flows_.size(); }
  std::array<size_t, kFlowStates> count_by_state() const;

  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (const auto& [key, flow] : flows_) visit(flow);
  }
  template <typename Visit>
  void for_each(Visit&& visit) {
    for (auto& [key, flow] : flows_) visit(flow);
  }

 private:
  TrackedFlow& upsert(const pc_verdict_event& event);

  Timeouts timeouts_;
  std::unordered_map<pc_flow_key, TrackedFlow, FlowKeyHash, FlowKeyEqual> flows_;
  uint32_t sync_ = 0;
};

// The event a flow entry stands for, rebuilt from the entry alone (an adopted flow): addresses and ports from
// the key and the initiator's side; ICMP flows are taken as echo requests, the only ICMP that opens a flow.
pc_verdict_event event_of(const pc_flow_key& key, const pc_flow& flow);

}  // namespace portcullis::conntrack
