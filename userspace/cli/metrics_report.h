// What `run --metrics` serves at /metrics, in the Prometheus text format: the data plane's counters, verdicts by
// rule, reason and protocol, punt and hold, the flow table, DNS bindings and the parsers' outcomes.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "conntrack/flow_table.h"
#include "punt/punt_handler.h"

namespace portcullis::cli {

// Verdicts logged, by verdict, rule (empty for none), reason and proto.
using VerdictCounts = std::map<std::tuple<std::string, std::string, std::string, std::string>, uint64_t>;

struct MetricsSnapshot {
  std::vector<uint64_t> counters;  // the data plane's, by slot (dataplane::CounterReader)
  punt::PuntStats punts;
  VerdictCounts verdicts;
  std::array<size_t, conntrack::kFlowStates> flows_by_state{};
  uint64_t flow_table_capacity = 0;
  uint64_t flows_expired = 0;
  uint64_t flows_revoked = 0;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  uint32_t generation = 0;
  // FTP: expectations mirrored into the data plane or refused, held connections resolved or not.
  uint64_t ftp_mirrored = 0;
  uint64_t ftp_refused = 0;
  uint64_t ftp_resolved = 0;
  uint64_t ftp_unresolved = 0;
};

std::string render_metrics(const MetricsSnapshot& snapshot);

}  // namespace portcullis::cli
