#include "punt/dns_bindings.h"

#include <algorithm>
#include <cstring>

#include "parsers/dns_message.h"
#include "portcullis/compat.h"
#include "portcullis/parse.h"

namespace portcullis::punt {
namespace {

constexpr uint8_t kUdp = 17;
constexpr uint64_t kNsPerSecond = 1'000'000'000ULL;

policy::IpAddress address_of(const pc_addr& addr, uint8_t family) {
  policy::IpAddress address;
  address.family = family == PC_FAMILY_IPV6 ? policy::IpFamily::v6 : policy::IpFamily::v4;
  std::memcpy(address.bytes.data(), addr.bytes, family == PC_FAMILY_IPV6 ? 16 : 4);
  return address;
}

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

void DnsBindings::bind(std::optional<size_t> group, const std::vector<std::string>& names,
                       const policy::IpAddress& address, uint32_t ttl, uint64_t now_ns) {
  const uint32_t seconds = std::clamp(ttl, limits_.min_ttl, std::max(limits_.min_ttl, limits_.max_ttl));
  const uint64_t expires = now_ns + seconds * kNsPerSecond;
  for (const std::string& name : names) {
    std::string key = key_of(group, name, address);
    if (const auto it = entries_.find(key); it != entries_.end()) {
      it->second.expires_ns = std::max(it->second.expires_ns, expires);
      age_.splice(age_.end(), age_, it->second.age);
      continue;
    }
    if (entries_.size() >= limits_.max_bindings && !age_.empty()) {
      entries_.erase(age_.front());
      age_.pop_front();
    }
    age_.push_back(key);
    entries_.emplace(std::move(key), Entry{expires, std::prev(age_.end())});
  }
}

bool DnsBindings::bound(std::optional<size_t> group, const std::string& name, const policy::IpAddress& address,
                        uint64_t now_ns) const {
  const auto it = entries_.find(key_of(group, name, address));
  return it != entries_.end() && it->second.expires_ns > now_ns;
}

void DnsBindings::expire(uint64_t now_ns) {
  for (auto it = age_.begin(); it != age_.end();) {
    const auto entry = entries_.find(*it);
    if (entry != entries_.end() && entry->second.expires_ns <= now_ns) {
      entries_.erase(entry);
      it = age_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<size_t> learn_from_answer(DnsBindings& bindings, const policy::CompiledPolicy& policy,
                                        std::span<const uint8_t> frame, uint64_t now_ns) {
  pc_packet pkt{};
  if (pc_parse_packet(frame.data(), frame.data() + frame.size(), &pkt) != PC_DROP_NONE || pkt.proto != kUdp ||
      pkt.is_fragment) {
    return std::nullopt;
  }
  const size_t end = std::min<size_t>(frame.size(), size_t{pkt.payload_off} + pkt.payload_len);
  if (pkt.payload_off > end) return std::nullopt;
  const parsers::DnsMessage answer = parsers::parse_dns_message(frame.subspan(pkt.payload_off, end - pkt.payload_off));
  if (answer.status != parsers::ParseStatus::found || !answer.response) return std::nullopt;
  if (answer.rcode != 0) return size_t{0};
  // Every name of the chain from the asked name binds the addresses the chain ends at.
  const std::vector<std::string> chain = parsers::cname_chain(answer, answer.question.name);
  const std::optional<size_t> group = policy.group_of(address_of(pkt.dst, pkt.family));
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

}  // namespace portcullis::punt
