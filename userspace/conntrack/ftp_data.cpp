#include "conntrack/ftp_data.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <variant>

#include "dataplane/frame_fields.h"
#include "punt/monotonic_clock.h"

namespace portcullis::conntrack {
namespace {

using dataplane::family_of;
using dataplane::pc_addr_of;

constexpr uint8_t kTcp = 6;
constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;
constexpr size_t kMaxErrors = 16;
constexpr uint64_t kDestroyedGraceNs = 5 * kNsPerSecond;

template <typename Key>
std::vector<uint8_t> bytes_of(const Key& key) {
  const auto* first = reinterpret_cast<const uint8_t*>(&key);
  return {first, first + sizeof(key)};
}

bool allowed(uint8_t verdict) {
  return verdict == PC_VERDICT_ALLOW || verdict == PC_VERDICT_DRAINING;
}

}  // namespace

nft::TableSpec ftp_table_spec(const policy::CompiledPolicy& policy, policy::Mode mode,
                              const std::optional<std::string>& masquerade, std::vector<size_t>* rule_of_entry) {
  nft::TableSpec spec;
  spec.hook = mode == policy::Mode::gateway ? nft::TableSpec::Hook::prerouting : nft::TableSpec::Hook::output;
  if (masquerade && mode == policy::Mode::gateway) {
    spec.masquerade_iface = *masquerade;
    for (const policy::Group& group : policy.policy().groups) {
      spec.masquerade_sources.insert(spec.masquerade_sources.end(), group.sources.begin(), group.sources.end());
    }
  }
  if (rule_of_entry != nullptr) rule_of_entry->clear();
  const std::vector<policy::Rule>& rules = policy.rules();
  for (size_t index = 0; index < rules.size(); ++index) {
    const policy::Rule& rule = rules[index];
    if (rule.proto != policy::RuleProto::ftp || rule.action != policy::Action::allow) continue;
    nft::FtpRule entry;
    entry.name = rule.name;
    for (const policy::PortRange& range : rule.ports) entry.ports.push_back({range.lo, range.hi});
    for (const policy::Destination& destination : rule.destinations) {
      if (const auto* cidr = std::get_if<policy::Cidr>(&destination)) {
        entry.destinations.push_back(*cidr);
      } else {
        entry.by_name = true;
      }
    }
    if (rule.group) entry.sources = policy.policy().groups[*rule.group].sources;
    spec.ftp_rules.push_back(std::move(entry));
    if (rule_of_entry != nullptr) rule_of_entry->push_back(index);
  }
  return spec;
}

pc_expect_key expect_key_of(const ConntrackTuple& expected) {
  pc_expect_key key{};
  key.src = pc_addr_of(expected.src);
  key.dst = pc_addr_of(expected.dst);
  key.dport = expected.dport;
  key.family = family_of(expected.src);
  key.proto = expected.proto;
  return key;
}

pc_flow_key flow_key_of(const ConntrackTuple& tuple) {
  pc_flow_key key{};
  const pc_addr src = pc_addr_of(tuple.src);
  const pc_addr dst = pc_addr_of(tuple.dst);
  uint8_t direction = 0;
  pc_flow_key_fill(&key, family_of(tuple.src), tuple.proto, &src, tuple.sport, &dst, tuple.dport, &direction);
  return key;
}

FtpDataConnections::FtpDataConnections(int expects_fd, int peers_fd, int flows_fd, policy::Mode mode,
                                       std::optional<std::string> masquerade)
    : expects_fd_(expects_fd),
      peers_fd_(peers_fd),
      flows_fd_(flows_fd),
      mode_(mode),
      masquerade_(std::move(masquerade)),
      table_(std::make_unique<nft::FtpTable>()) {}

std::string FtpDataConnections::set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, uint32_t generation) {
  std::vector<size_t> rule_of_entry;
  const nft::TableSpec spec = ftp_table_spec(*policy, mode_, masquerade_, &rule_of_entry);
  // No ftp rule and no NAT, no table: a ct helper object turns conntrack on for the whole namespace, which
  // costs every flow's throughput for nothing.
  const bool needed = !spec.ftp_rules.empty() || spec.masquerade_iface.has_value();
  if (needed) {
    if (std::string problem = table_->apply(spec); !problem.empty()) return problem;
  } else if (table_exists()) {
    // A table of an earlier policy (or daemon) goes; with none, nftables is not asked for anything, so a
    // kernel without it runs policies without ftp rules.
    if (std::string problem = table_->remove(); !problem.empty()) return problem;
  }
  // Subscribed once a policy has ftp rules: the expectations already there are reported at once, and mirrored
  // when their control connection is allowed.
  if (!listener_ && !spec.ftp_rules.empty()) {
    try {
      listener_ = std::make_unique<ExpectationListener>(
          [this](ExpectationListener::Event event, const Expectation& expectation) {
            on_expectation(event, expectation);
          });
    } catch (const std::exception& e) {
      return std::string("cannot follow FTP data connections: ") + e.what();
    }
  }
  policy_ = std::move(policy);
  generation_ = generation;
  rule_of_entry_ = std::move(rule_of_entry);
  return {};
}

bool FtpDataConnections::table_exists() {
  try {
    return table_->exists();
  } catch (const std::exception&) {
    return false;  // nftables cannot be asked: there is no table of ours either
  }
}

void FtpDataConnections::on_readable() {
  if (!listener_) return;
  try {
    listener_->on_readable();
  } catch (const std::exception& e) {
    error(e.what());
  }
  stats_.lost_events = listener_->lost();
}

bool is_ftp_allow_rule(const policy::CompiledPolicy& policy, uint32_t rule_id) {
  if (rule_id >= policy.rules().size()) return false;
  const policy::Rule& rule = policy.rules()[rule_id];
  return rule.proto == policy::RuleProto::ftp && rule.action == policy::Action::allow;
}

bool FtpDataConnections::is_ftp_rule(uint32_t rule_id) const {
  return policy_ && is_ftp_allow_rule(*policy_, rule_id);
}

std::optional<pc_flow> FtpDataConnections::allowed_control(const ConntrackTuple& master) const {
  const pc_flow_key key = flow_key_of(master);
  pc_flow flow{};
  if (bpf_map_lookup_elem(flows_fd_, &key, &flow) != 0 || !allowed(flow.verdict)) return std::nullopt;
  // A flow decided under an older policy is judged by the reload that replaced it (revocation), which
  // stamps it with the new generation if it stays.
  if (flow.generation == generation_ && !is_ftp_rule(flow.rule_id)) return std::nullopt;
  return flow;
}

// Where the data plane meets the connection `expectation` announces. Behind the gateway's NAT an active-mode
// data connection is expected to the gateway's outside address, and the helper's NAT half sends it on to the
// client on the same port: the data plane, on the inside, sees it going to the client.
ConntrackTuple seen_by_data_plane(const Expectation& expectation) {
  ConntrackTuple expected = expectation.expected;
  const bool from_server = expected.src == expectation.master.dst;
  if (from_server && !(expected.dst == expectation.master.src)) expected.dst = expectation.master.src;
  return expected;
}

void FtpDataConnections::on_expectation(ExpectationListener::Event event, const Expectation& expectation) {
  const pc_expect_key key = expect_key_of(seen_by_data_plane(expectation));
  const std::vector<uint8_t> id = bytes_of(key);
  const uint64_t now = punt::monotonic_ns();
  if (event == ExpectationListener::Event::destroyed) {
    // The copy stays a few seconds: where the kernel's conntrack meets a data connection before the data plane
    // does (host mode's output, a masquerading gateway's prerouting), the connection's SYN consumed the
    // expectation on its way to the data plane, and its retransmission must still find the copy.
    const auto found = mirrored_.find(id);
    if (found == mirrored_.end() || !(found->second.master == expectation.master)) return;
    found->second.destroyed_ns = now;
    return;
  }
  if (!policy_ || expectation.expected.proto != kTcp) return;
  const std::optional<pc_flow> control = allowed_control(expectation.master);
  if (!control) {
    ++stats_.refused;
    return;
  }
  pc_expect value{};
  value.expires_ns = now + uint64_t{expectation.timeout_s} * kNsPerSecond;
  value.master = flow_key_of(expectation.master);
  value.rule_id = control->rule_id;
  value.scope = control->scope;
  if (bpf_map_update_elem(expects_fd_, &key, &value, BPF_ANY) != 0) {
    error("cannot mirror the expectation of " + expectation.master.to_string() + ": " + std::strerror(errno));
    return;
  }
  mirrored_[id] = Mirrored{expectation.master, 0};
  ++stats_.mirrored;
}

void FtpDataConnections::forget_destroyed(uint64_t now_ns) {
  for (auto it = mirrored_.begin(); it != mirrored_.end();) {
    if (it->second.destroyed_ns == 0 || it->second.destroyed_ns + kDestroyedGraceNs >= now_ns) {
      ++it;
      continue;
    }
    pc_expect_key key{};
    std::memcpy(&key, it->first.data(), sizeof(key));
    (void)bpf_map_delete_elem(expects_fd_, &key);
    it = mirrored_.erase(it);
  }
}

void FtpDataConnections::on_bound(std::optional<size_t> group, const std::vector<std::string>& names,
                                  const policy::IpAddress& address, uint32_t seconds) {
  if (!policy_) return;
  for (size_t entry = 0; entry < rule_of_entry_.size(); ++entry) {
    const policy::Rule& rule = policy_->rules()[rule_of_entry_[entry]];
    if (rule.group && rule.group != group) continue;
    const bool named = std::any_of(rule.destinations.begin(), rule.destinations.end(), [&](const auto& destination) {
      const auto* pattern = std::get_if<policy::NamePattern>(&destination);
      return pattern != nullptr &&
             std::any_of(names.begin(), names.end(), [&](const std::string& name) { return pattern->matches(name); });
    });
    if (!named) continue;
    if (std::string problem = table_->add_bound_address(entry, address, seconds); !problem.empty()) error(problem);
  }
}

void FtpDataConnections::on_verdict(const pc_verdict_event& event) {
  if (event.proto != kTcp || !allowed(event.verdict) || event.generation != generation_ ||
      !is_ftp_rule(event.rule_id)) {
    return;
  }
  pc_ftp_peer_key key{};
  key.client = event.src;
  key.server = event.dst;
  key.family = event.family;
  if (peers_.contains(bytes_of(key))) return;  // peers already; the next refresh counts their connections
  const pc_ftp_peer value{1, 0};
  if (bpf_map_update_elem(peers_fd_, &key, &value, BPF_ANY) != 0) {
    error(std::string("cannot record FTP peers: ") + std::strerror(errno));
    return;
  }
  peers_[bytes_of(key)] = value.control_flows;
}

void FtpDataConnections::refresh_peers(const FlowTable& flows) {
  forget_destroyed(punt::monotonic_ns());
  std::map<std::vector<uint8_t>, std::pair<pc_ftp_peer_key, pc_ftp_peer>> now;
  flows.for_each([&](const TrackedFlow& flow) {
    if (flow.key.proto != kTcp || !allowed(flow.data.verdict) || flow.data.generation != generation_ ||
        !is_ftp_rule(flow.data.rule_id) || flow.finished()) {
      return;
    }
    pc_ftp_peer_key key{};
    key.client = flow.event.src;
    key.server = flow.event.dst;
    key.family = flow.event.family;
    auto& [stored_key, value] = now[bytes_of(key)];
    stored_key = key;
    value.control_flows += 1;
  });
  // Only what changed is written: peers gone are deleted, peers new or with another count written.
  std::erase_if(peers_, [&](const auto& written) {
    if (now.contains(written.first)) return false;
    pc_ftp_peer_key key{};
    std::memcpy(&key, written.first.data(), sizeof(key));
    (void)bpf_map_delete_elem(peers_fd_, &key);
    return true;
  });
  for (const auto& [id, entry] : now) {
    const auto written = peers_.find(id);
    if (written != peers_.end() && written->second == entry.second.control_flows) continue;
    if (bpf_map_update_elem(peers_fd_, &entry.first, &entry.second, BPF_ANY) == 0) {
      peers_[id] = entry.second.control_flows;
    }
  }
}

std::optional<punt::PuntHandler::ExpectedConnection> FtpDataConnections::resolve(const punt::PendingFlowFacts& facts) {
  if (!listener_) return std::nullopt;
  on_readable();  // what the kernel reported meanwhile
  ConntrackTuple wanted;
  wanted.src = facts.src;
  wanted.dst = facts.dst;
  wanted.dport = facts.dport;
  const pc_expect_key key = expect_key_of(wanted);
  std::optional<ConntrackTuple> master;
  if (const auto found = mirrored_.find(bytes_of(key)); found != mirrored_.end()) {
    master = found->second.master;
    (void)bpf_map_delete_elem(expects_fd_, &key);  // this connection is it: no second one
    mirrored_.erase(found);
  } else {
    try {
      for (const Expectation& expectation : listener_->dump()) {
        const ConntrackTuple expected = seen_by_data_plane(expectation);
        if (expected.src == facts.src && expected.dst == facts.dst && expected.dport == facts.dport) {
          master = expectation.master;
          break;
        }
      }
    } catch (const std::exception& e) {
      error(e.what());
    }
  }
  const std::optional<pc_flow> control = master ? allowed_control(*master) : std::nullopt;
  if (!control) {
    ++stats_.unresolved;
    return std::nullopt;
  }
  ++stats_.resolved;
  return punt::PuntHandler::ExpectedConnection{control->rule_id, control->scope};
}

std::string FtpDataConnections::forget_control(const pc_verdict_event& control) {
  ConntrackTuple master;
  master.src = dataplane::address_of(control.src, control.family);
  master.dst = dataplane::address_of(control.dst, control.family);
  master.sport = control.sport;
  master.dport = control.dport;
  master.proto = control.proto;
  for (auto it = mirrored_.begin(); it != mirrored_.end();) {
    if (!(it->second.master == master)) {
      ++it;
      continue;
    }
    pc_expect_key key{};
    std::memcpy(&key, it->first.data(), sizeof(key));
    (void)bpf_map_delete_elem(expects_fd_, &key);
    it = mirrored_.erase(it);
  }
  return delete_expectations_of(master);
}

std::string FtpDataConnections::remove() {
  return table_->remove();
}

std::vector<std::string> FtpDataConnections::take_errors() {
  return std::exchange(errors_, {});
}

void FtpDataConnections::error(std::string message) {
  if (errors_.size() < kMaxErrors) errors_.push_back(std::move(message));
}

}  // namespace portcullis::conntrack
