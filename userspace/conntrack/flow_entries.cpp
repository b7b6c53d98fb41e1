#include "conntrack/flow_entries.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace portcullis::conntrack {

std::vector<FlowTable::Entry> read_flow_entries(int flows_fd) {
  // A batch must hold a whole hash bucket; 4096 entries is far above any bucket's length.
  constexpr uint32_t kBatch = 4096;
  std::vector<pc_flow_key> keys(kBatch);
  std::vector<pc_flow> values(kBatch);
  std::vector<FlowTable::Entry> entries;
  uint32_t position = 0;
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    const int result = bpf_map_lookup_batch(flows_fd, first ? nullptr : &position, &position, keys.data(),
                                            values.data(), &count, nullptr);
    const int error = result < 0 ? errno : 0;
    if (result < 0 && error != ENOENT) {
      throw std::runtime_error(std::string("cannot read the flow table: ") + std::strerror(error));
    }
    for (uint32_t i = 0; i < count; ++i) entries.emplace_back(keys[i], values[i]);
    if (error == ENOENT) return entries;  // the last batch
    first = false;
  }
}

size_t delete_flow_entries(int flows_fd, const std::vector<pc_flow_key>& keys) {
  size_t deleted = 0;
  for (const pc_flow_key& key : keys) {
    if (bpf_map_delete_elem(flows_fd, &key) == 0) ++deleted;
  }
  return deleted;
}

bool set_flow_verdict(int flows_fd, const pc_flow_key& key, uint8_t verdict, uint32_t reason, uint32_t rule_id,
                      uint32_t generation) {
  pc_flow value{};
  if (bpf_map_lookup_elem(flows_fd, &key, &value) != 0) return false;
  value.verdict = verdict;
  value.reason = reason;
  value.rule_id = rule_id;
  value.generation = generation;
  return bpf_map_update_elem(flows_fd, &key, &value, BPF_EXIST) == 0;
}

}  // namespace portcullis::conntrack
