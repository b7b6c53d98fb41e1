#include "replay/kernel_data_plane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/bpf_objects.h"
#include "dataplane/policy_map_writer.h"
#include "portcullis/punt.h"
#include "punt/monotonic_clock.h"

namespace portcullis::replay {
namespace {

// Deletes every entry of a hash map.
void clear_map(int fd, size_t key_size) {
  std::vector<uint8_t> next(key_size);
  while (bpf_map_get_next_key(fd, nullptr, next.data()) == 0) {
    if (bpf_map_delete_elem(fd, next.data()) != 0) break;
  }
}

class KernelDataPlane final : public ReplayDataPlane {
 public:
  explicit KernelDataPlane(dataplane::PolicyTables tables) : host_(tables.config.mode == PC_MODE_HOST) {
    // Test runs of the programs take device 1 of the current namespace as the packets' device: in a
    // namespace of our own, that is a loopback nothing listens on.
    if (::unshare(CLONE_NEWNET) != 0) {
      throw std::runtime_error(std::string("replay --kernel needs root (a network namespace of its own): ") +
                               std::strerror(errno));
    }
    dataplane::BpfObjectsOptions options;
    options.pin_dir = "/sys/fs/bpf/pc-replay-" + std::to_string(::getpid());
    options.min_rule_sets = dataplane::PolicyMapWriter::capacity_needed(tables.rule_sets.size());
    objects_ = dataplane::BpfObjects::load(options);
    dataplane::PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
    tables.config.generation = writer.current_generation() + 1;
    writer.write(tables);
    generation_ = tables.config.generation;
    ring_ = ring_buffer__new(objects_->punts_map(), &KernelDataPlane::on_punt, this, nullptr);
    if (ring_ == nullptr) throw std::runtime_error("cannot map the punt ring");
  }

  ~KernelDataPlane() override {
    ring_buffer__free(ring_);
    if (objects_) (void)objects_->unpin();
  }
  KernelDataPlane(const KernelDataPlane&) = delete;
  KernelDataPlane& operator=(const KernelDataPlane&) = delete;

  void reset() override {
    clear_map(objects_->flows_map(), sizeof(pc_flow_key));
    clear_map(objects_->bound_names_map(), sizeof(pc_bound_key));
    ring_buffer__consume(ring_);
  }

  // The kernel keeps its own clock: the heartbeat is its now, and flow times are the kernel's.
  void set_clock(uint64_t capture_ns) override {
    capture_ns_ = capture_ns;
    kernel_ns_ = punt::monotonic_ns();
    const pc_punt_config config{.heartbeat_ns = kernel_ns_,
                                .flow_hold_bytes = kReplayFlowHoldBytes,
                                .rate_per_sec = kReplayPuntRate,
                                .burst = kReplayPuntBurst,
                                .flags = 0};
    const uint32_t zero = 0;
    (void)bpf_map_update_elem(objects_->punt_config_map(), &zero, &config, BPF_ANY);
  }

  // Host mode polices the uplink's egress; gateway mode the inside interface's ingress.
  PlaneOutcome inside(std::span<const uint8_t> frame) override {
    return run(objects_->inside_program(), frame, /*ingress=*/!host_);
  }
  PlaneOutcome outside(std::span<const uint8_t> frame) override {
    return run(objects_->outside_program(), frame, /*ingress=*/true);
  }

  std::optional<pc_flow> flow(const pc_flow_key& key) override {
    pc_flow value{};
    if (bpf_map_lookup_elem(objects_->flows_map(), &key, &value) != 0) return std::nullopt;
    return value;
  }

  bool set_verdict(const pc_flow_key& key, uint8_t verdict, uint32_t rule_id, uint32_t reason) override {
    pc_flow value{};
    if (bpf_map_lookup_elem(objects_->flows_map(), &key, &value) != 0) return false;
    value.verdict = verdict;
    value.rule_id = rule_id;
    value.reason = reason;
    value.generation = generation_;
    value.held_bytes = 0;
    return bpf_map_update_elem(objects_->flows_map(), &key, &value, BPF_EXIST) == 0;
  }

  bool set_bound_name(const pc_bound_key& key, const pc_bound_name* name) override {
    if (name == nullptr) return bpf_map_delete_elem(objects_->bound_names_map(), &key) == 0 || errno == ENOENT;
    // The binding's end, from the capture's clock to the kernel's.
    pc_bound_name value = *name;
    value.expires_ns = kernel_ns_ + (name->expires_ns > capture_ns_ ? name->expires_ns - capture_ns_ : 0);
    return bpf_map_update_elem(objects_->bound_names_map(), &key, &value, BPF_ANY) == 0;
  }

 private:
  static int on_punt(void* context, void* /*data*/, size_t /*size*/) {
    static_cast<KernelDataPlane*>(context)->punts_ += 1;
    return 0;
  }

  PlaneOutcome run(int program, std::span<const uint8_t> frame, bool ingress) {
    // A test run takes at most a page less the skb's head and tail room. The programs read headers, and the
    // daemon side of replay reads what the flow shows from the capture itself: a longer frame goes in cut.
    // (The held-bytes bound then counts the cut length: only a flow at that bound could be decided
    // differently.)
    constexpr size_t kMaxTestRunFrame = 3584;
    if (frame.size() > kMaxTestRunFrame) frame = frame.first(kMaxTestRunFrame);
    std::vector<uint8_t> out(frame.size() + 256);
    __sk_buff context{};
    context.ifindex = 1;
    context.ingress_ifindex = ingress ? 1 : 0;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
                .data_size_in = static_cast<uint32_t>(frame.size()), .data_size_out = static_cast<uint32_t>(out.size()),
                .ctx_in = &context, .ctx_size_in = sizeof(context), .repeat = 1);
    if (bpf_prog_test_run_opts(program, &opts) != 0) {
      throw std::runtime_error(std::string("BPF_PROG_TEST_RUN: ") + std::strerror(errno));
    }
    punts_ = 0;
    ring_buffer__consume(ring_);
    PlaneOutcome outcome;
    outcome.punted = punts_ > 0;
    outcome.passed = opts.retval == TC_ACT_OK;
    return outcome;
  }

  bool host_;
  std::unique_ptr<dataplane::BpfObjects> objects_;
  ring_buffer* ring_ = nullptr;
  uint32_t generation_ = 0;
  size_t punts_ = 0;
  uint64_t capture_ns_ = 0;  // the capture's time of the packet running, and the kernel's then
  uint64_t kernel_ns_ = 0;
};

}  // namespace

std::unique_ptr<ReplayDataPlane> make_kernel_data_plane(dataplane::PolicyTables tables) {
  return std::make_unique<KernelDataPlane>(std::move(tables));
}

}  // namespace portcullis::replay
