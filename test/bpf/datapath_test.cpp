// The data path in the kernel: the loaded TC and XDP programs run on packets built here
// (BPF_PROG_TEST_RUN), with the policy written into their maps the way `run` writes it. Needs root.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/bpf_objects.h"
#include "dataplane/counters.h"
#include "dataplane/policy_map_writer.h"
#include "dataplane/policy_tables.h"
#include "policy/policy_loader.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/flow.h"
#include "portcullis/punt.h"
#include "support/data_path_scenario.h"
#include "support/packet_builder.h"

namespace portcullis {
namespace {

using test::echo4;
using test::flow_key;
using test::icmp_error_about;
using test::kDataPathPolicy;
using test::tcp4;
using test::tcp4_data;
using test::udp4;
using test::udp_fragment;
using test::with_drop;

using test::Bytes;
using test::ipv6_address;
using test::PacketBuilder;

constexpr int kTcActRedirect = 7;

struct RunResult {
  uint32_t retval = 0;
  Bytes out;
};

class KernelDataPath : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
    dataplane::BpfObjectsOptions options;
    options.pin_dir = "/sys/fs/bpf/pc-datapath-test-" + std::to_string(getpid());
    options.flow_table_entries = 4096;
    objects_ = dataplane::BpfObjects::load(options);
    write_policy(kDataPathPolicy, policy::Mode::gateway);
  }

  void TearDown() override {
    if (objects_) objects_->unpin();
  }

  void write_policy(const std::string& yaml, policy::Mode mode) {
    policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
    ASSERT_TRUE(loaded.policy.has_value());
    compiled_ = policy::compile_policy(std::move(*loaded.policy));
    dataplane::PolicyMapWriter writer(objects_->policy_maps(), objects_->rule_set_capacity());
    writer.write(dataplane::build_policy_tables(*compiled_, mode, writer.current_generation() + 1));
  }

  RunResult run(int program, const Bytes& frame) {
    RunResult result;
    result.out.resize(frame.size() + 256);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = result.out.data(),
                .data_size_in = static_cast<uint32_t>(frame.size()),
                .data_size_out = static_cast<uint32_t>(result.out.size()), .repeat = 1);
    EXPECT_EQ(bpf_prog_test_run_opts(program, &opts), 0) << strerror(errno);
    result.retval = opts.retval;
    result.out.resize(opts.data_size_out);
    return result;
  }
  // With an skb context carrying `mark`, as a frame the daemon sends back with SO_MARK arrives.
  // `ingress`: the frame arrives on the device (ingress_ifindex == ifindex), else it is leaving it.
  RunResult run_with_mark(int program, const Bytes& frame, uint32_t mark, bool ingress = false) {
    RunResult result;
    result.out.resize(frame.size() + 256);
    __sk_buff context{};
    context.mark = mark;
    context.ifindex = 1;
    context.ingress_ifindex = ingress ? 1 : 0;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = result.out.data(),
                .data_size_in = static_cast<uint32_t>(frame.size()),
                .data_size_out = static_cast<uint32_t>(result.out.size()), .ctx_in = &context,
                .ctx_size_in = sizeof(context), .repeat = 1);
    EXPECT_EQ(bpf_prog_test_run_opts(program, &opts), 0) << strerror(errno);
    result.retval = opts.retval;
    return result;
  }
  RunResult inside(const Bytes& frame) { return run(objects_->inside_program(), frame); }
  RunResult outside(const Bytes& frame) { return run(objects_->outside_program(), frame); }
  RunResult xdp(const Bytes& frame) { return run(objects_->xdp_program(), frame); }

  uint64_t counter(uint32_t slot) { return dataplane::CounterReader(objects_->counters_map()).read().at(slot); }

  std::string rule_name(uint32_t rule_id) {
    return rule_id == PC_RULE_NONE ? "none" : compiled_->rules().at(rule_id).name;
  }

  std::unique_ptr<dataplane::BpfObjects> objects_;
  std::shared_ptr<const policy::CompiledPolicy> compiled_;
};

// The one's-complement sum a receiver checks: zero (0xffff folded) for a correct checksum.
uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}
uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
  return sum;
}
bool ipv4_checksums_ok(const Bytes& frame) {
  const uint8_t* ip = frame.data() + 14;
  if (fold(sum16(ip, 20)) != 0xffff) return false;
  const size_t l4_len = frame.size() - 34;
  uint32_t pseudo = sum16(ip + 12, 8) + ip[9] + static_cast<uint32_t>(l4_len);
  if (ip[9] == 1) pseudo = 0;  // ICMP has no pseudo-header
  return fold(sum16(ip + 20, l4_len, pseudo)) == 0xffff;
}
bool ipv6_checksum_ok(const Bytes& frame) {
  const uint8_t* ip = frame.data() + 14;
  const size_t l4_len = frame.size() - 54;
  const uint32_t pseudo = sum16(ip + 8, 32) + ip[6] + static_cast<uint32_t>(l4_len);
  return fold(sum16(ip + 40, l4_len, pseudo)) == 0xffff;
}

TEST_F(KernelDataPath, AllowedFlowPassesAndIsRecordedWithItsRule) {
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40000, 8042)).retval, static_cast<uint32_t>(TC_ACT_OK));
  pc_flow flow{};
  const pc_flow_key key = flow_key("10.88.1.2", 40000, "198.18.0.10", 8042, 6);
  ASSERT_EQ(bpf_map_lookup_elem(objects_->flows_map(), &key, &flow), 0);
  EXPECT_EQ(flow.verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(rule_name(flow.rule_id), "web");
  EXPECT_EQ(flow.packets[flow.initiator], 1u);
  EXPECT_EQ(flow.tcp_flags[flow.initiator], test::kTcpSyn);
  // The reply comes back through the outside program and counts in the other direction.
  EXPECT_EQ(outside(tcp4("198.18.0.10", "10.88.1.2", 8042, 40000, test::kTcpSyn | test::kTcpAck)).retval,
            static_cast<uint32_t>(TC_ACT_OK));
  ASSERT_EQ(bpf_map_lookup_elem(objects_->flows_map(), &key, &flow), 0);
  EXPECT_EQ(flow.packets[1 - flow.initiator], 1u);
}

TEST_F(KernelDataPath, DeniedTcpIsAnsweredWithAResetFromTheDestination) {
  const RunResult r = inside(tcp4("10.88.1.2", "198.18.0.10", 40001, 8080, test::kTcpSyn));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  ASSERT_EQ(r.out.size(), 54u);
  const uint8_t* ip = r.out.data() + 14;
  const uint8_t* tcp = ip + 20;
  EXPECT_EQ(Bytes(ip + 12, ip + 16), (Bytes{198, 18, 0, 10}));  // from the destination
  EXPECT_EQ(Bytes(ip + 16, ip + 20), (Bytes{10, 88, 1, 2}));
  EXPECT_EQ(tcp[0] << 8 | tcp[1], 8080);
  EXPECT_EQ(tcp[2] << 8 | tcp[3], 40001);
  EXPECT_EQ(tcp[13], test::kTcpRst | test::kTcpAck);
  EXPECT_EQ(static_cast<uint32_t>(tcp[8] << 24 | tcp[9] << 16 | tcp[10] << 8 | tcp[11]), 1001u);  // SYN + 1
  EXPECT_TRUE(ipv4_checksums_ok(r.out));
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_RULE), 1u);
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 1u);
}

TEST_F(KernelDataPath, DeniedUdpIsAnsweredWithAdministrativelyProhibited) {
  const Bytes frame = udp4("10.88.1.2", "198.18.0.10", 40002, 9999);
  const RunResult r = inside(frame);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  ASSERT_EQ(r.out.size(), 14u + 20 + 8 + 28);
  const uint8_t* icmp = r.out.data() + 34;
  EXPECT_EQ(icmp[0], 3);
  EXPECT_EQ(icmp[1], 13);
  // It quotes the refused datagram's IP header and first 8 bytes, so the client's socket finds it.
  EXPECT_EQ(Bytes(icmp + 8, icmp + 36), Bytes(frame.begin() + 14, frame.begin() + 42));
  EXPECT_TRUE(ipv4_checksums_ok(r.out));
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_DEFAULT), 1u);
}

TEST_F(KernelDataPath, IPv6DenialsAreAnsweredInIPv6) {
  const Bytes syn = PacketBuilder()
                        .ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("2001:db8::10")})
                        .tcp({.sport = 40003, .dport = 81, .flags = test::kTcpSyn})
                        .frame();
  RunResult r = inside(syn);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  ASSERT_EQ(r.out.size(), 14u + 40 + 20);
  EXPECT_EQ(r.out[54 + 13], test::kTcpRst | test::kTcpAck);
  EXPECT_TRUE(ipv6_checksum_ok(r.out));

  const Bytes datagram = PacketBuilder()
                             .ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("2001:db8::10")})
                             .udp({.sport = 40004, .dport = 9999, .payload = {1, 2, 3}})
                             .frame();
  r = inside(datagram);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  ASSERT_EQ(r.out.size(), 14u + 40 + 8 + 48);
  EXPECT_EQ(r.out[54], 1);  // destination unreachable
  EXPECT_EQ(r.out[55], 1);  // administratively prohibited
  EXPECT_TRUE(ipv6_checksum_ok(r.out));
  // The allowed IPv6 flow passes.
  EXPECT_EQ(inside(PacketBuilder()
                       .ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("2001:db8::10")})
                       .tcp({.sport = 40005, .dport = 80})
                       .frame())
                .retval,
            static_cast<uint32_t>(TC_ACT_OK));
}

TEST_F(KernelDataPath, DropModeIsSilent) {
  write_policy(with_drop(kDataPathPolicy), policy::Mode::gateway);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40006, 8080)).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 0u);
}

TEST_F(KernelDataPath, PendingFlowWithoutADaemonIsRejectedAtItsFirstData) {
  EXPECT_EQ(inside(tcp4("10.88.1.2", "203.0.113.5", 40007, 443)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(inside(tcp4_data("10.88.1.2", "203.0.113.5", 40007, 443, Bytes(200, 0x16))).retval,
            static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(counter(PC_DROP_NO_DAEMON), 1u);
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 1u);
  pc_flow flow{};
  const pc_flow_key key = flow_key("10.88.1.2", 40007, "203.0.113.5", 443, 6);
  ASSERT_EQ(bpf_map_lookup_elem(objects_->flows_map(), &key, &flow), 0);
  EXPECT_EQ(flow.verdict, PC_VERDICT_DENY);
  EXPECT_EQ(flow.reason, static_cast<uint32_t>(PC_DROP_NO_DAEMON));
}

TEST_F(KernelDataPath, PendingFlowsFirstDataIsPuntedWholeAndTakenOutOfThePath) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const pc_punt_config config{.heartbeat_ns = static_cast<uint64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec,
                              .flow_hold_bytes = 65536,
                              .rate_per_sec = 100,
                              .burst = 10};
  const uint32_t zero = 0;
  ASSERT_EQ(bpf_map_update_elem(objects_->punt_config_map(), &zero, &config, BPF_ANY), 0);
  Bytes payload(1400);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  const Bytes hello = tcp4_data("10.88.1.2", "203.0.113.5", 40020, 443, payload);
  // Stolen: redirected to no device, which the kernel consumes (TCX would run TC_ACT_STOLEN as "next").
  EXPECT_EQ(run_with_mark(objects_->inside_program(), hello, 0, /*ingress=*/true).retval,
            static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 1u);

  std::vector<Bytes> records;
  auto collect = [](void* ctx, void* data, size_t size) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    static_cast<std::vector<Bytes>*>(ctx)->emplace_back(bytes, bytes + size);
    return 0;
  };
  ring_buffer* ring = ring_buffer__new(objects_->punts_map(), collect, &records, nullptr);
  ASSERT_NE(ring, nullptr);
  ring_buffer__consume(ring);
  ring_buffer__free(ring);
  ASSERT_EQ(records.size(), 1u);
  ASSERT_GE(records[0].size(), sizeof(pc_punt_header));
  pc_punt_header header{};
  std::memcpy(&header, records[0].data(), sizeof(header));
  EXPECT_EQ(header.len, hello.size());
  EXPECT_EQ(header.ifindex, 1u);
  EXPECT_EQ(header.path, PC_PUNT_INGRESS);
  EXPECT_EQ(Bytes(records[0].begin() + sizeof(header), records[0].end()), hello);

  pc_flow flow{};
  const pc_flow_key key = flow_key("10.88.1.2", 40020, "203.0.113.5", 443, 6);
  ASSERT_EQ(bpf_map_lookup_elem(objects_->flows_map(), &key, &flow), 0);
  EXPECT_EQ(flow.verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(flow.held_bytes, hello.size());
  // A frame the daemon reinjects carries the mark and passes without meeting the classifier again.
  RunResult marked = run_with_mark(objects_->inside_program(), hello, PC_REINJECT_MARK);
  EXPECT_EQ(marked.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(counter(PC_COUNTER_REINJECTED), 1u);
  // On the inside interface's egress, reinjected frames turn round into its ingress; others pass.
  EXPECT_EQ(run_with_mark(objects_->reinject_program(), hello, PC_REINJECT_MARK).retval,
            static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(run_with_mark(objects_->reinject_program(), hello, 0).retval, static_cast<uint32_t>(TC_ACT_OK));
}

TEST_F(KernelDataPath, SpoofedSourcesAreDroppedWithoutAFlowEntry) {
  EXPECT_EQ(inside(tcp4("10.99.0.2", "198.18.0.10", 40008, 80)).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_SOURCE_NOT_IN_GROUP), 1u);
  pc_flow flow{};
  const pc_flow_key key = flow_key("10.99.0.2", 40008, "198.18.0.10", 80, 6);
  EXPECT_NE(bpf_map_lookup_elem(objects_->flows_map(), &key, &flow), 0);
}

TEST_F(KernelDataPath, GatewayDropsUnsolicitedInboundHostModeAdmitsIt) {
  const Bytes inbound = tcp4("198.18.0.10", "10.88.1.2", 5555, 22);
  EXPECT_EQ(outside(inbound).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_UNSOLICITED_INBOUND), 1u);
  write_policy(kDataPathPolicy, policy::Mode::host);
  EXPECT_EQ(outside(inbound).retval, static_cast<uint32_t>(TC_ACT_OK));
  // The host's answer to that connection finds the flow, though no rule allows it.
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 22, 5555, test::kTcpSyn | test::kTcpAck)).retval,
            static_cast<uint32_t>(TC_ACT_OK));
}

TEST_F(KernelDataPath, PingRequestAndReplyShareOneFlow) {
  EXPECT_EQ(inside(echo4("10.88.1.2", "198.18.0.20", test::kIcmpEchoRequest)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(outside(echo4("198.18.0.20", "10.88.1.2", test::kIcmpEchoReply)).retval, static_cast<uint32_t>(TC_ACT_OK));
  // Outside the ping rule's prefix the request is refused with an ICMP error.
  EXPECT_EQ(inside(echo4("10.88.1.2", "198.18.1.20", test::kIcmpEchoRequest)).retval,
            static_cast<uint32_t>(kTcActRedirect));
}

TEST_F(KernelDataPath, IcmpErrorsPassOnlyForAllowedFlows) {
  const Bytes allowed = tcp4("10.88.1.2", "198.18.0.10", 40010, 80);
  ASSERT_EQ(inside(allowed).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(outside(icmp_error_about(allowed)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(outside(icmp_error_about(tcp4("10.88.1.2", "198.18.0.10", 40011, 80))).retval,
            static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_ICMP_ERROR_NO_FLOW), 1u);
}

TEST_F(KernelDataPath, LaterFragmentsFollowTheirFirstFragment) {
  EXPECT_EQ(inside(udp_fragment(7, 0, true, 5353)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(inside(udp_fragment(7, 5, false, 0)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(inside(udp_fragment(8, 5, false, 0)).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_FRAGMENT_NO_FIRST), 1u);
}

TEST_F(KernelDataPath, ArpAndNeighbourDiscoveryPassWithoutRules) {
  EXPECT_EQ(inside(PacketBuilder().arp().frame()).retval, static_cast<uint32_t>(TC_ACT_OK));
  const Bytes solicitation =
      PacketBuilder()
          .ipv6({.src = ipv6_address("fd88:1::2"), .dst = ipv6_address("ff02::1:ff00:1"), .hop_limit = 255})
          .icmp({.type = test::kIcmpv6NeighborSolicitation, .body = Bytes(20, 0)})
          .frame();
  EXPECT_EQ(inside(solicitation).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(outside(solicitation).retval, static_cast<uint32_t>(TC_ACT_OK));
}

TEST_F(KernelDataPath, MalformedPacketsAreDroppedAndCountedByReason) {
  Bytes truncated = tcp4("10.88.1.2", "198.18.0.10", 40013, 80);
  truncated.resize(14 + 20 + 10);
  EXPECT_EQ(inside(truncated).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_GE(counter(PC_DROP_TCP_TRUNCATED) + counter(PC_DROP_IPV4_BAD_LENGTH), 1u);
}

TEST_F(KernelDataPath, XdpDropsFlowsAlreadyDeniedAndPassesTheRest) {
  const Bytes denied = tcp4("10.88.1.2", "198.18.0.10", 40014, 8080);
  EXPECT_EQ(xdp(denied).retval, static_cast<uint32_t>(XDP_PASS));  // unknown yet: TC decides
  inside(denied);
  EXPECT_EQ(xdp(denied).retval, static_cast<uint32_t>(XDP_DROP));
  EXPECT_EQ(counter(PC_DROP_FLOW_DENIED), 1u);
  const Bytes allowed = tcp4("10.88.1.2", "198.18.0.10", 40015, 80);
  inside(allowed);
  EXPECT_EQ(xdp(allowed).retval, static_cast<uint32_t>(XDP_PASS));
}

TEST_F(KernelDataPath, AReloadThatOpensADeniedFlowTakesEffectOnItsNextPacket) {
  const Bytes syn = tcp4("10.88.1.2", "198.18.0.10", 40016, 9000);
  EXPECT_EQ(inside(syn).retval, static_cast<uint32_t>(kTcActRedirect));
  write_policy(test::data_path_policy_opened(), policy::Mode::gateway);
  EXPECT_EQ(inside(syn).retval, static_cast<uint32_t>(TC_ACT_OK));
  pc_flow flow{};
  const pc_flow_key key = flow_key("10.88.1.2", 40016, "198.18.0.10", 9000, 6);
  ASSERT_EQ(bpf_map_lookup_elem(objects_->flows_map(), &key, &flow), 0);
  EXPECT_EQ(rule_name(flow.rule_id), "opened");
}

}  // namespace
}  // namespace portcullis
