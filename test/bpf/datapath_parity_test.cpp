// One data path, two builds: the same frames through the TC programs in the kernel (BPF_PROG_TEST_RUN) and
// through UserspaceDataPath, with the same policy tables, must get the same outcomes and leave the same flows.
// Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/bpf_objects.h"
#include "dataplane/counters.h"
#include "dataplane/policy_map_writer.h"
#include "dataplane/policy_tables.h"
#include "dataplane/userspace_data_path.h"
#include "policy/policy_loader.h"
#include "portcullis/flow.h"
#include "support/data_path_scenario.h"
#include "support/packet_builder.h"

namespace portcullis {
namespace {

using test::echo4;
using test::icmp_error_about;
using test::kDataPathPolicy;
using test::tcp4;
using test::tcp6;
using test::udp4;
using test::udp_fragment;

using test::Bytes;
using test::PacketBuilder;

constexpr uint32_t kTcActRedirect = 7;

struct Step {
  bool inside = true;
  Bytes frame;
  std::string reload;  // non-empty: load this policy (next generation) before the frame
};

std::vector<Step> steps() {
  const Bytes allowed = tcp4("10.88.1.2", "198.18.0.10", 40000, 8042);
  const Bytes closed = tcp4("10.88.1.2", "198.18.0.10", 40016, 9000);
  Bytes truncated = tcp4("10.88.1.2", "198.18.0.10", 40013, 80);
  truncated.resize(14 + 20 + 10);
  return {
      {true, allowed, ""},
      {false, tcp4("198.18.0.10", "10.88.1.2", 8042, 40000, test::kTcpSyn | test::kTcpAck), ""},
      {true, tcp4("10.88.1.2", "198.18.0.10", 40000, 8042, test::kTcpAck), ""},
      {true, tcp4("10.88.1.2", "198.18.0.10", 40001, 8080), ""},
      {true, tcp4("10.88.1.2", "198.18.0.10", 40001, 8080, test::kTcpAck), ""},
      {false, tcp4("198.18.0.10", "10.88.1.2", 8080, 40001, test::kTcpAck), ""},
      {true, udp4("10.88.1.2", "198.18.0.10", 40002, 9999), ""},
      {true, tcp6(40003, 81), ""},
      {true, tcp6(40005, 80), ""},
      {true, tcp4("10.88.1.2", "203.0.113.5", 40007, 443), ""},
      {true, tcp4("10.99.0.2", "198.18.0.10", 40008, 80), ""},
      {false, tcp4("198.18.0.10", "10.88.1.2", 5555, 22), ""},
      {true, echo4("10.88.1.2", "198.18.0.20", test::kIcmpEchoRequest), ""},
      {false, echo4("198.18.0.20", "10.88.1.2", test::kIcmpEchoReply), ""},
      {true, echo4("10.88.1.2", "198.18.1.20", test::kIcmpEchoRequest), ""},
      {false, icmp_error_about(allowed), ""},
      {false, icmp_error_about(tcp4("10.88.1.2", "198.18.0.10", 40011, 80)), ""},
      {true, udp_fragment(7, 0, true, 5353), ""},
      {true, udp_fragment(7, 5, false, 0), ""},
      {true, udp_fragment(8, 5, false, 0), ""},
      {true, udp_fragment(9, 0, true, 9999), ""},
      {true, udp_fragment(9, 5, false, 0), ""},
      {true, PacketBuilder().arp().frame(), ""},
      {true, truncated, ""},
      {true, closed, ""},
      {true, closed, test::data_path_policy_opened()},  // the reload opens it
      {true, tcp4("10.88.1.2", "198.18.0.10", 40001, 8080), ""},
  };
}

uint32_t kernel_retval_of(const dataplane::PacketOutcome& outcome) {
  switch (outcome.action) {
    case dataplane::kActionPass:
      return TC_ACT_OK;
    case dataplane::kActionReject:
      return kTcActRedirect;
    default:
      return static_cast<uint32_t>(TC_ACT_SHOT);
  }
}

class DataPathParity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
    dataplane::BpfObjectsOptions options;
    options.pin_dir = "/sys/fs/bpf/pc-parity-test-" + std::to_string(getpid());
    options.flow_table_entries = 4096;
    objects_ = dataplane::BpfObjects::load(options);
  }
  void TearDown() override {
    if (objects_) objects_->unpin();
  }

  // The same tables into the kernel's maps and into the userspace data path.
  void write_policy(const std::string& yaml, policy::Mode mode) {
    policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
    ASSERT_TRUE(loaded.policy.has_value());
    compiled_ = policy::compile_policy(std::move(*loaded.policy));
    dataplane::PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
    dataplane::PolicyTables tables = dataplane::build_policy_tables(*compiled_, mode, writer.current_generation() + 1);
    if (userspace_) {
      userspace_->load(tables);
    } else {
      userspace_ = std::make_unique<dataplane::UserspaceDataPath>(tables);
    }
    writer.write(tables);
  }

  uint32_t kernel_run(bool inside, const Bytes& frame) {
    Bytes out(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
                .data_size_in = static_cast<uint32_t>(frame.size()), .data_size_out = static_cast<uint32_t>(out.size()),
                .repeat = 1);
    const int program = inside ? objects_->inside_program() : objects_->outside_program();
    EXPECT_EQ(bpf_prog_test_run_opts(program, &opts), 0) << strerror(errno);
    return opts.retval;
  }

  uint64_t reject_unsupported() {
    return dataplane::CounterReader(objects_->counters_map()).read().at(PC_COUNTER_REJECT_UNSUPPORTED);
  }

  void run_and_compare(policy::Mode mode) {
    write_policy(kDataPathPolicy, mode);
    const std::vector<Step> all = steps();
    for (size_t i = 0; i < all.size(); i++) {
      const Step& step = all[i];
      if (!step.reload.empty()) write_policy(step.reload, mode);
      const dataplane::PacketOutcome expected =
          step.inside ? userspace_->inside(step.frame) : userspace_->outside(step.frame);
      const uint64_t unsupported_before = reject_unsupported();
      uint32_t retval = kernel_run(step.inside, step.frame);
      // A reject the kernel cannot build (a fragment, IPv4 options, a VLAN tag: reject.h) is a counted drop.
      if (expected.action == dataplane::kActionReject && retval == static_cast<uint32_t>(TC_ACT_SHOT) &&
          reject_unsupported() == unsupported_before + 1) {
        retval = kTcActRedirect;
      }
      EXPECT_EQ(retval, kernel_retval_of(expected))
          << "step " << i << ": userspace action " << int(expected.action) << " reason " << expected.reason;
    }
    compare_flows();
  }

  void compare_flows() {
    const int map = objects_->flows_map();
    size_t kernel_flows = 0;
    pc_flow_key key{};
    pc_flow_key next{};
    const pc_flow_key* previous = nullptr;
    while (bpf_map_get_next_key(map, previous, &next) == 0) {
      key = next;
      previous = &key;
      kernel_flows++;
      pc_flow kernel{};
      ASSERT_EQ(bpf_map_lookup_elem(map, &key, &kernel), 0);
      const pc_flow* mine = userspace_->flow(key);
      ASSERT_NE(mine, nullptr) << "a kernel flow userspace does not have, ports " << key.lo_port << "/" << key.hi_port;
      EXPECT_EQ(mine->verdict, kernel.verdict) << key.lo_port << "/" << key.hi_port;
      EXPECT_EQ(mine->rule_id, kernel.rule_id) << key.lo_port << "/" << key.hi_port;
      EXPECT_EQ(mine->reason, kernel.reason) << key.lo_port << "/" << key.hi_port;
      EXPECT_EQ(mine->scope, kernel.scope);
      EXPECT_EQ(mine->generation, kernel.generation);
      EXPECT_EQ(mine->initiator, kernel.initiator);
      for (int d = 0; d < 2; d++) {
        EXPECT_EQ(mine->packets[d], kernel.packets[d]) << key.lo_port << "/" << key.hi_port;
        EXPECT_EQ(mine->bytes[d], kernel.bytes[d]) << key.lo_port << "/" << key.hi_port;
        EXPECT_EQ(mine->tcp_flags[d], kernel.tcp_flags[d]) << key.lo_port << "/" << key.hi_port;
      }
    }
    EXPECT_EQ(kernel_flows, userspace_->flow_count());
  }

  std::unique_ptr<dataplane::BpfObjects> objects_;
  std::unique_ptr<dataplane::UserspaceDataPath> userspace_;
  std::shared_ptr<const policy::CompiledPolicy> compiled_;
};

TEST_F(DataPathParity, GatewayModeGivesTheSameOutcomesAndFlows) {
  run_and_compare(policy::Mode::gateway);
}

TEST_F(DataPathParity, HostModeGivesTheSameOutcomesAndFlows) {
  run_and_compare(policy::Mode::host);
}

}  // namespace
}  // namespace portcullis
