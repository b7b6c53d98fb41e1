#include "dataplane/policy_map_writer.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <unordered_set>
#include <vector>

namespace portcullis::dataplane {
namespace {

template <typename T>
std::string bytes_of(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof(value));
}

void update(int fd, const void* key, const void* value, const char* map) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) != 0) {
    throw std::runtime_error(std::string("cannot write to ") + map + ": " + std::strerror(errno));
  }
}

// Writes every (key, value) of `entries`, values translated by `value_of`.
template <typename Key, typename ValueOf>
void write_prefixes(int fd, const std::vector<std::pair<Key, uint32_t>>& entries, ValueOf value_of, const char* map) {
  for (const auto& [key, value] : entries) {
    const uint32_t stored = value_of(value);
    update(fd, &key, &stored, map);
  }
}

// Deletes the keys of an LPM map that `entries` does not hold.
template <typename Key>
void delete_stale(int fd, const std::vector<std::pair<Key, uint32_t>>& entries, const char* map) {
  std::unordered_set<std::string> wanted;
  for (const auto& entry : entries) wanted.insert(bytes_of(entry.first));
  std::vector<Key> stale;
  Key key{};
  Key next{};
  const void* previous = nullptr;
  while (bpf_map_get_next_key(fd, previous, &next) == 0) {
    if (!wanted.contains(bytes_of(next))) stale.push_back(next);
    key = next;
    previous = &key;
  }
  for (const Key& old : stale) {
    if (bpf_map_delete_elem(fd, &old) != 0 && errno != ENOENT) {
      throw std::runtime_error(std::string("cannot delete from ") + map + ": " + std::strerror(errno));
    }
  }
}

}  // namespace

PolicyMapWriter::PolicyMapWriter(PolicyMapFds maps, uint32_t rule_set_capacity)
    : maps_(maps), rule_set_capacity_(rule_set_capacity) {}

uint32_t PolicyMapWriter::current_generation() const {
  const uint32_t zero = 0;
  pc_policy_config config{};
  if (bpf_map_lookup_elem(maps_.config, &zero, &config) != 0) {
    throw std::runtime_error(std::string("cannot read pc_config: ") + std::strerror(errno));
  }
  return config.generation;
}

uint32_t PolicyMapWriter::capacity_needed(size_t rule_sets) {
  return static_cast<uint32_t>(2 * rule_sets);
}

// Rule set 0 is the empty set for every generation; the others live in the generation's half.
uint32_t PolicyMapWriter::translate(uint32_t rule_set, uint32_t generation) const {
  if (rule_set == PC_RULE_SET_EMPTY) return PC_RULE_SET_EMPTY;
  return (generation % 2 == 0 ? 0 : rule_set_capacity_ / 2) + rule_set;
}

void PolicyMapWriter::write(const PolicyTables& tables) {
  const uint32_t generation = tables.config.generation;
  if (generation == current_generation()) {
    throw std::logic_error("a policy write must bump the generation");
  }
  if (tables.rule_sets.size() > rule_set_capacity_ / 2) {
    throw std::runtime_error("the policy needs " + std::to_string(tables.rule_sets.size()) +
                             " rule sets and pc_rule_sets holds " + std::to_string(rule_set_capacity_ / 2) +
                             " per generation; restart portcullis (SIGTERM, then run) to resize it");
  }
  if (tables.scopes.size() > PC_MAX_SCOPES) {
    throw std::runtime_error("the policy has " + std::to_string(tables.scopes.size() - 1) + " groups; at most " +
                             std::to_string(PC_MAX_SCOPES - 1) + " are supported");
  }

  for (uint32_t id = 0; id < tables.rule_sets.size(); ++id) {
    const uint32_t slot = translate(id, generation);
    update(maps_.rule_sets, &slot, &tables.rule_sets[id], "pc_rule_sets");
  }
  const auto translated = [&](uint32_t rule_set) { return translate(rule_set, generation); };
  const auto as_is = [](uint32_t scope) { return scope; };
  write_prefixes(maps_.dst4, tables.dst4, translated, "pc_dst4");
  write_prefixes(maps_.dst6, tables.dst6, translated, "pc_dst6");
  write_prefixes(maps_.src4, tables.src4, as_is, "pc_src4");
  write_prefixes(maps_.src6, tables.src6, as_is, "pc_src6");

  for (uint32_t scope = 0; scope < PC_MAX_SCOPES; ++scope) {
    pc_scope value{};
    if (scope < tables.scopes.size()) {
      value = tables.scopes[scope];
      value.name_rule_set = translate(value.name_rule_set, generation);
    } else {
      // Scopes of groups the policy no longer has: empty unless a previous policy filled them.
      pc_scope old{};
      if (bpf_map_lookup_elem(maps_.scopes, &scope, &old) == 0 && old.name_rule_set == PC_RULE_SET_EMPTY) continue;
    }
    update(maps_.scopes, &scope, &value, "pc_scopes");
  }

  const uint32_t zero = 0;
  update(maps_.config, &zero, &tables.config, "pc_config");

  delete_stale(maps_.dst4, tables.dst4, "pc_dst4");
  delete_stale(maps_.dst6, tables.dst6, "pc_dst6");
  delete_stale(maps_.src4, tables.src4, "pc_src4");
  delete_stale(maps_.src6, tables.src6, "pc_src6");
}

}  // namespace portcullis::dataplane
