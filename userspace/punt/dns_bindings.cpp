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

std::string DnsBindings::key_of(std::optional<size_t> group, const std::string& name,
                                const policy::IpAddress& address) {
  std::string key = group ? std::to_string(*group) : std::string("-");
  key += '|';
  key += name;
  key += '|';
  key += address.to_string();
  return key;
}

std::string DnsBindings::address_key_of(std::optional<size_t> group, const policy::IpAddress& address) {
  return (group ? std::to_string(*group) : std::string("-")) + '|' + address.to_string();
}

void DnsBindings::erase(const std::string& key) {
  const auto it = entries_.find(key);
  if (it == entries_.end()) return;
  if (const auto names = by_address_.find(it->second.address_key); names != by_address_.end()) {
    names->second.erase(it->second.name);
    if (names->second.empty()) by_address_.erase(names);
  }
  age_.erase(it->second.age);
  entries_.erase(it);
}

std::vector<std::string> DnsBindings::names_of(std::optional<size_t> group, const policy::IpAddress& address,
                                               uint64_t now_ns) const {
  std::vector<std::string> names;
  const auto found = by_address_.find(address_key_of(group, address));
  if (found == by_address_.end()) return names;
  for (const std::string& name : found->second) {
    if (bound(group, name, address, now_ns)) names.push_back(name);
  }
  return names;
}

void DnsBindings::bind(std::optional<size_t> group, const std::vector<std::string>& names,
                       const policy::IpAddress& address, uint32_t ttl, uint64_t now_ns) {
  const uint32_t seconds = std::clamp(ttl, limits_.min_ttl, std::max(limits_.min_ttl, limits_.max_ttl));
  const uint64_t expires = now_ns + seconds * kNsPerSecond;
  for (const Observer& observer : observers_) observer(group, names, address, ttl, expires);
  for (const std::string& name : names) {
    std::string key = key_of(group, name, address);
    if (const auto it = entries_.find(key); it != entries_.end()) {
      it->second.expires_ns = std::max(it->second.expires_ns, expires);
      age_.splice(age_.end(), age_, it->second.age);
      continue;
    }
    if (entries_.size() >= limits_.max_bindings && !age_.empty()) erase(age_.front());
    age_.push_back(key);
    std::string address_key = address_key_of(group, address);
    by_address_[address_key].insert(name);
    entries_.emplace(std::move(key),
                     Entry{expires, std::prev(age_.end()), std::move(address_key), name, group, address});
  }
}

bool DnsBindings::bound(std::optional<size_t> group, const std::string& name, const policy::IpAddress& address,
                        uint64_t now_ns) const {
  const auto it = entries_.find(key_of(group, name, address));
  return it != entries_.end() && it->second.expires_ns > now_ns;
}

void DnsBindings::for_each(const Visitor& visit) const {
  for (const auto& [key, entry] : entries_) visit(entry.group, entry.name, entry.address, entry.expires_ns);
}

void DnsBindings::expire(uint64_t now_ns) {
  std::vector<std::string> expired;
  for (const auto& [key, entry] : entries_) {
    if (entry.expires_ns <= now_ns) expired.push_back(key);
  }
  for (const std::string& key : expired) erase(key);
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

bool bound_name_deny_needs_first_bytes(const policy::CompiledPolicy& policy, policy::Mode mode,
                                       const PendingFlowFacts& flow, const DnsBindings& bindings, uint64_t now_ns) {
  FlowIdentity unknown;
  unknown.state = FlowIdentity::State::unknown;
  if (!decide_with_bindings(policy, mode, flow, unknown, bindings, now_ns).allow) return false;
  FlowIdentity ssh;
  ssh.state = FlowIdentity::State::identified;
  ssh.l7 = policy::L7Proto::ssh;
  const std::vector<std::string> names = bindings.names_of(policy.group_of(flow.src), flow.dst, now_ns);
  return denied_by_bound_names(policy, mode, flow, ssh, names).has_value();
}

}  // namespace portcullis::punt
