// The filters on an interface's clsact hook, read over rtnetlink: libbpf can only ask about one
// (handle, priority), and `run` must see every filter there before it adds its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace portcullis::dataplane {

enum class TcDirection : uint8_t { ingress, egress };

struct TcFilter {
  uint32_t handle = 0;
  uint16_t priority = 0;
  std::string kind;          // "bpf" for BPF programs
  uint32_t bpf_prog_id = 0;  // kind "bpf": the program's id
};

// Every filter on the interface's clsact hook in that direction; empty when it has no clsact qdisc.
// Throws std::runtime_error when the kernel cannot be asked.
std::vector<TcFilter> list_tc_filters(int ifindex, TcDirection direction);

}  // namespace portcullis::dataplane
