// The data plane's two BPF objects (tc/portcullis_tc.bpf.c, xdp/portcullis_xdp.bpf.c), loaded with every map
// pinned by name under one directory on bpffs: both objects share the maps, and a daemon that starts while
// the pins exist (its predecessor was killed) adopts them with the policy and the flows they hold.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct bpf_map;
struct bpf_object;
struct bpf_program;

namespace portcullis::dataplane {

struct BpfObjectsOptions {
  std::string pin_dir = "/sys/fs/bpf/portcullis";
  // Sizes for maps this load creates; maps adopted from the pin directory keep the size they were made with.
  uint32_t flow_table_entries = 0;  // 0: the default of maps.h
  uint32_t min_rule_sets = 0;       // the rule set array grows to at least this many entries
};

// The file descriptors of the policy maps (include/portcullis/policy_maps.h).
struct PolicyMapFds {
  int rule_sets = -1;
  int dst4 = -1;
  int dst6 = -1;
  int src4 = -1;
  int src6 = -1;
  int scopes = -1;
  int config = -1;
};

class BpfObjects {
 public:
  // Mounts bpffs at /sys/fs/bpf when nothing is mounted there, creates the pin directory and locks it (one
  // daemon per directory, for as long as the objects live), opens and loads both objects. Throws std::runtime_error
  // saying what failed; a verifier rejection carries the log's tail.
  static std::unique_ptr<BpfObjects> load(const BpfObjectsOptions& options);
  ~BpfObjects();
  BpfObjects(const BpfObjects&) = delete;
  BpfObjects& operator=(const BpfObjects&) = delete;

  // The maps were pinned before this load (a previous daemon's), not created by it.
  bool adopted() const { return adopted_; }
  const std::string& pin_dir() const { return pin_dir_; }
  // Something the operator should know about the load (pins that cannot outlive this process), or empty.
  const std::string& warning() const { return warning_; }

  int inside_program() const;    // TC: packets leaving the protected side
  int outside_program() const;   // TC: packets arriving from outside
  int xdp_program() const;       // XDP: early drop on the inside interfaces
  int reinject_program() const;  // TC, gateway inside egress: turns reinjected frames into ingress

  PolicyMapFds policy_maps() const;
  int events_map() const;
  int counters_map() const;
  int flows_map() const;
  int bound_names_map() const;
  int punts_map() const;        // ring of punted frames (include/portcullis/punt.h)
  int punt_config_map() const;  // heartbeat and hold bounds the daemon writes
  int expects_map() const;      // FTP data connections the kernel's helper expects (include/portcullis/expect.h)
  int ftp_peers_map() const;    // clients and servers with an FTP control connection between them
  uint32_t rule_set_capacity() const;
  uint32_t flow_table_capacity() const;
  // Kernel ids of the shared maps: a program that uses one of them is one of ours.
  std::vector<uint32_t> map_ids() const;

  // Removes every pin and the pin directory (when nothing else is left in it). The maps live on while a
  // program or a descriptor holds them. Returns the problems, one per line, empty on success.
  std::string unpin();

 private:
  BpfObjects() = default;
  void load_programs(const BpfObjectsOptions& options);
  bpf_map* map(const char* name) const;

  bpf_object* tc_ = nullptr;   // tc/portcullis_tc.bpf.c: owns the maps' descriptors
  bpf_object* xdp_ = nullptr;  // xdp/portcullis_xdp.bpf.c
  bpf_program* inside_ = nullptr;
  bpf_program* outside_ = nullptr;
  bpf_program* reinject_ = nullptr;
  bpf_program* xdp_program_ = nullptr;
  std::string pin_dir_;
  std::string warning_;
  int lock_fd_ = -1;
  bool adopted_ = false;
};

}  // namespace portcullis::dataplane
