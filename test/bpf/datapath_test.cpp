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
#include <optional>
#include <string>
#include <vector>

#include "dataplane/bpf_objects.h"
#include "dataplane/counters.h"
#include "dataplane/policy_map_writer.h"
#include "dataplane/policy_tables.h"
#include "policy/policy_loader.h"
#include "portcullis/bound_names.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/expect.h"
#include "portcullis/flow.h"
#include "portcullis/policy_maps.h"
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

  std::optional<pc_flow> find_flow(const pc_flow_key& key) {
    pc_flow flow{};
    if (bpf_map_lookup_elem(objects_->flows_map(), &key, &flow) != 0) return std::nullopt;
    return flow;
  }

  // A daemon that has just shown a sign of life: pending flows' frames are punted to it.
  void start_daemon_heartbeat() { write_daemon_heartbeat(monotonic_now_ns()); }
  void write_daemon_heartbeat(uint64_t heartbeat_ns) {
    const pc_punt_config config{
        .heartbeat_ns = heartbeat_ns, .flow_hold_bytes = 65536, .rate_per_sec = 100, .burst = 10};
    const uint32_t zero = 0;
    ASSERT_EQ(bpf_map_update_elem(objects_->punt_config_map(), &zero, &config, BPF_ANY), 0);
  }

  // The frames in the punt ring, each behind its pc_punt_header, taken out of it.
  std::vector<Bytes> take_punted_records() {
    std::vector<Bytes> records;
    auto collect = [](void* ctx, void* data, size_t size) {
      const auto* bytes = static_cast<const uint8_t*>(data);
      static_cast<std::vector<Bytes>*>(ctx)->emplace_back(bytes, bytes + size);
      return 0;
    };
    ring_buffer* ring = ring_buffer__new(objects_->punts_map(), collect, &records, nullptr);
    EXPECT_NE(ring, nullptr);
    if (ring == nullptr) return records;
    ring_buffer__consume(ring);
    ring_buffer__free(ring);
    return records;
  }

  static uint64_t monotonic_now_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(now.tv_nsec);
  }

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
  start_daemon_heartbeat();
  Bytes payload(1400);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  const Bytes hello = tcp4_data("10.88.1.2", "203.0.113.5", 40020, 443, payload);
  // Stolen: redirected to no device, which the kernel consumes (TCX would run TC_ACT_STOLEN as "next").
  EXPECT_EQ(run_with_mark(objects_->inside_program(), hello, 0, /*ingress=*/true).retval,
            static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 1u);

  const std::vector<Bytes> records = take_punted_records();
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

// FTP data connections (include/portcullis/expect.h). The sandbox client 10.88.1.2 holds a control connection
// to 198.18.0.21, allowed by the `ftp` rule; no rule opens any other port there, so a data connection passes
// only as its expectation or the daemon says.
constexpr const char* kFtpClient = "10.88.1.2";
constexpr const char* kFtpServer = "198.18.0.21";
constexpr uint16_t kControlClientPort = 40100;

std::string with_ftp_rule(std::string yaml) {
  return yaml.replace(yaml.find("rules:\n"), 7, "rules:\n  - {name: ftp, dst: 198.18.0.21, proto: ftp}\n");
}

union pc_addr ipv4_pc_addr(const char* text) {
  union pc_addr addr {};
  const test::Ipv4Address bytes = test::ipv4_address(text);
  std::memcpy(addr.bytes, bytes.data(), bytes.size());
  return addr;
}

// The key of a TCP connection `opener` makes to `dst`:`dport`, from any source port.
pc_expect_key expect_key(const char* opener, const char* dst, uint16_t dport) {
  pc_expect_key key{};
  key.src = ipv4_pc_addr(opener);
  key.dst = ipv4_pc_addr(dst);
  key.dport = dport;
  key.family = PC_FAMILY_IPV4;
  key.proto = test::kProtoTcp;
  return key;
}

pc_ftp_peer_key ftp_peer_key(const char* client, const char* server) {
  pc_ftp_peer_key key{};
  key.client = ipv4_pc_addr(client);
  key.server = ipv4_pc_addr(server);
  key.family = PC_FAMILY_IPV4;
  return key;
}

// An RST|ACK sent back in place of `frame`'s SYN: the refusal of on_deny: reject.
bool is_reset_for(const RunResult& r, const Bytes& frame) {
  constexpr size_t kTcpFlagsOffset = 14 + 20 + 13;
  return r.retval == static_cast<uint32_t>(kTcActRedirect) && r.out.size() > kTcpFlagsOffset && r.out != frame &&
         r.out[kTcpFlagsOffset] == (test::kTcpRst | test::kTcpAck);
}

class KernelFtpDataPath : public KernelDataPath {
 protected:
  void SetUp() override {
    KernelDataPath::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    write_policy(with_ftp_rule(kDataPathPolicy), policy::Mode::gateway);
    ASSERT_EQ(inside(tcp4(kFtpClient, kFtpServer, kControlClientPort, 21)).retval, static_cast<uint32_t>(TC_ACT_OK));
    const std::optional<pc_flow> control = find_flow(control_key_);
    ASSERT_TRUE(control.has_value());
    ASSERT_EQ(control->verdict, PC_VERDICT_ALLOW);
    ASSERT_EQ(rule_name(control->rule_id), "ftp");
    control_ = *control;
  }

  // What the daemon mirrors of the kernel's expectation: the control connection `master`'s rule and scope.
  void expect_connection(const pc_expect_key& key, const pc_flow_key& master, uint64_t expires_ns) {
    const pc_expect expect{
        .expires_ns = expires_ns, .master = master, .rule_id = control_.rule_id, .scope = control_.scope};
    ASSERT_EQ(bpf_map_update_elem(objects_->expects_map(), &key, &expect, BPF_NOEXIST), 0) << strerror(errno);
  }
  void expect_connection(const pc_expect_key& key) {
    expect_connection(key, control_key_, monotonic_now_ns() + 60'000'000'000);
  }

  bool expectation_present(const pc_expect_key& key) {
    pc_expect expect{};
    return bpf_map_lookup_elem(objects_->expects_map(), &key, &expect) == 0;
  }

  void record_ftp_peers(const char* client, const char* server, uint32_t control_flows) {
    const pc_ftp_peer_key key = ftp_peer_key(client, server);
    const pc_ftp_peer peer{.control_flows = control_flows, .pad = 0};
    ASSERT_EQ(bpf_map_update_elem(objects_->ftp_peers_map(), &key, &peer, BPF_ANY), 0) << strerror(errno);
  }

  const pc_flow_key control_key_ = flow_key(kFtpClient, kControlClientPort, kFtpServer, 21, test::kProtoTcp);
  pc_flow control_{};
};

TEST_F(KernelFtpDataPath, ExpectedPassiveDataConnectionIsAllowedOnceAsItsControlConnectionsRule) {
  const pc_expect_key key = expect_key(kFtpClient, kFtpServer, 50000);
  expect_connection(key);
  EXPECT_EQ(inside(tcp4(kFtpClient, kFtpServer, 40101, 50000)).retval, static_cast<uint32_t>(TC_ACT_OK));
  const std::optional<pc_flow> data = find_flow(flow_key(kFtpClient, 40101, kFtpServer, 50000, test::kProtoTcp));
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(data->verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(data->reason, static_cast<uint32_t>(PC_DROP_EXPECTED));
  EXPECT_EQ(rule_name(data->rule_id), "ftp");
  EXPECT_EQ(data->scope, control_.scope);
  EXPECT_FALSE(expectation_present(key));

  // The expectation is spent: another connection to the same port is what the policy says of it.
  const Bytes second = tcp4(kFtpClient, kFtpServer, 40102, 50000);
  EXPECT_TRUE(is_reset_for(inside(second), second));
  const std::optional<pc_flow> refused = find_flow(flow_key(kFtpClient, 40102, kFtpServer, 50000, test::kProtoTcp));
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->verdict, PC_VERDICT_DENY);
  EXPECT_EQ(refused->reason, static_cast<uint32_t>(PC_DROP_DENIED_BY_DEFAULT));
}

TEST_F(KernelFtpDataPath, ARulesDenyStandsOverAnExpectation) {
  std::string yaml = with_ftp_rule(kDataPathPolicy);
  yaml.replace(yaml.find("rules:\n"), 7,
               "rules:\n  - {name: no-50080, dst: 198.18.0.21, proto: tcp, ports: [50080], action: deny}\n");
  write_policy(yaml, policy::Mode::gateway);
  const pc_expect_key key = expect_key(kFtpClient, kFtpServer, 50080);
  expect_connection(key);
  const Bytes syn = tcp4(kFtpClient, kFtpServer, 40180, 50080);
  EXPECT_TRUE(is_reset_for(inside(syn), syn));
  const std::optional<pc_flow> refused = find_flow(flow_key(kFtpClient, 40180, kFtpServer, 50080, test::kProtoTcp));
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->reason, static_cast<uint32_t>(PC_DROP_DENIED_BY_RULE));
  EXPECT_EQ(rule_name(refused->rule_id), "no-50080");
  EXPECT_TRUE(expectation_present(key)) << "a deny by rule does not look at expectations";
}

TEST_F(KernelFtpDataPath, ExpiredExpectationAllowsNothingAndIsDeleted) {
  const pc_expect_key key = expect_key(kFtpClient, kFtpServer, 50010);
  // A second ago: the data plane reads the coarse clock, up to a tick behind CLOCK_MONOTONIC.
  expect_connection(key, control_key_, monotonic_now_ns() - 1'000'000'000);
  const Bytes syn = tcp4(kFtpClient, kFtpServer, 40110, 50010);
  EXPECT_TRUE(is_reset_for(inside(syn), syn));
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_DEFAULT), 1u);
  EXPECT_FALSE(expectation_present(key));
}

TEST_F(KernelFtpDataPath, ExpectationOfAControlConnectionNotInTheFlowTableAllowsNothingAndIsDeleted) {
  const pc_expect_key key = expect_key(kFtpClient, kFtpServer, 50020);
  expect_connection(key, flow_key(kFtpClient, 40119, kFtpServer, 21, test::kProtoTcp),
                    monotonic_now_ns() + 60'000'000'000);
  const Bytes syn = tcp4(kFtpClient, kFtpServer, 40120, 50020);
  EXPECT_TRUE(is_reset_for(inside(syn), syn));
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_DEFAULT), 1u);
  EXPECT_FALSE(expectation_present(key));
}

TEST_F(KernelFtpDataPath, ExpectationOfADeniedControlConnectionAllowsNothingAndIsDeleted) {
  // A control connection the policy refused (no rule opens port 2121).
  const Bytes denied_control = tcp4(kFtpClient, kFtpServer, 40129, 2121);
  ASSERT_TRUE(is_reset_for(inside(denied_control), denied_control));
  const pc_flow_key denied_key = flow_key(kFtpClient, 40129, kFtpServer, 2121, test::kProtoTcp);
  ASSERT_EQ(find_flow(denied_key).value_or(pc_flow{}).verdict, PC_VERDICT_DENY);

  const pc_expect_key key = expect_key(kFtpClient, kFtpServer, 50030);
  expect_connection(key, denied_key, monotonic_now_ns() + 60'000'000'000);
  const Bytes syn = tcp4(kFtpClient, kFtpServer, 40130, 50030);
  EXPECT_TRUE(is_reset_for(inside(syn), syn));
  EXPECT_EQ(counter(PC_DROP_DENIED_BY_DEFAULT), 2u);
  EXPECT_FALSE(expectation_present(key));
}

TEST_F(KernelFtpDataPath, SynBetweenFtpPeersWithoutAnExpectationIsPuntedWholeAndHeldPending) {
  start_daemon_heartbeat();
  record_ftp_peers(kFtpClient, kFtpServer, 1);
  const Bytes syn = tcp4(kFtpClient, kFtpServer, 40140, 50040);
  const pc_flow_key key = flow_key(kFtpClient, 40140, kFtpServer, 50040, test::kProtoTcp);

  // Stolen (a redirect to no device) with the frame as it came, not rewritten into a reset.
  RunResult r = inside(syn);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(r.out, syn);
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 1u);
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 0u);
  std::optional<pc_flow> flow = find_flow(key);
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(flow->reason, static_cast<uint32_t>(PC_DROP_AWAITS_EXPECTATION));
  EXPECT_EQ(flow->rule_id, PC_RULE_NONE);
  EXPECT_EQ(flow->held_bytes, syn.size());

  // Its retransmission is held behind it.
  r = inside(syn);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(r.out, syn);
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 2u);
  flow = find_flow(key);
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(flow->held_bytes, 2 * syn.size());

  const std::vector<Bytes> records = take_punted_records();
  ASSERT_EQ(records.size(), 2u);
  for (const Bytes& record : records) {
    ASSERT_GE(record.size(), sizeof(pc_punt_header));
    EXPECT_EQ(Bytes(record.begin() + sizeof(pc_punt_header), record.end()), syn);
  }
}

TEST_F(KernelFtpDataPath, SynBetweenHostsWithoutAnOpenFtpControlConnectionIsRefusedAsThePolicySays) {
  start_daemon_heartbeat();
  const Bytes syn = tcp4(kFtpClient, kFtpServer, 40150, 50050);
  EXPECT_TRUE(is_reset_for(inside(syn), syn));
  const std::optional<pc_flow> flow = find_flow(flow_key(kFtpClient, 40150, kFtpServer, 50050, test::kProtoTcp));
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->verdict, PC_VERDICT_DENY);
  EXPECT_EQ(flow->reason, static_cast<uint32_t>(PC_DROP_DENIED_BY_DEFAULT));

  // Peers whose control connections have all closed are no reason to hold either.
  record_ftp_peers(kFtpClient, kFtpServer, 0);
  const Bytes after_close = tcp4(kFtpClient, kFtpServer, 40151, 50050);
  EXPECT_TRUE(is_reset_for(inside(after_close), after_close));
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 0u);
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 2u);
}

TEST_F(KernelFtpDataPath, GatewayLetsInTheActiveDataConnectionItsExpectationAnnounced) {
  const pc_expect_key key = expect_key(kFtpServer, kFtpClient, 50060);
  expect_connection(key);
  EXPECT_EQ(outside(tcp4(kFtpServer, kFtpClient, 20, 50060)).retval, static_cast<uint32_t>(TC_ACT_OK));
  const pc_flow_key data_key = flow_key(kFtpServer, 20, kFtpClient, 50060, test::kProtoTcp);
  const std::optional<pc_flow> data = find_flow(data_key);
  ASSERT_TRUE(data.has_value());
  EXPECT_EQ(data->verdict, PC_VERDICT_ALLOW);
  EXPECT_EQ(data->reason, static_cast<uint32_t>(PC_DROP_EXPECTED));
  EXPECT_EQ(rule_name(data->rule_id), "ftp");
  EXPECT_NE(control_.scope, static_cast<uint32_t>(PC_SCOPE_TOP_LEVEL));
  EXPECT_EQ(data->scope, control_.scope);
  EXPECT_EQ(data->packets[data->initiator], 1u);
  EXPECT_FALSE(expectation_present(key));
  // The client's answer finds the flow.
  EXPECT_EQ(inside(tcp4(kFtpClient, kFtpServer, 50060, 20, test::kTcpSyn | test::kTcpAck)).retval,
            static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(find_flow(data_key).value_or(pc_flow{}).packets[1 - data->initiator], 1u);

  // Spent: the server's next connection to that port is unsolicited.
  EXPECT_EQ(outside(tcp4(kFtpServer, kFtpClient, 2020, 50060)).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_UNSOLICITED_INBOUND), 1u);
}

TEST_F(KernelFtpDataPath, GatewayDropsAnInboundSynNoExpectationAnnouncedAsUnsolicited) {
  // FTP peers, whichever way round, are no reason to let the server in (nor to hold its SYN): only an
  // expectation is.
  record_ftp_peers(kFtpClient, kFtpServer, 1);
  record_ftp_peers(kFtpServer, kFtpClient, 1);
  EXPECT_EQ(outside(tcp4(kFtpServer, kFtpClient, 20, 50070)).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_UNSOLICITED_INBOUND), 1u);
  EXPECT_FALSE(find_flow(flow_key(kFtpServer, 20, kFtpClient, 50070, test::kProtoTcp)).has_value());
}

// The one frame in the punt ring, behind its header.
struct PuntedFrame {
  pc_punt_header header{};
  Bytes frame;
};
std::optional<PuntedFrame> only_punted(const std::vector<Bytes>& records) {
  if (records.size() != 1 || records[0].size() < sizeof(pc_punt_header)) return std::nullopt;
  PuntedFrame punted;
  std::memcpy(&punted.header, records[0].data(), sizeof(punted.header));
  punted.frame.assign(records[0].begin() + sizeof(pc_punt_header), records[0].end());
  return punted;
}

// pc_bound_names (include/portcullis/bound_names.h): the default allows, and the daemon may have bound an
// address to a name a deny rule names.
constexpr const char* kAllowingPolicy = R"(version: 1
defaults: {action: allow}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)";

pc_bound_key bound_key(const char* address, uint32_t scope) {
  pc_bound_key key{};
  key.addr = ipv4_pc_addr(address);
  key.scope = scope;
  key.family = PC_FAMILY_IPV4;
  return key;
}

TEST_F(KernelDataPath, AnAllowedSynToAnAddressBoundToADeniedNameIsHeldPendingForTheDaemon) {
  write_policy(kAllowingPolicy, policy::Mode::gateway);
  start_daemon_heartbeat();
  // Bound to nothing yet: allowed outright.
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40400, 443)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(find_flow(flow_key("10.88.1.2", 40400, "198.18.0.10", 443, 6)).value_or(pc_flow{}).verdict,
            PC_VERDICT_ALLOW);

  const pc_bound_key key = bound_key("198.18.0.10", dataplane::group_scope(0));
  pc_bound_name bound{.expires_ns = monotonic_now_ns() + 60'000'000'000, .l4_mask = PC_L4_TCP, .pad = {}};
  ASSERT_EQ(bpf_map_update_elem(objects_->bound_names_map(), &key, &bound, BPF_ANY), 0) << strerror(errno);
  const Bytes syn = tcp4("10.88.1.2", "198.18.0.10", 40401, 443);
  // Stolen whole (a redirect to no device), not rewritten into a reset.
  const RunResult r = run_with_mark(objects_->inside_program(), syn, 0, /*ingress=*/true);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 1u);
  EXPECT_EQ(counter(PC_COUNTER_REJECT_SENT), 0u);
  const std::optional<pc_flow> flow = find_flow(flow_key("10.88.1.2", 40401, "198.18.0.10", 443, 6));
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->verdict, PC_VERDICT_PENDING);
  EXPECT_EQ(flow->reason, static_cast<uint32_t>(PC_DROP_BOUND_NAME));
  EXPECT_EQ(flow->rule_id, PC_RULE_NONE);
  EXPECT_EQ(flow->held_bytes, syn.size());
  const std::optional<PuntedFrame> punted = only_punted(take_punted_records());
  ASSERT_TRUE(punted.has_value());
  EXPECT_EQ(punted->header.path, PC_PUNT_INGRESS);
  EXPECT_EQ(punted->frame, syn);

  // A binding that has ended holds nothing back. (A second ago: the data plane reads the coarse clock.)
  bound.expires_ns = monotonic_now_ns() - 1'000'000'000;
  ASSERT_EQ(bpf_map_update_elem(objects_->bound_names_map(), &key, &bound, BPF_ANY), 0) << strerror(errno);
  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40402, 443)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(find_flow(flow_key("10.88.1.2", 40402, "198.18.0.10", 443, 6)).value_or(pc_flow{}).verdict,
            PC_VERDICT_ALLOW);
}

TEST_F(KernelDataPath, ABoundAddressHoldsOnlyItsScopesFlowsOfItsProtocols) {
  write_policy(kAllowingPolicy, policy::Mode::gateway);
  start_daemon_heartbeat();
  const pc_bound_name udp_only{.expires_ns = monotonic_now_ns() + 60'000'000'000, .l4_mask = PC_L4_UDP, .pad = {}};
  const pc_bound_key sandbox = bound_key("198.18.0.10", dataplane::group_scope(0));
  ASSERT_EQ(bpf_map_update_elem(objects_->bound_names_map(), &sandbox, &udp_only, BPF_ANY), 0) << strerror(errno);
  const pc_bound_name tcp{.expires_ns = monotonic_now_ns() + 60'000'000'000, .l4_mask = PC_L4_TCP, .pad = {}};
  const pc_bound_key top_level = bound_key("198.18.0.10", PC_SCOPE_TOP_LEVEL);
  ASSERT_EQ(bpf_map_update_elem(objects_->bound_names_map(), &top_level, &tcp, BPF_ANY), 0) << strerror(errno);

  EXPECT_EQ(inside(tcp4("10.88.1.2", "198.18.0.10", 40410, 443)).retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(find_flow(flow_key("10.88.1.2", 40410, "198.18.0.10", 443, 6)).value_or(pc_flow{}).verdict,
            PC_VERDICT_ALLOW);
  EXPECT_EQ(inside(udp4("10.88.1.2", "198.18.0.10", 40411, 443)).retval, static_cast<uint32_t>(kTcActRedirect));
  EXPECT_EQ(find_flow(flow_key("10.88.1.2", 40411, "198.18.0.10", 443, 17)).value_or(pc_flow{}).reason,
            static_cast<uint32_t>(PC_DROP_BOUND_NAME));
}

// The sandbox's resolver flow is allowed; its answers wait for the daemon.
constexpr const char* kResolverPolicy = R"(version: 1
defaults: {action: deny}
dns: {resolvers: [198.18.0.53], filter_queries: false}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)";

TEST_F(KernelDataPath, ADnsAnswerIsHeldForTheDaemonAndDroppedWithoutOne) {
  write_policy(kResolverPolicy, policy::Mode::gateway);
  ASSERT_EQ(inside(udp4("10.88.1.2", "198.18.0.53", 40420, 53)).retval, static_cast<uint32_t>(TC_ACT_OK));
  const Bytes answer = udp4("198.18.0.53", "10.88.1.2", 53, 40420);
  const int outside_program = objects_->outside_program();

  // No daemon has ever written its heartbeat: dropped, and the client asks again.
  EXPECT_EQ(run_with_mark(outside_program, answer, 0, /*ingress=*/true).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_NO_DAEMON), 1u);
  EXPECT_TRUE(take_punted_records().empty());

  // A live daemon: taken out of the path, whole, into the punt ring.
  start_daemon_heartbeat();
  EXPECT_EQ(run_with_mark(outside_program, answer, 0, /*ingress=*/true).retval, static_cast<uint32_t>(kTcActRedirect));
  std::optional<PuntedFrame> punted = only_punted(take_punted_records());
  ASSERT_TRUE(punted.has_value());
  EXPECT_EQ(punted->header.path, PC_PUNT_ANSWER);
  EXPECT_EQ(punted->header.ifindex, 1u);
  EXPECT_EQ(punted->frame, answer);
  // Taken leaving towards the client (a masquerading gateway's inside egress), it says so.
  EXPECT_EQ(run_with_mark(outside_program, answer, 0, /*ingress=*/false).retval, static_cast<uint32_t>(kTcActRedirect));
  punted = only_punted(take_punted_records());
  ASSERT_TRUE(punted.has_value());
  EXPECT_EQ(punted->header.path, PC_PUNT_ANSWER_EGRESS);
  EXPECT_EQ(counter(PC_COUNTER_PUNTED), 2u);
  // Released by the daemon, turned round into the outside interface's ingress: it goes on.
  EXPECT_EQ(run_with_mark(outside_program, answer, PC_REINJECT_MARK, /*ingress=*/true).retval,
            static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(counter(PC_COUNTER_REINJECTED), 1u);

  // A daemon whose heartbeat stopped is as good as none.
  write_daemon_heartbeat(monotonic_now_ns() - 3'000'000'000);
  EXPECT_EQ(run_with_mark(outside_program, answer, 0, /*ingress=*/true).retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(counter(PC_DROP_NO_DAEMON), 2u);
  EXPECT_TRUE(take_punted_records().empty());
}

}  // namespace
}  // namespace portcullis
