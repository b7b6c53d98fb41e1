// The data plane's per-CPU packet counters (pc_counters: one slot per drop reason, then the slots of
// enum pc_counter_slot in flow.h), summed over CPUs.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace portcullis::dataplane {

class CounterReader {
 public:
  explicit CounterReader(int counters_fd);

  // Index = slot. Throws std::runtime_error when the map cannot be read.
  std::vector<uint64_t> read() const;

 private:
  int fd_;
  int cpus_;
};

// {"passed":N,"new_flows":N,"rejects_sent":N,"rejects_unsupported":N,"events_lost":N,"drops":{"REASON":N,...}},
// drops by the names of drop_reasons.h, only those that happened.
nlohmann::ordered_json counters_json(const std::vector<uint64_t>& counters);

}  // namespace portcullis::dataplane
