// BpfObjects and PolicyMapWriter against real maps (root, bpffs): first writes, reloads that remove
// prefixes, sources and groups, the two halves of the rule set array, and a restarted daemon adopting pinned
// maps. Each test pins under a directory of its own and removes it.
#include "dataplane/policy_map_writer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "dataplane/bpf_objects.h"
#include "dataplane/policy_tables.h"
#include "policy/policy_loader.h"

namespace portcullis::dataplane {
namespace {

std::shared_ptr<const policy::CompiledPolicy> compile(const std::string& yaml) {
  policy::LoadResult result = policy::load_policy(yaml, "test.yaml");
  if (!result.policy) {
    for (const auto& d : result.diagnostics) ADD_FAILURE() << policy::format_diagnostic("test.yaml", d);
    return nullptr;
  }
  return policy::compile_policy(std::move(*result.policy));
}

const char* const kBefore = R"(version: 1
defaults: {action: deny}
rules:
  - {name: a, dst: 198.18.0.0/24, proto: tcp, ports: [80]}
  - {name: b, dst: 198.18.1.0/24, proto: tcp, ports: [81]}
  - {name: c, dst: "2001:db8::/64", proto: icmp}
groups:
  - {name: one, sources: [10.88.1.0/24], rules: [{name: one-web, dst: one.test, proto: https}]}
  - {name: two, sources: [10.88.2.0/24, "fd88:2::/64"], rules: [{name: two-web, dst: two.test, proto: https}]}
)";

const char* const kAfter = R"(version: 1
defaults: {action: deny}
rules:
  - {name: a, dst: 198.18.0.0/24, proto: tcp, ports: [80, 443]}
groups:
  - {name: one, sources: [10.88.1.0/24], rules: [{name: one-web, dst: one.test, proto: https}]}
)";

template <typename Key>
std::set<std::string> keys_of(int fd) {
  std::set<std::string> keys;
  Key key{};
  Key next{};
  const void* previous = nullptr;
  while (bpf_map_get_next_key(fd, previous, &next) == 0) {
    keys.insert(std::string(reinterpret_cast<const char*>(&next), sizeof(next)));
    key = next;
    previous = &key;
  }
  return keys;
}

template <typename Key>
std::set<std::string> keys_of(const std::vector<std::pair<Key, uint32_t>>& entries) {
  std::set<std::string> keys;
  for (const auto& entry : entries) keys.insert(std::string(reinterpret_cast<const char*>(&entry.first), sizeof(Key)));
  return keys;
}

class PolicyMapWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF objects needs root";
    options_.pin_dir = "/sys/fs/bpf/pc-writer-test-" + std::to_string(getpid());
    options_.flow_table_entries = 4096;
    objects_ = BpfObjects::load(options_);
  }

  void TearDown() override {
    if (objects_) EXPECT_EQ(objects_->unpin(), "");
  }

  PolicyTables write(const std::string& yaml) {
    const auto compiled = compile(yaml);
    PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
    PolicyTables tables = build_policy_tables(*compiled, policy::Mode::gateway, writer.current_generation() + 1);
    writer.write(tables);
    return tables;
  }

  uint32_t dst4_value(const char* addr, uint32_t scope = 0) {
    pc_dst4_key key{};
    key.prefixlen = 64;
    key.scope = htonl(scope);
    inet_pton(AF_INET, addr, key.addr);
    uint32_t value = 0;
    EXPECT_EQ(bpf_map_lookup_elem(objects_->policy_maps().dst4, &key, &value), 0) << addr;
    return value;
  }

  pc_rule_set rule_set(uint32_t id) {
    pc_rule_set set{};
    EXPECT_EQ(bpf_map_lookup_elem(objects_->policy_maps().rule_sets, &id, &set), 0);
    return set;
  }

  BpfObjectsOptions options_;
  std::unique_ptr<BpfObjects> objects_;
};

TEST_F(PolicyMapWriterTest, FirstWriteFillsTheMapsAsGenerationOne) {
  const PolicyTables tables = write(kBefore);
  PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
  EXPECT_EQ(writer.current_generation(), 1u);
  EXPECT_FALSE(objects_->adopted());
  const PolicyMapFds maps = objects_->policy_maps();
  EXPECT_EQ(keys_of<pc_dst4_key>(maps.dst4), keys_of(tables.dst4));
  EXPECT_EQ(keys_of<pc_dst6_key>(maps.dst6), keys_of(tables.dst6));
  EXPECT_EQ(keys_of<pc_src4_key>(maps.src4), keys_of(tables.src4));
  EXPECT_EQ(keys_of<pc_src6_key>(maps.src6), keys_of(tables.src6));
  const pc_rule_set set = rule_set(dst4_value("198.18.1.7"));
  ASSERT_EQ(set.count, 1u);
  EXPECT_EQ(set.entries[0].lo, 81);
}

TEST_F(PolicyMapWriterTest, ReloadDeletesPrefixesSourcesAndGroupsTheNewPolicyLacks) {
  write(kBefore);
  const PolicyTables after = write(kAfter);
  const PolicyMapFds maps = objects_->policy_maps();
  EXPECT_EQ(keys_of<pc_dst4_key>(maps.dst4), keys_of(after.dst4));
  EXPECT_TRUE(keys_of<pc_dst6_key>(maps.dst6).empty());
  EXPECT_EQ(keys_of<pc_src4_key>(maps.src4), keys_of(after.src4));
  EXPECT_TRUE(keys_of<pc_src6_key>(maps.src6).empty());
  const uint32_t removed_group_scope = 2;
  pc_scope scope{};
  ASSERT_EQ(bpf_map_lookup_elem(maps.scopes, &removed_group_scope, &scope), 0);
  EXPECT_EQ(scope.name_rule_set, static_cast<uint32_t>(PC_RULE_SET_EMPTY));
  const pc_rule_set set = rule_set(dst4_value("198.18.0.1"));
  ASSERT_EQ(set.count, 2u);
  EXPECT_EQ(set.entries[1].lo, 443);
}

TEST_F(PolicyMapWriterTest, EachGenerationWritesTheHalfThePreviousOneDoesNotRead) {
  write(kBefore);
  const uint32_t first = dst4_value("198.18.0.1");
  const pc_rule_set first_set = rule_set(first);
  write(kAfter);
  const uint32_t second = dst4_value("198.18.0.1");
  const uint32_t half = objects_->rule_set_capacity() / 2;
  EXPECT_NE(first < half, second < half);
  // What the first generation's packets may still be reading is untouched.
  const pc_rule_set first_set_now = rule_set(first);
  EXPECT_EQ(std::memcmp(&first_set, &first_set_now, sizeof(pc_rule_set)), 0);
}

TEST_F(PolicyMapWriterTest, WritingTheSameGenerationTwiceIsABug) {
  const PolicyTables tables = write(kBefore);
  PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
  EXPECT_THROW(writer.write(tables), std::logic_error);
}

TEST_F(PolicyMapWriterTest, APolicyTooLargeForHalfTheRuleSetArrayIsRefused) {
  const auto compiled = compile(kBefore);
  PolicyMapWriter writer(objects_->policy_maps(), 4);
  EXPECT_THROW(writer.write(build_policy_tables(*compiled, policy::Mode::gateway, 1)), std::runtime_error);
}

TEST_F(PolicyMapWriterTest, ARestartedDaemonAdoptsThePinnedMapsWithTheirSizeAndGeneration) {
  write(kBefore);
  objects_.reset();  // the daemon dies: nothing is unpinned
  options_.flow_table_entries = 8192;
  objects_ = BpfObjects::load(options_);
  EXPECT_TRUE(objects_->adopted());
  EXPECT_EQ(objects_->flow_table_capacity(), 4096u);
  PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
  EXPECT_EQ(writer.current_generation(), 1u);
  EXPECT_EQ(rule_set(dst4_value("198.18.1.7")).entries[0].lo, 81);
}

TEST_F(PolicyMapWriterTest, OnePinDirectoryServesOneDaemonAtATime) {
  try {
    BpfObjects::load(options_);
    ADD_FAILURE() << "a second load of the same pin directory succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another portcullis is running"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::exists(options_.pin_dir + "/pc_flows")) << "the refused load must not unpin";
}

TEST(BpfObjectsTest, APinDirectoryOutsideBpffsIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "loading BPF objects needs root";
  BpfObjectsOptions options;
  options.pin_dir = "/tmp/pc-not-bpffs-" + std::to_string(getpid());
  EXPECT_THROW(BpfObjects::load(options), std::runtime_error);
  ::rmdir(options.pin_dir.c_str());
}

}  // namespace
}  // namespace portcullis::dataplane
