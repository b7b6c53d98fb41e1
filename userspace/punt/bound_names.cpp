#include "punt/bound_names.h"

#include <algorithm>
#include <cstring>

#include "dataplane/frame_fields.h"
#include "dataplane/policy_tables.h"
#include "portcullis/packet.h"
#include "portcullis/policy_maps.h"

namespace portcullis::punt {
namespace {

pc_bound_key key_of(std::optional<size_t> group, const policy::IpAddress& address) {
  pc_bound_key key{};
  key.addr = dataplane::pc_addr_of(address);
  key.scope = group ? dataplane::group_scope(*group) : static_cast<uint32_t>(PC_SCOPE_TOP_LEVEL);
  key.family = dataplane::family_of(address);
  return key;
}

}  // namespace

size_t BoundNameTable::KeyHash::operator()(const pc_bound_key& key) const {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(&key), sizeof(key)));
}

bool BoundNameTable::KeyEqual::operator()(const pc_bound_key& a, const pc_bound_key& b) const {
  return std::memcmp(&a, &b, sizeof(a)) == 0;  // NOLINT(bugprone-suspicious-memory-comparison): padding zeroed
}

void BoundNameTable::set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, const DnsBindings& bindings) {
  for (const auto& [key, name] : entries_) write(key, nullptr);
  entries_.clear();
  policy_ = std::move(policy);
  bindings.for_each([this](std::optional<size_t> group, const std::string& name, const policy::IpAddress& address,
                           uint64_t expires_ns) {
    if (const uint8_t mask = denied_protocols(name, group)) add(group, address, mask, expires_ns);
  });
}

void BoundNameTable::on_bound(std::optional<size_t> group, const std::vector<std::string>& names,
                              const policy::IpAddress& address, uint64_t expires_ns) {
  uint8_t mask = 0;
  for (const std::string& name : names) mask |= denied_protocols(name, group);
  if (mask != 0) add(group, address, mask, expires_ns);
}

void BoundNameTable::expire(uint64_t now_ns) {
  std::erase_if(entries_, [&](const auto& entry) {
    if (entry.second.expires_ns > now_ns) return false;
    write(entry.first, nullptr);
    return true;
  });
}

uint8_t BoundNameTable::denied_protocols(const std::string& name, std::optional<size_t> group) const {
  uint8_t mask = 0;
  if (!policy_) return mask;
  for (const policy::Rule* rule : policy_->denies_through_bindings(name, group)) {
    mask |= dataplane::l4_mask_of(rule->proto);
  }
  return mask;
}

void BoundNameTable::add(std::optional<size_t> group, const policy::IpAddress& address, uint8_t l4_mask,
                         uint64_t expires_ns) {
  if (capacity_ == 0) return;
  const pc_bound_key key = key_of(group, address);
  if (entries_.size() >= capacity_ && !entries_.contains(key)) {
    const auto soonest = std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
      return a.second.expires_ns < b.second.expires_ns;
    });
    write(soonest->first, nullptr);
    entries_.erase(soonest);
  }
  auto [it, created] = entries_.try_emplace(key);
  pc_bound_name& name = it->second;
  const pc_bound_name before = name;
  // One entry stands for every name bound to the address: it covers all their rules until the last ends.
  name.l4_mask |= l4_mask;
  name.expires_ns = std::max<uint64_t>(name.expires_ns, expires_ns);
  if (created || std::memcmp(&before, &name, sizeof(name)) != 0) write(key, &name);
}

void BoundNameTable::write(const pc_bound_key& key, const pc_bound_name* name) {
  if (!writer_(key, name)) ++write_errors_;
}

}  // namespace portcullis::punt
