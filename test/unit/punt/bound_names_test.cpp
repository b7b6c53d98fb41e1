// The data plane's pc_bound_names as BoundNameTable keeps it from DNS bindings: which bindings make an entry,
// under which scope, with which protocols and until when, and what a reload rewrites.
#include "punt/bound_names.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "dataplane/policy_tables.h"
#include "policy/policy_loader.h"
#include "portcullis/policy_maps.h"

namespace portcullis::punt {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;

// Deny rules of every kind to names, one group's own, and an allow of a name; the default allows, so that only
// the denies say which addresses must wait for the daemon.
constexpr const char* kPolicy = R"(version: 1
defaults: {action: allow}
rules:
  - {name: no-evil, dst: evil.test, proto: tcp, ports: ["1-65535"], action: deny}
  - {name: no-other-https, dst: other.test, proto: https, action: deny}
  - {name: no-ping, dst: ping.test, proto: icmp, action: deny}
  - {name: no-anything, dst: anything.test, proto: any, action: deny}
  - {name: no-both-tcp, dst: both.test, proto: tcp, ports: [22], action: deny}
  - {name: no-both-udp, dst: both.test, proto: udp, ports: [53], action: deny}
  - {name: fine, dst: fine.test, proto: tcp, ports: [443]}
groups:
  - name: a
    sources: [10.88.1.0/24]
    rules:
      - {name: a-no-ssh, dst: a-only.test, proto: ssh, action: deny}
  - {name: b, sources: [10.88.2.0/24]}
)";

std::shared_ptr<const policy::CompiledPolicy> compile(const std::string& yaml) {
  policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
  EXPECT_TRUE(loaded.policy.has_value());
  return policy::compile_policy(std::move(*loaded.policy));
}

policy::IpAddress ip(const char* text) {
  return *policy::IpAddress::parse(text);
}

// The key the data plane looks up for a flow from a client of `scope` to `address`.
pc_bound_key key_for(uint32_t scope, const char* address) {
  const policy::IpAddress parsed = ip(address);
  const bool v6 = parsed.family == policy::IpFamily::v6;
  pc_bound_key key{};
  std::memcpy(key.addr.bytes, parsed.bytes.data(), v6 ? 16 : 4);
  key.scope = scope;
  key.family = v6 ? PC_FAMILY_IPV6 : PC_FAMILY_IPV4;
  return key;
}

const uint32_t kScopeA = dataplane::group_scope(0);
const uint32_t kScopeB = dataplane::group_scope(1);
constexpr uint32_t kTopLevel = PC_SCOPE_TOP_LEVEL;

// What BoundNameTable wrote where the data plane reads it: the map as it stands, and how often it was written.
class BoundNameTableTest : public ::testing::Test {
 protected:
  BoundNameTableTest()
      : table_([this](const pc_bound_key& key, const pc_bound_name* name) {
          const std::string bytes(reinterpret_cast<const char*>(&key), sizeof(key));
          if (name == nullptr) {
            ++deletes_;
            map_.erase(bytes);
          } else {
            ++writes_;
            map_[bytes] = *name;
          }
          return true;
        }) {}

  std::optional<pc_bound_name> entry(uint32_t scope, const char* address) const {
    const pc_bound_key key = key_for(scope, address);
    const auto found = map_.find(std::string(reinterpret_cast<const char*>(&key), sizeof(key)));
    return found == map_.end() ? std::nullopt : std::optional<pc_bound_name>(found->second);
  }

  std::map<std::string, pc_bound_name> map_;
  size_t writes_ = 0;
  size_t deletes_ = 0;
  BoundNameTable table_;
};

TEST_F(BoundNameTableTest, OnlyNamesAnL4DenyRuleNamesAreWrittenWithThoseRulesProtocols) {
  table_.set_policy(compile(kPolicy), DnsBindings());
  const uint64_t expires = 100 * kSecond;
  table_.on_bound(0, {"evil.test"}, ip("198.18.0.10"), expires);
  table_.on_bound(0, {"other.test"}, ip("198.18.0.11"), expires);
  table_.on_bound(0, {"ping.test"}, ip("198.18.0.12"), expires);
  table_.on_bound(0, {"anything.test"}, ip("2001:db8::13"), expires);
  table_.on_bound(0, {"both.test"}, ip("198.18.0.14"), expires);
  table_.on_bound(0, {"fine.test"}, ip("198.18.0.15"), expires);
  table_.on_bound(0, {"unnamed.test"}, ip("198.18.0.16"), expires);

  const std::optional<pc_bound_name> evil = entry(kScopeA, "198.18.0.10");
  ASSERT_TRUE(evil.has_value());
  EXPECT_EQ(evil->l4_mask, PC_L4_TCP);
  EXPECT_EQ(evil->expires_ns, expires);
  EXPECT_FALSE(entry(kScopeA, "198.18.0.11").has_value()) << "an https deny matches the name a flow shows";
  EXPECT_EQ(entry(kScopeA, "198.18.0.12").value_or(pc_bound_name{}).l4_mask, PC_L4_ICMP | PC_L4_ICMPV6);
  EXPECT_EQ(entry(kScopeA, "2001:db8::13").value_or(pc_bound_name{}).l4_mask, PC_L4_ALL);
  EXPECT_EQ(entry(kScopeA, "198.18.0.14").value_or(pc_bound_name{}).l4_mask, PC_L4_TCP | PC_L4_UDP)
      << "every deny rule naming it";
  EXPECT_FALSE(entry(kScopeA, "198.18.0.15").has_value()) << "an allow of a name holds nothing back";
  EXPECT_FALSE(entry(kScopeA, "198.18.0.16").has_value());
  EXPECT_EQ(map_.size(), 4u);
  EXPECT_EQ(table_.size(), 4u);
}

TEST_F(BoundNameTableTest, TopLevelDeniesApplyToEveryScopeAndAGroupsDeniesOnlyToItsOwnClients) {
  table_.set_policy(compile(kPolicy), DnsBindings());
  table_.on_bound(std::nullopt, {"evil.test"}, ip("198.18.0.10"), kSecond);
  table_.on_bound(1, {"evil.test"}, ip("198.18.0.10"), kSecond);
  table_.on_bound(0, {"a-only.test"}, ip("198.18.0.20"), kSecond);
  table_.on_bound(1, {"a-only.test"}, ip("198.18.0.21"), kSecond);

  EXPECT_EQ(entry(kTopLevel, "198.18.0.10").value_or(pc_bound_name{}).l4_mask, PC_L4_TCP);
  EXPECT_EQ(entry(kScopeB, "198.18.0.10").value_or(pc_bound_name{}).l4_mask, PC_L4_TCP);
  EXPECT_FALSE(entry(kScopeA, "198.18.0.10").has_value()) << "no client of group a was given the answer";
  EXPECT_EQ(entry(kScopeA, "198.18.0.20").value_or(pc_bound_name{}).l4_mask, PC_L4_TCP) << "ssh is over TCP";
  EXPECT_FALSE(entry(kScopeB, "198.18.0.21").has_value()) << "group a's rule is not group b's";
  EXPECT_EQ(map_.size(), 3u);
}

TEST_F(BoundNameTableTest, ACnameChainIsWrittenWhenAnyOfItsNamesIsDenied) {
  table_.set_policy(compile(kPolicy), DnsBindings());
  table_.on_bound(0, {"alias.test", "evil.test"}, ip("198.18.0.10"), kSecond);
  EXPECT_EQ(entry(kScopeA, "198.18.0.10").value_or(pc_bound_name{}).l4_mask, PC_L4_TCP);
}

TEST_F(BoundNameTableTest, OneAddressBoundToSeveralDeniedNamesCoversAllTheirRulesUntilTheLastBindingEnds) {
  table_.set_policy(compile(kPolicy), DnsBindings());
  table_.on_bound(0, {"evil.test"}, ip("198.18.0.10"), 200 * kSecond);
  table_.on_bound(0, {"ping.test"}, ip("198.18.0.10"), 100 * kSecond);
  const std::optional<pc_bound_name> both = entry(kScopeA, "198.18.0.10");
  ASSERT_TRUE(both.has_value());
  EXPECT_EQ(both->l4_mask, PC_L4_TCP | PC_L4_ICMP | PC_L4_ICMPV6);
  EXPECT_EQ(both->expires_ns, 200 * kSecond);
  // The same binding confirmed again changes nothing, and is not written again.
  const size_t writes = writes_;
  table_.on_bound(0, {"evil.test"}, ip("198.18.0.10"), 150 * kSecond);
  EXPECT_EQ(writes_, writes);
}

TEST_F(BoundNameTableTest, ExpireDeletesTheEntriesWhoseBindingsHaveEnded) {
  table_.set_policy(compile(kPolicy), DnsBindings());
  table_.on_bound(0, {"evil.test"}, ip("198.18.0.10"), 100 * kSecond);
  table_.on_bound(0, {"evil.test"}, ip("198.18.0.11"), 200 * kSecond);
  table_.expire(99 * kSecond);
  EXPECT_EQ(map_.size(), 2u);
  table_.expire(100 * kSecond);
  EXPECT_FALSE(entry(kScopeA, "198.18.0.10").has_value());
  EXPECT_TRUE(entry(kScopeA, "198.18.0.11").has_value());
  EXPECT_EQ(table_.size(), 1u);
  EXPECT_EQ(deletes_, 1u);
}

TEST_F(BoundNameTableTest, ANewPolicyRewritesTheTableFromTheBindingsHeld) {
  DnsBindings bindings({.min_ttl = 30, .max_ttl = 600, .max_bindings = 100});
  bindings.observe([this](std::optional<size_t> group, const std::vector<std::string>& names,
                          const policy::IpAddress& address, uint32_t /*ttl*/,
                          uint64_t expires_ns) { table_.on_bound(group, names, address, expires_ns); });
  table_.set_policy(compile(kPolicy), bindings);
  bindings.bind(0, {"evil.test"}, ip("198.18.0.10"), 60, 0);
  bindings.bind(0, {"other.test"}, ip("198.18.0.11"), 120, 0);
  ASSERT_TRUE(entry(kScopeA, "198.18.0.10").has_value());
  ASSERT_FALSE(entry(kScopeA, "198.18.0.11").has_value());

  // evil.test is no longer denied; other.test now is, for UDP.
  table_.set_policy(compile(R"(version: 1
defaults: {action: allow}
rules:
  - {name: no-other, dst: other.test, proto: udp, ports: [443], action: deny}
groups:
  - {name: a, sources: [10.88.1.0/24]}
)"),
                    bindings);
  EXPECT_FALSE(entry(kScopeA, "198.18.0.10").has_value()) << "what the new policy no longer needs is deleted";
  const std::optional<pc_bound_name> other = entry(kScopeA, "198.18.0.11");
  ASSERT_TRUE(other.has_value()) << "what it needs is written from the bindings held";
  EXPECT_EQ(other->l4_mask, PC_L4_UDP);
  EXPECT_EQ(other->expires_ns, 120 * kSecond);
  EXPECT_EQ(map_.size(), 1u);
  EXPECT_EQ(table_.size(), 1u);
}

TEST_F(BoundNameTableTest, PastItsCapacityTheEntryThatEndsSoonestGoes) {
  BoundNameTable small(
      [this](const pc_bound_key& key, const pc_bound_name* name) {
        const std::string bytes(reinterpret_cast<const char*>(&key), sizeof(key));
        if (name == nullptr) {
          map_.erase(bytes);
        } else {
          map_[bytes] = *name;
        }
        return true;
      },
      2);
  small.set_policy(compile(kPolicy), DnsBindings());
  small.on_bound(0, {"evil.test"}, ip("198.18.0.10"), 300 * kSecond);
  small.on_bound(0, {"evil.test"}, ip("198.18.0.11"), 100 * kSecond);
  small.on_bound(0, {"evil.test"}, ip("198.18.0.12"), 200 * kSecond);
  EXPECT_EQ(small.size(), 2u);
  EXPECT_EQ(map_.size(), 2u);
  EXPECT_FALSE(entry(kScopeA, "198.18.0.11").has_value());
  EXPECT_TRUE(entry(kScopeA, "198.18.0.10").has_value());
  EXPECT_TRUE(entry(kScopeA, "198.18.0.12").has_value());
  // An address it holds already takes no room of its own.
  small.on_bound(0, {"ping.test"}, ip("198.18.0.10"), 300 * kSecond);
  EXPECT_EQ(small.size(), 2u);
  EXPECT_TRUE(entry(kScopeA, "198.18.0.12").has_value());
}

TEST_F(BoundNameTableTest, WritesTheDataPlaneRefusesAreCounted) {
  BoundNameTable refusing([](const pc_bound_key&, const pc_bound_name*) { return false; });
  refusing.set_policy(compile(kPolicy), DnsBindings());
  refusing.on_bound(0, {"evil.test"}, ip("198.18.0.10"), kSecond);
  EXPECT_EQ(refusing.write_errors(), 1u);
}

}  // namespace
}  // namespace portcullis::punt
