// The data path's cost per packet in the kernel, measured by BPF_PROG_TEST_RUN (the kernel's own clock
// around the program, no syscall in it): an established flow's packet, and a new flow's first packet
// classified against 10k and 100k CIDR rules, IPv4 and IPv6. Needs root.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "bench_data_path.h"

namespace {

using namespace portcullis;
using test::Bytes;
using test::PacketBuilder;

std::string cidr_policy(int rules) {
  std::string yaml = "version: 1\ndefaults: {action: deny, on_deny: drop}\nrules:\n";
  for (int i = 0; i < rules; ++i) {
    if (i % 2 == 0) {
      yaml += "  - {dst: \"10." + std::to_string((i >> 16) & 0xff) + "." + std::to_string((i >> 8) & 0xff) + "." +
              std::to_string(i & 0xff) + "/32\", proto: tcp, ports: [443, 8443]}\n";
    } else {
      yaml += "  - {dst: \"2001:db8:" + std::to_string(i % 10000) + ":" + std::to_string(i / 10000) +
              "::/64\", proto: tcp, ports: [443, 8443]}\n";
    }
  }
  yaml += "  - {dst: 198.18.0.0/16, proto: tcp, ports: [\"1-65535\"]}\n";
  yaml += "  - {dst: \"2001:db9::/32\", proto: tcp, ports: [\"1-65535\"]}\n";
  return yaml;
}

// The data path with the CIDR policy of `rules` rules, in host mode. Its pins go when it is destroyed (the
// function statics below, at exit) or when a signal stops the benchmark (bench_data_path.h).
class LoadedDataPath : public bench::BenchDataPath {
 public:
  explicit LoadedDataPath(int rules) : bench::BenchDataPath(options(rules), cidr_policy(rules), policy::Mode::host) {}

 private:
  static dataplane::BpfObjectsOptions options(int rules) {
    dataplane::BpfObjectsOptions options;
    options.pin_dir = "/sys/fs/bpf/pc-bench-" + std::to_string(getpid()) + "-" + std::to_string(rules);
    options.flow_table_entries = 1 << 20;
    return options;
  }
};

Bytes tcp_frame(bool v6, uint16_t sport) {
  PacketBuilder b;
  if (v6) {
    b.ipv6({.src = test::ipv6_address("fd00::2"), .dst = test::ipv6_address("2001:db9::10")});
  } else {
    b.ipv4({.src = test::ipv4_address("192.168.0.2"), .dst = test::ipv4_address("198.18.0.10")});
  }
  return b.tcp({.sport = sport, .dport = 443, .flags = test::kTcpAck, .payload = Bytes(64, 0x5a)}).frame();
}

void BM_EstablishedFlow(benchmark::State& state) {
  const bool v6 = state.range(0) == 6;
  static const LoadedDataPath path(1000);
  const Bytes frame = tcp_frame(v6, 1000);
  path.run_ns(frame, 1);  // the first packet creates the flow
  for (auto _ : state) state.SetIterationTime(path.run_ns(frame, 100000) * 1e-9);
}
BENCHMARK(BM_EstablishedFlow)->Arg(4)->Arg(6)->UseManualTime()->Iterations(20);

void BM_NewFlow(benchmark::State& state) {
  const bool v6 = state.range(1) == 6;
  static std::unique_ptr<LoadedDataPath> path;
  static int64_t loaded_rules = 0;
  if (loaded_rules != state.range(0)) {
    path.reset();
    path = std::make_unique<LoadedDataPath>(static_cast<int>(state.range(0)));
    loaded_rules = state.range(0);
  }
  uint16_t sport = v6 ? 20000 : 2000;
  // Every run is a flow's first packet: a source port not seen before.
  for (auto _ : state) state.SetIterationTime(path->run_ns(tcp_frame(v6, sport++), 1) * 1e-9);
}
BENCHMARK(BM_NewFlow)
    ->Args({10000, 4})
    ->Args({10000, 6})
    ->Args({100000, 4})
    ->Args({100000, 6})
    ->UseManualTime()
    ->Iterations(5000);

}  // namespace

BENCHMARK_MAIN();
