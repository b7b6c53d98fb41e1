// What the daemon's conntrack costs: FlowTable::sync, which the daemon runs every few ticks and before every
// `flows`, `stats` and reload, over tables of 10k, 100k and 1M established TCP flows (in sync, as in steady
// state); the heap a tracked flow takes (glibc's mallinfo2, around a table of 1M flows filled through
// on_verdict and sync), with no name and with a 20-character name the daemon read; and conntrack::reevaluate,
// what a reload costs per open flow, against a small policy compiled here. No privileges.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdint>
#include <string>
#include <vector>

#include "conntrack/flow_table.h"
#include "conntrack/revocation.h"
#include "dataplane/frame_fields.h"
#include "dataplane/policy_tables.h"
#include "dataplane/table_classifier.h"
#include "policy/policy_loader.h"
#include "punt/dns_bindings.h"

namespace {

using namespace portcullis;
using conntrack::FlowTable;

constexpr uint64_t kSecond = 1'000'000'000ULL;
constexpr uint64_t kNow = 3600 * kSecond;
constexpr uint8_t kTcp = 6;

// Flow i: from 10.88.(i >> 8).(i), port 10000 + (i >> 16), to 198.18.(a spread of 256 x 256 addresses) on a
// port of 9000-9999.
pc_verdict_event event_of_flow(uint32_t i) {
  pc_verdict_event event{};
  event.timestamp_ns = kSecond + i;
  event.src.bytes[0] = 10;
  event.src.bytes[1] = 88;
  event.src.bytes[2] = static_cast<uint8_t>(i >> 8);
  event.src.bytes[3] = static_cast<uint8_t>(i);
  const uint32_t spread = (i * 7919U) & 0xffffU;
  event.dst.bytes[0] = 198;
  event.dst.bytes[1] = 18;
  event.dst.bytes[2] = static_cast<uint8_t>(spread >> 8);
  event.dst.bytes[3] = static_cast<uint8_t>(spread);
  event.sport = static_cast<uint16_t>(10000 + (i >> 16));
  event.dport = static_cast<uint16_t>(9000 + i % 1000);
  event.family = PC_FAMILY_IPV4;
  event.proto = kTcp;
  event.verdict = PC_VERDICT_ALLOW;
  event.rule_id = 0;
  event.scope = 1;
  event.generation = 1;
  return event;
}

// The data plane's entry for an established connection: SYN and ACK both ways, packets and bytes both ways,
// last seen a second before kNow (no flow expires).
FlowTable::Entry entry_of(const pc_verdict_event& event) {
  pc_flow flow{};
  uint8_t direction = 0;
  const pc_flow_key key = conntrack::key_of(event, &direction);
  flow.first_seen_ns = event.timestamp_ns;
  flow.last_seen_ns = kNow - kSecond;
  flow.initiator = direction;
  flow.verdict = event.verdict;
  flow.rule_id = event.rule_id;
  flow.scope = event.scope;
  flow.generation = event.generation;
  flow.packets[0] = flow.packets[1] = 10;
  flow.bytes[0] = flow.bytes[1] = 4000;
  flow.tcp_flags[0] = flow.tcp_flags[1] = PC_TCP_SYN | PC_TCP_ACK;
  return {key, flow};
}

std::vector<pc_verdict_event> events_of(size_t n) {
  std::vector<pc_verdict_event> events;
  events.reserve(n);
  for (uint32_t i = 0; i < n; ++i) events.push_back(event_of_flow(i));
  return events;
}

std::vector<FlowTable::Entry> entries_of(const std::vector<pc_verdict_event>& events) {
  std::vector<FlowTable::Entry> entries;
  entries.reserve(events.size());
  for (const pc_verdict_event& event : events) entries.push_back(entry_of(event));
  return entries;
}

// A name of exactly 20 characters, one per flow: "host-0000001.test.io".
std::string name_of_flow(uint32_t i) {
  const std::string number = std::to_string(i);
  return "host-" + std::string(7 - number.size(), '0') + number + ".test.io";
}

punt::FlowIdentity identity_named(std::string name) {
  punt::FlowIdentity identity;
  identity.state = punt::FlowIdentity::State::identified;
  identity.l7 = policy::L7Proto::tls;
  identity.name = std::move(name);
  return identity;
}

// A sync of a table that holds every entry already (the steady state): each entry found, its data taken,
// the table rebuilt.
void BM_Sync(benchmark::State& state) {
  const std::vector<pc_verdict_event> events = events_of(static_cast<size_t>(state.range(0)));
  const std::vector<FlowTable::Entry> entries = entries_of(events);
  FlowTable table;
  for (const pc_verdict_event& event : events) table.on_verdict(event);
  table.sync(entries, kNow);
  for (auto _ : state) {
    const FlowTable::SyncResult result = table.sync(entries, kNow);
    benchmark::DoNotOptimize(result.adopted);
  }
  if (table.size() != entries.size()) state.SkipWithError("the table lost flows");
  state.counters["per_entry"] = benchmark::Counter(
      static_cast<double>(entries.size()), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Sync)->Arg(10000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kMillisecond);

// Heap bytes in use, mmapped blocks included: a large table's bucket array is one.
size_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

// Heap bytes per tracked flow of a table of `n` established flows, filled as the daemon fills it: the verdict
// events (range(1) = 1: decisions by the daemon with a 20-character name), then a sync with the data plane's
// entries. The entries themselves (the daemon reads them into a vector it frees) are not counted.
void BM_MemoryPerFlow(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  const bool named = state.range(1) != 0;
  const std::vector<pc_verdict_event> events = events_of(n);
  const std::vector<FlowTable::Entry> entries = entries_of(events);
  for (auto _ : state) {
    const size_t before = heap_in_use();
    FlowTable table;
    for (uint32_t i = 0; i < n; ++i) {
      if (named) {
        table.on_decision(events[i], identity_named(name_of_flow(i)), {});
      } else {
        table.on_verdict(events[i]);
      }
    }
    const size_t adopted = table.sync(entries, kNow).adopted;
    const size_t after = heap_in_use();
    if (table.size() != n || adopted != 0) state.SkipWithError("the table does not hold the flows it was given");
    state.counters["bytes_per_flow"] = static_cast<double>(after - before) / static_cast<double>(n);
    state.counters["sizeof_TrackedFlow"] = sizeof(conntrack::TrackedFlow);
  }
}
BENCHMARK(BM_MemoryPerFlow)
    ->ArgNames({"flows", "named"})
    ->Args({1000000, 0})
    ->Args({1000000, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// A small policy: an address rule that keeps the open connections, a deny, name rules, and a group.
const char* const kPolicy = R"(version: 1
defaults: {action: deny, sni_ip_binding: dns}
dns: {resolvers: [198.18.0.53]}
rules:
  - {name: ports, dst: 198.18.0.0/16, proto: tcp, ports: ["9000-9999"]}
  - {name: no-smtp, dst: 0.0.0.0/0, proto: tcp, ports: [25], action: deny}
  - {name: web, dst: .test.io, proto: https}
groups:
  - name: sandbox
    sources: [10.88.0.0/16]
    rules:
      - {name: by-name, dst: "*.bound.test", proto: tcp, ports: ["7000-7999"]}
)";

enum class Decided : int64_t {
  by_address = 0,  // the data plane decided it on addresses and ports: classified again through the tables
  by_name = 1,     // the daemon decided it from the name it showed (TLS SNI, port 443)
  by_binding = 2,  // it showed no name (plain TCP, port 7000-7999): judged by the names DNS bound its address to
};

// reevaluate over every flow of a table of range(0) flows, as a reload walks it; time per flow. Every flow
// stays allowed: a revoked flow costs the same judgement, then the data plane's and the kernel's work.
void BM_Reevaluate(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  const auto decided = static_cast<Decided>(state.range(1));
  policy::LoadResult loaded = policy::load_policy(kPolicy, "bench.yaml");
  if (!loaded.policy) {
    state.SkipWithError("the bench's policy does not load");
    return;
  }
  const auto compiled = policy::compile_policy(std::move(*loaded.policy));
  const dataplane::TableClassifier classifier(dataplane::build_policy_tables(*compiled, policy::Mode::gateway, 2));
  punt::DnsBindings bindings;
  std::vector<pc_verdict_event> events = events_of(n);
  FlowTable table;
  for (uint32_t i = 0; i < n; ++i) {
    pc_verdict_event& event = events[i];
    switch (decided) {
      case Decided::by_address:
        table.on_verdict(event);
        break;
      case Decided::by_name:
        event.dport = 443;
        table.on_decision(event, identity_named(name_of_flow(i)), {});
        break;
      case Decided::by_binding: {
        event.dport = static_cast<uint16_t>(7000 + i % 1000);
        const std::string name = "host-" + std::to_string(i) + ".bound.test";
        bindings.bind(0, {name}, dataplane::address_of(event.dst, event.family), 300, kNow);
        punt::FlowIdentity unknown;
        unknown.state = punt::FlowIdentity::State::unknown;
        table.on_decision(event, unknown, {name});
        break;
      }
    }
  }
  table.sync(entries_of(events), kNow);
  size_t allowed = 0;
  for (auto _ : state) {
    allowed = 0;
    table.for_each([&](const conntrack::TrackedFlow& flow) {
      allowed += conntrack::reevaluate(flow, *compiled, policy::Mode::gateway, classifier, bindings, kNow).allow;
    });
  }
  if (allowed != n) state.SkipWithError("the policy should keep every flow");
  state.counters["per_flow"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_Reevaluate)
    ->ArgNames({"flows", "decided"})
    ->Args({100000, static_cast<int64_t>(Decided::by_address)})
    ->Args({100000, static_cast<int64_t>(Decided::by_name)})
    ->Args({100000, static_cast<int64_t>(Decided::by_binding)})
    ->Unit(benchmark::kMillisecond);

}  // namespace

// BENCHMARK_MAIN, with the command line in the context it prints first.
int main(int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i == 0 ? "" : " ") + std::string(argv[i]);
  benchmark::AddCustomContext("command", command);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
