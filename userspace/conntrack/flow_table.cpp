#include "conntrack/flow_table.h"

#include <charconv>
#include <cstring>

#include "dataplane/frame_fields.h"
#include "portcullis/classify.h"

namespace portcullis::conntrack {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kIcmp = 1;
constexpr uint8_t kIcmpv6 = 58;
constexpr uint8_t kEchoRequest = 8;
constexpr uint8_t kEchoRequestV6 = 128;
constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;

struct NamedTimeout {
  std::string_view name;
  uint32_t Timeouts::*field;
};
constexpr NamedTimeout kTimeoutNames[] = {
    {"tcp_handshake", &Timeouts::tcp_handshake},
    {"tcp_established", &Timeouts::tcp_established},
    {"tcp_closing", &Timeouts::tcp_closing},
    {"tcp_closed", &Timeouts::tcp_closed},
    {"udp", &Timeouts::udp},
    {"udp_replied", &Timeouts::udp_replied},
    {"icmp", &Timeouts::icmp},
    {"denied", &Timeouts::denied},
};

bool is_icmp(uint8_t proto) {
  return proto == kIcmp || proto == kIcmpv6;
}

}  // namespace

std::string_view to_string(FlowState state) {
  switch (state) {
    case FlowState::pending:
      return "pending";
    case FlowState::handshake:
      return "handshake";
    case FlowState::established:
      return "established";
    case FlowState::closing:
      return "closing";
    case FlowState::closed:
      return "closed";
    case FlowState::one_way:
      return "one-way";
    case FlowState::replied:
      return "replied";
    case FlowState::denied:
      return "denied";
  }
  return "unknown";
}

std::string set_timeout(Timeouts& timeouts, std::string_view assignment) {
  const size_t equals = assignment.find('=');
  if (equals == std::string_view::npos) return "a timeout is NAME=SECONDS, not \"" + std::string(assignment) + "\"";
  const std::string_view name = assignment.substr(0, equals);
  const std::string_view value = assignment.substr(equals + 1);
  uint32_t seconds = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (error != std::errc() || end != value.data() + value.size() || seconds == 0) {
    return "timeout " + std::string(name) + ": \"" + std::string(value) + "\" is not a number of seconds above 0";
  }
  for (const NamedTimeout& named : kTimeoutNames) {
    if (named.name == name) {
      timeouts.*named.field = seconds;
      return {};
    }
  }
  std::string known;
  for (const NamedTimeout& named : kTimeoutNames) known += (known.empty() ? "" : ", ") + std::string(named.name);
  return "no timeout is called " + std::string(name) + " (there are " + known + ")";
}

FlowState state_of(const pc_flow& flow, uint8_t proto) {
  if (flow.verdict == PC_VERDICT_PENDING) return FlowState::pending;
  if (flow.verdict == PC_VERDICT_DENY) return FlowState::denied;
  const uint8_t initiator = flow.initiator & 1;
  const uint8_t responder = initiator ^ 1;
  if (proto == kTcp) {
    const uint8_t all = flow.tcp_flags[0] | flow.tcp_flags[1];
    if ((all & PC_TCP_RST) != 0) return FlowState::closed;
    if ((all & PC_TCP_FIN) != 0) return FlowState::closing;
    // The responder's SYN-ACK and the initiator's ACK; a flow met mid-stream (adopted, or after a timeout)
    // shows acknowledgements both ways without the SYNs.
    const bool responder_synced = (flow.tcp_flags[responder] & PC_TCP_ACK) != 0;
    const bool initiator_acked = (flow.tcp_flags[initiator] & PC_TCP_ACK) != 0;
    return responder_synced && initiator_acked ? FlowState::established : FlowState::handshake;
  }
  return flow.packets[responder] != 0 ? FlowState::replied : FlowState::one_way;
}

bool finished(const pc_flow& flow, uint8_t proto) {
  if (proto != kTcp) return false;
  if (((flow.tcp_flags[0] | flow.tcp_flags[1]) & PC_TCP_RST) != 0) return true;
  return (flow.tcp_flags[0] & PC_TCP_FIN) != 0 && (flow.tcp_flags[1] & PC_TCP_FIN) != 0;
}

uint32_t timeout_seconds(const Timeouts& timeouts, FlowState state, uint8_t proto) {
  switch (state) {
    case FlowState::pending:
      return 0;  // the punt path's to end (l7_timeout_ms)
    case FlowState::denied:
      return timeouts.denied;
    case FlowState::handshake:
      return timeouts.tcp_handshake;
    case FlowState::established:
      return timeouts.tcp_established;
    case FlowState::closing:
      return timeouts.tcp_closing;
    case FlowState::closed:
      return timeouts.tcp_closed;
    case FlowState::one_way:
      return is_icmp(proto) ? timeouts.icmp : timeouts.udp;
    case FlowState::replied:
      return is_icmp(proto) ? timeouts.icmp : (proto == kUdp ? timeouts.udp_replied : timeouts.udp);
  }
  return timeouts.udp;
}

pc_flow_key key_of(const pc_verdict_event& event, uint8_t* initiator) {
  pc_flow_key key{};
  uint8_t direction = 0;
  const uint16_t dport = is_icmp(event.proto) ? event.sport : event.dport;
  pc_flow_key_fill(&key, event.family, event.proto, &event.src, event.sport, &event.dst, dport, &direction);
  if (initiator != nullptr) *initiator = direction;
  return key;
}

pc_verdict_event event_of(const pc_flow_key& key, const pc_flow& flow) {
  pc_verdict_event event{};
  const bool from_lo = (flow.initiator & 1) == PC_FLOW_FROM_LO;
  event.timestamp_ns = flow.first_seen_ns;
  event.src = from_lo ? key.lo_addr : key.hi_addr;
  event.dst = from_lo ? key.hi_addr : key.lo_addr;
  event.sport = from_lo ? key.lo_port : key.hi_port;
  event.dport = from_lo ? key.hi_port : key.lo_port;
  if (is_icmp(key.proto)) event.dport = key.proto == kIcmp ? kEchoRequest : kEchoRequestV6;
  event.family = key.family;
  event.proto = key.proto;
  event.verdict = flow.verdict;
  event.reason = flow.reason;
  event.rule_id = flow.rule_id;
  event.scope = flow.scope;
  event.generation = flow.generation;
  return event;
}

policy::IpAddress TrackedFlow::src() const {
  return dataplane::address_of(event.src, event.family);
}

policy::IpAddress TrackedFlow::dst() const {
  return dataplane::address_of(event.dst, event.family);
}

TrackedFlow& FlowTable::upsert(const pc_verdict_event& event) {
  uint8_t initiator = 0;
  const pc_flow_key key = key_of(event, &initiator);
  TrackedFlow& flow = flows_[key];
  if (flow.key.family == 0 || flow.event.timestamp_ns != event.timestamp_ns) {
    // New, or a new flow on the same addresses and ports: what was known of the old one no longer holds.
    flow = TrackedFlow{};
    flow.key = key;
    flow.data.first_seen_ns = event.timestamp_ns;
    flow.data.last_seen_ns = event.timestamp_ns;
    flow.data.initiator = initiator;
  }
  flow.event = event;
  flow.adopted = false;
  flow.data.verdict = event.verdict;
  flow.data.reason = event.reason;
  flow.data.rule_id = event.rule_id;
  flow.data.scope = event.scope;
  flow.data.generation = event.generation;
  return flow;
}

void FlowTable::on_verdict(const pc_verdict_event& event) {
  upsert(event);
}

void FlowTable::on_decision(const pc_verdict_event& event, const punt::FlowIdentity& identity,
                            std::vector<std::string> bound_names) {
  TrackedFlow& flow = upsert(event);
  flow.identity = identity;
  flow.bound_names = std::move(bound_names);
}

FlowTable::SyncResult FlowTable::sync(std::span<const Entry> entries, uint64_t now_ns) {
  // In place, marking what the data plane still holds: a million flows are synced without a new table.
  SyncResult result;
  const uint32_t sync = ++sync_;
  for (const auto& [key, data] : entries) {
    auto [it, created] = flows_.try_emplace(key);
    TrackedFlow& flow = it->second;
    if (created || flow.data.first_seen_ns != data.first_seen_ns) {
      // Not seen decided, or a newer flow on the same key whose event is still on its way.
      flow = TrackedFlow{};
      flow.key = key;
      flow.event = event_of(key, data);
      flow.adopted = true;
      ++result.adopted;
    }
    flow.synced = sync;
    flow.data = data;
    const uint64_t timeout_ns = uint64_t{timeout_seconds(timeouts_, flow.state(), key.proto)} * kNsPerSecond;
    if (timeout_ns != 0 && now_ns > data.last_seen_ns && now_ns - data.last_seen_ns > timeout_ns) {
      result.expired.push_back(key);
      flows_.erase(it);
    }
  }
  // What is left unmarked was decided, but the data plane holds it no more.
  result.forgotten = std::erase_if(flows_, [sync](const auto& entry) { return entry.second.synced != sync; });
  return result;
}

TrackedFlow* FlowTable::find(const pc_flow_key& key) {
  const auto found = flows_.find(key);
  return found == flows_.end() ? nullptr : &found->second;
}

std::array<size_t, kFlowStates> FlowTable::count_by_state() const {
  std::array<size_t, kFlowStates> counts{};
  for (const auto& [key, flow] : flows_) ++counts[static_cast<size_t>(flow.state())];
  return counts;
}

}  // namespace portcullis::conntrack
