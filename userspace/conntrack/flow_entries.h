// The data plane's flow table read whole, in batches (BPF_MAP_LOOKUP_BATCH), and its entries changed one by one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "conntrack/flow_table.h"

namespace portcullis::conntrack {

// Every entry of the pc_flows map `flows_fd`. Throws std::runtime_error when the map cannot be read.
std::vector<FlowTable::Entry> read_flow_entries(int flows_fd);

// Deletes the entries of `keys` (gone already is no error). Returns how many went.
size_t delete_flow_entries(int flows_fd, const std::vector<pc_flow_key>& keys);

// Rewrites an existing entry's verdict, reason, rule and generation, keeping its counters. False when the entry
// is gone.
bool set_flow_verdict(int flows_fd, const pc_flow_key& key, uint8_t verdict, uint32_t reason, uint32_t rule_id,
                      uint32_t generation);

}  // namespace portcullis::conntrack
