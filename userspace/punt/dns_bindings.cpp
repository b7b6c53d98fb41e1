#include "punt/dns_bindings.h"

#include <algorithm>
#include <cstring>

#include "dataplane/frame_fields.h"
#include "parsers/dns_message.h"
#include "portcullis/compat.h"
#include "portcullis/parse.h"

namespace portcullis::punt {
namespace {

constexpr uint8_t kUdp = 17;
constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;

}  // namespace

size_t DnsBindings::OwnerHash::operator()(const Owner& owner) const {
  return policy::IpAddressHash{}(owner.address) * 31 + owner.scope;
}

DnsBindings::Owner DnsBindings::owner_of(std::optional<size_t> group, const policy::IpAddress& address) {
  return Owner{group ? static_cast<uint32_t>(*group + 1) : 0, address};
}

const DnsBindings::Bindings::iterator* DnsBindings::find(const Owner& owner, const std::string& name) const {
  const auto found = by_owner_.find(owner);
  if (found == by_owner_.end()) return nullptr;
  for (const Bindings::iterator& binding : found->second) {
    if (binding->name == name) return &binding;
  }
  return nullptr;
}

void DnsBindings::erase(Bindings::iterator binding) {
  const auto owner = by_owner_.find(binding->owner);
  if (owner != by_owner_.end()) {
    std::erase(owner->second, binding);
    if (owner->second.empty()) by_owner_.erase(owner);
  }
  bindings_.erase(binding);
}

std::vector<std::string> DnsBindings::names_of(std::optional<size_t> group, const policy::IpAddress& address,
                                               uint64_t now_ns) const {
  std::vector<std::string> names;
  const auto found = by_owner_.find(owner_of(group, address));
  if (found == by_owner_.end()) return names;
  for (const Bindings::iterator& binding : found->second) {
    if (binding->expires_ns > now_ns) names.push_back(binding->name);
  }
  return names;
}

void DnsBindings::bind(std::optional<size_t> group, const std::vector<std::string>& names,
                       const policy::IpAddress& address, uint32_t ttl, uint64_t now_ns) {
  const uint32_t seconds = std::clamp(ttl, limits_.min_ttl, std::max(limits_.min_ttl, limits_.max_ttl));
  const uint64_t expires = now_ns + seconds * kNsPerSecond;
  for (const Observer& observer : observers_) observer(group, names, address, seconds, expires);
  const Owner owner = owner_of(group, address);
  for (const std::string& name : names) {
    if (const Bindings::iterator* known = find(owner, name)) {
      (*known)->expires_ns = std::max((*known)->expires_ns, expires);
      bindings_.splice(bindings_.end(), bindings_, *known);
      continue;
    }
    if (bindings_.size() >= limits_.max_bindings && !bindings_.empty()) erase(bindings_.begin());
    if (limits_.max_bindings == 0) return;
    bindings_.push_back(Binding{owner, name, expires});
    by_owner_[owner].push_back(std::prev(bindings_.end()));
  }
}

bool DnsBindings::bound(std::optional<size_t> group, const std::string& name, const policy::IpAddress& address,
                        uint64_t now_ns) const {
  const Bindings::iterator* binding = find(owner_of(group, address), name);
  return binding != nullptr && (*binding)->expires_ns > now_ns;
}

void DnsBindings::for_each(const Visitor& visit) const {
  for (const Binding& binding : bindings_) {
    const std::optional<size_t> group =
        binding.owner.scope == 0 ? std::nullopt : std::optional<size_t>(binding.owner.scope - 1);
    visit(group, binding.name, binding.owner.address, binding.expires_ns);
  }
}

void DnsBindings::expire(uint64_t now_ns) {
  for (auto binding = bindings_.begin(); binding != bindings_.end();) {
    const auto next = std::next(binding);
    if (binding->expires_ns <= now_ns) erase(binding);
    binding = next;
  }
}

std::optional<size_t> learn_from_answer(DnsBindings& bindings, const policy::CompiledPolicy& policy,
                                        std::span<const uint8_t> frame, uint64_t now_ns) {
  pc_packet pkt{};
  if (pc_parse_packet(frame.data(), frame.data() + frame.size(), &pkt) != PC_DROP_NONE || pkt.proto != kUdp ||
      pkt.is_fragment) {
    return std::nullopt;
  }
  return learn_from_message(bindings, policy, dataplane::payload_of(pkt, frame),
                            dataplane::address_of(pkt.dst, pkt.family), now_ns);
}

std::optional<size_t> learn_from_message(DnsBindings& bindings, const policy::CompiledPolicy& policy,
                                         std::span<const uint8_t> message, const policy::IpAddress& client,
                                         uint64_t now_ns) {
  const parsers::DnsMessage answer = parsers::parse_dns_message(message);
  if (answer.status != parsers::ParseStatus::found || !answer.response) return std::nullopt;
  if (answer.rcode != 0) return size_t{0};
  // Every name of the chain from the asked name binds the addresses the chain ends at.
  const std::vector<std::string> chain = parsers::cname_chain(answer, answer.question.name);
  const std::optional<size_t> group = policy.group_of(client);
  size_t made = 0;
  for (const parsers::DnsAddressRecord& record : answer.addresses) {
    if (std::find(chain.begin(), chain.end(), record.name) == chain.end()) continue;
    policy::IpAddress address;
    address.family = record.v6 ? policy::IpFamily::v6 : policy::IpFamily::v4;
    std::memcpy(address.bytes.data(), record.address.data(), record.v6 ? 16 : 4);
    bindings.bind(group, chain, address, record.ttl, now_ns);
    made += chain.size();
  }
  return made;
}

DnsTcpAnswers::Learned DnsTcpAnswers::add(DnsBindings& bindings, const policy::CompiledPolicy& policy,
                                          const pc_packet& pkt, std::span<const uint8_t> frame, uint64_t now_ns) {
  Learned learned;
  pc_flow_key key{};
  uint8_t direction = 0;
  const std::optional<uint32_t> seq = dataplane::tcp_seq(pkt, frame);
  if (pc_flow_key_from_packet(&pkt, &key, &direction) < 0 || !seq) {
    learned.unreadable = true;
    return learned;
  }
  const std::span<const uint8_t> payload = dataplane::payload_of(pkt, frame);
  if (payload.empty()) return learned;
  Stream& stream = streams_[key];
  stream.last_ns = now_ns;
  if (!stream.bytes) stream.bytes.emplace(*seq, parsers::TcpStreamPrefix::kDefaultLimit);
  stream.bytes->add_segment(*seq, payload);
  const std::span<const uint8_t> bytes = stream.bytes->contiguous();
  const policy::IpAddress client = dataplane::address_of(pkt.dst, pkt.family);
  while (stream.consumed + 2 <= bytes.size()) {
    const size_t length = size_t{bytes[stream.consumed]} << 8 | bytes[stream.consumed + 1];
    if (stream.consumed + 2 + length > bytes.size()) break;
    const std::optional<size_t> made =
        learn_from_message(bindings, policy, bytes.subspan(stream.consumed + 2, length), client, now_ns);
    ++(made ? learned.answers : learned.malformed);
    stream.consumed += 2 + length;
  }
  return learned;
}

void DnsTcpAnswers::expire(uint64_t idle_since_ns) {
  std::erase_if(streams_, [idle_since_ns](const auto& entry) { return entry.second.last_ns <= idle_since_ns; });
}

PendingVerdict decide_with_bindings(const policy::CompiledPolicy& policy, policy::Mode mode,
                                    const PendingFlowFacts& flow, const FlowIdentity& identity,
                                    const DnsBindings& bindings, uint64_t now_ns) {
  const std::optional<size_t> group = policy.group_of(flow.src);
  if (identity.name) {
    const PendingVerdict verdict =
        decide_pending_flow(policy, mode, flow, identity, bindings.bound(group, *identity.name, flow.dst, now_ns));
    if (!verdict.allow) return verdict;
    return denied_by_bound_names(policy, mode, flow, identity, bindings.names_of(group, flow.dst, now_ns))
        .value_or(verdict);
  }
  return decide_by_bound_names(policy, mode, flow, identity, bindings.names_of(group, flow.dst, now_ns));
}

std::optional<PendingVerdict> decide_at_syn(const policy::CompiledPolicy& policy, policy::Mode mode,
                                            const PendingFlowFacts& flow, const DnsBindings& bindings,
                                            uint64_t now_ns) {
  const std::vector<std::string> names = bindings.names_of(policy.group_of(flow.src), flow.dst, now_ns);
  FlowIdentity unknown;
  unknown.state = FlowIdentity::State::unknown;
  const PendingVerdict verdict = decide_by_bound_names(policy, mode, flow, unknown, names);
  FlowIdentity ssh;
  ssh.state = FlowIdentity::State::identified;
  ssh.l7 = policy::L7Proto::ssh;
  if (verdict.allow && denied_by_bound_names(policy, mode, flow, ssh, names)) return std::nullopt;
  return verdict;
}

}  // namespace portcullis::punt
