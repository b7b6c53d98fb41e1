// The data plane's pc_bound_names (include/portcullis/bound_names.h), kept from the DNS bindings: for every
// binding of a name that a deny rule applying to the client names through bindings (tcp, udp, icmp, any, ssh,
// ftp to a name), the address under the client's scope, with those rules' protocols, until the binding ends.
// Each entry is written while the answer that made it is held, before it goes on. A reload writes the table
// again from the bindings held, for the new policy's rules. Bounded as the map is (an LRU hash of
// PC_BOUND_NAMES_SIZE entries): past `capacity` the entry that ends soonest goes first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/compiled_policy.h"
#include "portcullis/bound_names.h"
#include "punt/dns_bindings.h"

namespace portcullis::punt {

class BoundNameTable {
 public:
  // Writes one entry where the data plane reads it; `name` null deletes it. False when the write failed.
  using Writer = std::function<bool(const pc_bound_key& key, const pc_bound_name* name)>;
  static constexpr size_t kDefaultCapacity = 65536;  // PC_BOUND_NAMES_SIZE
  explicit BoundNameTable(Writer writer, size_t capacity = kDefaultCapacity)
      : writer_(std::move(writer)), capacity_(capacity) {}

  // The policy whose deny rules say which names count. Deletes every entry, then writes those `bindings` make
  // under it.
  void set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, const DnsBindings& bindings);
  // A binding made (DnsBindings::Observer).
  void on_bound(std::optional<size_t> group, const std::vector<std::string>& names, const policy::IpAddress& address,
                uint64_t expires_ns);
  // Deletes the entries whose bindings have all ended.
  void expire(uint64_t now_ns);

  size_t size() const { return entries_.size(); }
  uint64_t write_errors() const { return write_errors_; }

 private:
  uint8_t denied_protocols(const std::string& name, std::optional<size_t> group) const;
  void add(std::optional<size_t> group, const policy::IpAddress& address, uint8_t l4_mask, uint64_t expires_ns);
  void write(const pc_bound_key& key, const pc_bound_name* name);

  Writer writer_;
  size_t capacity_;
  std::shared_ptr<const policy::CompiledPolicy> policy_;
  struct KeyHash {
    size_t operator()(const pc_bound_key& key) const;
  };
  struct KeyEqual {
    bool operator()(const pc_bound_key& a, const pc_bound_key& b) const;
  };
  std::unordered_map<pc_bound_key, pc_bound_name, KeyHash, KeyEqual> entries_;
  uint64_t write_errors_ = 0;
};

}  // namespace portcullis::punt
