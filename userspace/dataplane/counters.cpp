#include "dataplane/counters.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "portcullis/drop_reasons.h"
#include "portcullis/flow.h"

namespace portcullis::dataplane {

CounterReader::CounterReader(int counters_fd) : fd_(counters_fd), cpus_(libbpf_num_possible_cpus()) {
  if (cpus_ <= 0) throw std::runtime_error("cannot tell the number of possible CPUs");
}

std::vector<uint64_t> CounterReader::read() const {
  std::vector<uint64_t> totals(PC_COUNTER_MAX, 0);
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus_));
  for (uint32_t slot = 0; slot < PC_COUNTER_MAX; ++slot) {
    if (bpf_map_lookup_elem(fd_, &slot, per_cpu.data()) != 0) {
      throw std::runtime_error(std::string("cannot read pc_counters: ") + std::strerror(errno));
    }
    for (uint64_t value : per_cpu) totals[slot] += value;
  }
  return totals;
}

nlohmann::ordered_json counters_json(const std::vector<uint64_t>& counters) {
  const auto at = [&](size_t slot) { return slot < counters.size() ? counters[slot] : 0; };
  nlohmann::ordered_json out;
  out["passed"] = at(PC_COUNTER_PASS);
  out["new_flows"] = at(PC_COUNTER_NEW_FLOW);
  out["rejects_sent"] = at(PC_COUNTER_REJECT_SENT);
  out["rejects_unsupported"] = at(PC_COUNTER_REJECT_UNSUPPORTED);
  out["events_lost"] = at(PC_COUNTER_EVENT_LOST);
  out["punted"] = at(PC_COUNTER_PUNTED);
  out["reinjected"] = at(PC_COUNTER_REINJECTED);
  nlohmann::ordered_json drops = nlohmann::ordered_json::object();
  for (uint32_t reason = PC_DROP_NONE + 1; reason < PC_DROP_MAX; ++reason) {
    if (at(reason) == 0) continue;
    std::string name = pc_drop_reason_name(static_cast<pc_drop_reason>(reason));
    if (name == "unknown") name = "reason-" + std::to_string(reason);
    drops[name] = at(reason);
  }
  out["drops"] = std::move(drops);
  return out;
}

}  // namespace portcullis::dataplane
