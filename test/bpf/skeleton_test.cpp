// Loads the BPF objects the build produced through their generated skeletons and runs them in the kernel
// with BPF_PROG_TEST_RUN: proves the clang -> bpftool -> libbpf pipeline end to end. Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <array>
#include <vector>

#include "portcullis/counters.h"
#include "portcullis_tc.skel.h"
#include "portcullis_xdp.skel.h"

namespace {

// A minimal Ethernet + IPv4 + UDP frame; the placeholder programs only count it.
std::array<uint8_t, 64> test_frame() {
  std::array<uint8_t, 64> frame{};
  frame[12] = 0x08;  // EtherType IPv4
  frame[14] = 0x45;
  frame[23] = 17;  // UDP
  return frame;
}

uint64_t sum_packets(int map_fd, uint32_t key) {
  const int cpus = libbpf_num_possible_cpus();
  std::vector<pc_counter> values(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(map_fd, &key, values.data()) != 0) return 0;
  uint64_t total = 0;
  for (const pc_counter& value : values) total += value.packets;
  return total;
}

class BpfSkeleton : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
  }
};

TEST_F(BpfSkeleton, XdpProgramLoadsRunsAndCounts) {
  portcullis_xdp* skel = portcullis_xdp::open_and_load();
  ASSERT_NE(skel, nullptr) << "open_and_load failed: " << errno;
  std::array<uint8_t, 64> frame = test_frame();
  LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame.data(), .data_size_in = frame.size(), .repeat = 3);
  ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.portcullis_xdp), &run), 0);
  EXPECT_EQ(run.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(sum_packets(bpf_map__fd(skel->maps.counters), PC_COUNTER_XDP_SEEN), 3u);
  portcullis_xdp::destroy(skel);
}

TEST_F(BpfSkeleton, TcProgramLoadsRunsAndCounts) {
  portcullis_tc* skel = portcullis_tc::open_and_load();
  ASSERT_NE(skel, nullptr) << "open_and_load failed: " << errno;
  std::array<uint8_t, 64> frame = test_frame();
  LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame.data(), .data_size_in = frame.size(), .repeat = 1);
  ASSERT_EQ(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.portcullis_tc), &run), 0);
  EXPECT_EQ(run.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(sum_packets(bpf_map__fd(skel->maps.counters), PC_COUNTER_TC_SEEN), 1u);
  portcullis_tc::destroy(skel);
}

}  // namespace
