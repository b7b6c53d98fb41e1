// The flow table (pc_flows, an LRU hash) at 1M flows, through the real inside program (BPF_PROG_TEST_RUN, the
// kernel's own clock around each run):
//   - the kernel's memory for the table (fdinfo `memlock`) per entry, at the default size and at --entries;
//   - the fill: every flow's first packet, one run each, until the table holds --entries flows;
//   - an established flow's packet in the full table against a second table of the same size holding 1000
//     flows, alternating between the two so the machine's noise falls on both;
//   - --overflow percent more flows than the table holds: LRU eviction, every new flow still decided.
// Gateway mode, TCP from one group's sources (10.88.0.0/16, every source address, then the next source port)
// to an allowed prefix. Prints a table; not a Google Benchmark program (the phases build on each other).
// Needs root. Usage: flow_table_bench [--entries N] [--overflow PERCENT]
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "bench_data_path.h"
#include "dataplane/counters.h"
#include "dataplane/verdict_log.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/flow.h"

namespace {

using namespace portcullis;
using test::Bytes;
using test::PacketBuilder;

const char* const kPolicy = R"(version: 1
defaults: {action: deny, on_deny: drop}
rules:
  - {name: web, dst: 198.18.0.0/16, proto: tcp, ports: [443, 8443]}
  - {name: no-smtp, dst: 0.0.0.0/0, proto: tcp, ports: [25], action: deny}
groups:
  - {name: sandbox, sources: [10.88.0.0/16]}
)";

constexpr uint16_t kDport = 443;
constexpr uint32_t kBasePort = 10000;
constexpr uint32_t kNearlyEmpty = 1000;

// Flow i: source 10.88.(i & 0xffff), port 10000 + i / 65536, to 198.18.0.10:443.
test::Ipv4Address source_of(uint32_t i) {
  return {10, 88, static_cast<uint8_t>((i >> 8) & 0xff), static_cast<uint8_t>(i & 0xff)};
}
uint16_t sport_of(uint32_t i) {
  return static_cast<uint16_t>(kBasePort + (i >> 16));
}
const test::Ipv4Address kDestination = {198, 18, 0, 10};

Bytes first_packet(uint32_t i) {
  return PacketBuilder()
      .ipv4({.src = source_of(i), .dst = kDestination})
      .tcp({.sport = sport_of(i), .dport = kDport, .flags = test::kTcpSyn})
      .frame();
}
Bytes established_packet(uint32_t i) {
  return PacketBuilder()
      .ipv4({.src = source_of(i), .dst = kDestination})
      .tcp({.sport = sport_of(i), .dport = kDport, .flags = test::kTcpAck, .payload = Bytes(64, 0x5a)})
      .frame();
}

pc_flow_key key_of(uint32_t i) {
  pc_flow_key key{};
  union pc_addr src {};
  union pc_addr dst {};
  const test::Ipv4Address s = source_of(i);
  std::copy(s.begin(), s.end(), src.bytes);
  std::copy(kDestination.begin(), kDestination.end(), dst.bytes);
  __u8 direction = 0;
  pc_flow_key_fill(&key, PC_FAMILY_IPV4, 6, &src, sport_of(i), &dst, kDport, &direction);
  return key;
}

// What the kernel says about a map in /proc/self/fdinfo: `memlock`, `max_entries`, ...
uint64_t fdinfo_field(int fd, const std::string& field) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10);
  }
  throw std::runtime_error("no " + field + " in the fdinfo of the flow table");
}

dataplane::BpfObjectsOptions options_for(uint32_t entries, const char* tag) {
  dataplane::BpfObjectsOptions options;
  options.pin_dir = "/sys/fs/bpf/pc-flow-bench-" + std::to_string(getpid()) + "-" + tag;
  options.flow_table_entries = entries;
  return options;
}

struct Memory {
  uint64_t entries = 0;
  uint64_t memlock = 0;
};

Memory table_memory(const bench::BenchDataPath& path) {
  const int fd = path.objects().flows_map();
  return {fdinfo_field(fd, "max_entries"), fdinfo_field(fd, "memlock")};
}

bool present(int flows_fd, uint32_t i, pc_flow* flow = nullptr) {
  const pc_flow_key key = key_of(i);
  pc_flow value{};
  // A lookup from userspace leaves the LRU's reference bits alone: counting does not change what is evicted.
  if (bpf_map_lookup_elem(flows_fd, &key, &value) != 0) return false;
  if (flow) *flow = value;
  return true;
}

struct Established {
  double hot_repeat = 0;  // one flow, repeat 100000: the datapath_bench figure
  double hot_single = 0;  // one flow, one run per call
  double spread = 0;      // a random flow of the table per call, one run each
};

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// One round of `frames`, one test run each: the average ns per run.
double round_ns(const bench::BenchDataPath& path, const std::vector<Bytes>& frames) {
  uint64_t sum = 0;
  for (const Bytes& frame : frames) {
    const bench::TestRun run = path.run(frame);
    if (!run.ok || run.retval != TC_ACT_OK) fail("an established packet did not pass");
    sum += run.duration;
  }
  return static_cast<double>(sum) / static_cast<double>(frames.size());
}

// A table and flows it holds. Their packets update their entries (and the LRU's reference bits).
struct Table {
  const bench::BenchDataPath* path;
  std::vector<uint32_t> flows;
};

// Established packets in both tables, round after round alternating between them, so a shared machine's
// noise falls on both alike; the median round of each. Three ways: one flow with repeat 100000 (the
// datapath_bench figure, everything in cache), one flow with one run per call (the same flow, plus what a
// single run costs: the kernel's timer and a fresh skb), a random flow of the table per call (its bucket and
// entry from memory: what a large table costs).
std::array<Established, 2> measure_established(const std::array<Table, 2>& tables) {
  constexpr int kRounds = 11;
  constexpr int kCalls = 10000;
  std::array<std::vector<double>, 2> hot_repeat, hot_single, spread;
  std::mt19937 random(42);
  std::vector<Bytes> frames(kCalls);
  for (int r = 0; r < kRounds; ++r) {
    for (size_t t = 0; t < tables.size(); ++t) {
      const Table& table = tables[t];
      const Bytes hot = established_packet(table.flows.front());
      hot_repeat[t].push_back(table.path->run_ns(hot, 100000));
      std::fill(frames.begin(), frames.end(), hot);
      hot_single[t].push_back(round_ns(*table.path, frames));
      for (Bytes& frame : frames) frame = established_packet(table.flows[random() % table.flows.size()]);
      spread[t].push_back(round_ns(*table.path, frames));
    }
  }
  std::array<Established, 2> out;
  for (size_t t = 0; t < tables.size(); ++t) {
    out[t] = {median(hot_repeat[t]), median(hot_single[t]), median(spread[t])};
  }
  return out;
}

// Flows still in the table, by tenth of the insertion order.
std::vector<uint32_t> census(int flows_fd, uint32_t inserted, uint32_t parts) {
  std::vector<uint32_t> kept(parts, 0);
  for (uint32_t i = 0; i < inserted; ++i) {
    if (present(flows_fd, i)) ++kept[static_cast<uint64_t>(i) * parts / inserted];
  }
  return kept;
}

uint32_t parse_count(const char* text, uint32_t max) {
  char* end = nullptr;
  const unsigned long value = std::strtoul(text, &end, 0);
  if (end == text || *end != '\0' || value == 0 || value > max) fail(std::string("bad count ") + text);
  return static_cast<uint32_t>(value);
}

int run(int argc, char** argv) {
  uint32_t entries = 1u << 20;
  uint32_t overflow_percent = 20;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--entries" && a + 1 < argc) {
      entries = parse_count(argv[++a], 1u << 24);
    } else if (arg == "--overflow" && a + 1 < argc) {
      overflow_percent = parse_count(argv[++a], 1000);
    } else {
      std::fprintf(stderr, "usage: flow_table_bench [--entries N] [--overflow PERCENT]\n");
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "flow_table_bench: loading BPF programs needs root\n");
    return 1;
  }
  const auto started = std::chrono::steady_clock::now();

  // 1. Memory: the kernel's own figure for the map, at the default size and at the size under test.
  Memory default_memory;
  {
    const bench::BenchDataPath path(options_for(0, "default"), kPolicy, policy::Mode::gateway);
    default_memory = table_memory(path);
  }
  const bench::BenchDataPath path(options_for(entries, "full"), kPolicy, policy::Mode::gateway);
  const Memory memory = table_memory(path);
  const int flows_fd = path.objects().flows_map();
  if (memory.entries != entries) fail("the flow table was not created with the size asked for");

  uint64_t events = 0;
  uint64_t allowed_events = 0;
  dataplane::VerdictEventReader reader(path.objects().events_map(), [&](const pc_verdict_event& event) {
    ++events;
    if (event.verdict == PC_VERDICT_ALLOW) ++allowed_events;
  });

  // 2. A second table of the same size that stays nearly empty, for established packets.
  const bench::BenchDataPath small(options_for(entries, "empty"), kPolicy, policy::Mode::gateway);
  Table nearly_empty{&small, {}};
  for (uint32_t i = 0; i < kNearlyEmpty; ++i) {
    const bench::TestRun run = small.run(first_packet(i));
    if (!run.ok || run.retval != TC_ACT_OK) fail("a new flow's first packet did not pass");
    nearly_empty.flows.push_back(i);
  }
  pc_flow first{};
  if (!present(small.objects().flows_map(), 0, &first) || first.verdict != PC_VERDICT_ALLOW) {
    fail("the first flow is not in the table as allowed: the benchmark's keys do not match the program's");
  }

  // 3. The fill: one run per new flow, events drained as the daemon would.
  constexpr uint32_t kParts = 10;
  std::vector<uint64_t> fill_ns(kParts, 0);
  uint64_t run_errors = 0;
  uint64_t not_passed = 0;
  const auto fill_started = std::chrono::steady_clock::now();
  for (uint32_t i = 0; i < entries; ++i) {
    const bench::TestRun run = path.run(first_packet(i));
    if (!run.ok) ++run_errors;
    if (run.retval != TC_ACT_OK) ++not_passed;
    fill_ns[static_cast<uint64_t>(i) * kParts / entries] += run.duration;
    if ((i & 4095) == 4095) reader.consume();
  }
  reader.consume();
  const double fill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_started).count();
  uint64_t fill_total = 0;
  for (const uint64_t part : fill_ns) fill_total += part;

  // How many of the flows it was sized for the table holds once it has seen that many.
  const std::vector<uint32_t> at_capacity = census(flows_fd, entries, kParts);
  uint64_t held_at_capacity = 0;
  for (const uint32_t part : at_capacity) held_at_capacity += part;

  // 4. More flows than the table holds: each new flow must still be decided and stored.
  const uint32_t extra = static_cast<uint32_t>(static_cast<uint64_t>(entries) * overflow_percent / 100);
  uint64_t overflow_ns = 0;
  uint64_t not_stored = 0;
  for (uint32_t i = entries; i < entries + extra; ++i) {
    const bench::TestRun run = path.run(first_packet(i));
    if (!run.ok) ++run_errors;
    if (run.retval != TC_ACT_OK) ++not_passed;
    overflow_ns += run.duration;
    pc_flow flow{};
    if (!present(flows_fd, i, &flow) || flow.verdict != PC_VERDICT_ALLOW || flow.packets[flow.initiator] != 1) {
      ++not_stored;
    }
    if ((i & 4095) == 4095) reader.consume();
  }
  reader.consume();
  const uint32_t inserted = entries + extra;
  const std::vector<uint32_t> after = census(flows_fd, inserted, kParts);
  uint64_t held_after = 0;
  for (const uint32_t part : after) held_after += part;
  uint64_t first_kept = 0;  // of the first `extra` flows, the ones a perfect LRU would have evicted
  for (uint32_t i = 0; i < extra; ++i) first_kept += present(flows_fd, i) ? 1 : 0;
  uint64_t last_kept = 0;  // of the last `entries` flows, the ones a perfect LRU would keep
  for (uint32_t i = extra; i < inserted; ++i) last_kept += present(flows_fd, i) ? 1 : 0;

  // 5. Established packets, the table full against the nearly empty one (after the census: they touch the LRU).
  Table full_table{&path, {}};
  std::mt19937 random(7);
  while (full_table.flows.size() < 100000) {
    const uint32_t i = static_cast<uint32_t>(random() % inserted);
    if (present(flows_fd, i)) full_table.flows.push_back(i);
  }
  const auto [empty, full] = measure_established({nearly_empty, full_table});

  const std::vector<uint64_t> counters = dataplane::CounterReader(path.objects().counters_map()).read();
  uint64_t drops = 0;
  for (uint32_t slot = 0; slot < PC_DROP_MAX; ++slot) drops += slot == PC_DROP_NONE ? 0 : counters.at(slot);

  // The table.
  const auto mib = [](uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); };
  std::printf(
      "Flow table pc_flows: BPF_MAP_TYPE_LRU_HASH, key sizeof(pc_flow_key) = %zu B, value sizeof(pc_flow) = %zu B\n",
      sizeof(pc_flow_key), sizeof(pc_flow));
  std::printf("\n%-12s %16s %10s %16s\n", "max_entries", "memlock (bytes)", "MiB", "bytes per entry");
  for (const Memory& m : {default_memory, memory}) {
    std::printf("%-12llu %16llu %10.1f %16.1f\n", static_cast<unsigned long long>(m.entries),
                static_cast<unsigned long long>(m.memlock), mib(m.memlock),
                static_cast<double>(m.memlock) / static_cast<double>(m.entries));
  }
  std::printf(
      "\nportcullis_inside through BPF_PROG_TEST_RUN, gateway mode, %u-entry table (ns per run, kernel clock)\n",
      entries);
  std::printf("%-58s %10.0f\n", "new flow, average over the fill (0 -> full)",
              static_cast<double>(fill_total) / entries);
  for (uint32_t p = 0; p < kParts; ++p) {
    const uint64_t begin = static_cast<uint64_t>(entries) * p / kParts;
    const uint64_t end = static_cast<uint64_t>(entries) * (p + 1) / kParts;
    std::printf("  %3u%%-%3u%% full %43.0f\n", p * 100 / kParts, (p + 1) * 100 / kParts,
                static_cast<double>(fill_ns[p]) / static_cast<double>(end - begin));
  }
  std::printf("%-58s %10.0f\n", "new flow, table full (each evicts an old one)",
              extra ? static_cast<double>(overflow_ns) / extra : 0.0);
  std::printf("\n%-46s %14s %14s\n", "established packet (median of 11 rounds)", "1000 flows", "table full");
  std::printf("%-46s %14.1f %14.1f\n", "one flow, repeat 100000", empty.hot_repeat, full.hot_repeat);
  std::printf("%-46s %14.1f %14.1f\n", "one flow, 1 run per call", empty.hot_single, full.hot_single);
  std::printf("%-46s %14.1f %14.1f\n", "random flow of the table, 1 run per call", empty.spread, full.spread);

  std::printf("\nEviction (LRU): %u flows inserted into %u entries\n", inserted, entries);
  std::printf("  flows held when %u had been inserted: %llu (%.2f%%)\n", entries,
              static_cast<unsigned long long>(held_at_capacity), 100.0 * held_at_capacity / entries);
  std::printf("  flows held after %u: %llu; of the first %u: %llu still present; of the last %u: %llu\n", inserted,
              static_cast<unsigned long long>(held_after), extra, static_cast<unsigned long long>(first_kept), entries,
              static_cast<unsigned long long>(last_kept));
  std::printf("  held by tenth of insertion order:");
  for (const uint32_t part : after) std::printf(" %u", part);
  std::printf("\n  new flows beyond capacity not stored as allowed right after their packet: %llu\n",
              static_cast<unsigned long long>(not_stored));
  std::printf("  test runs failed: %llu, packets not passed: %llu, drops counted: %llu\n",
              static_cast<unsigned long long>(run_errors), static_cast<unsigned long long>(not_passed),
              static_cast<unsigned long long>(drops));
  std::printf("  new_flows counter: %llu (flows sent %u), verdict events read: %llu (allow %llu), events lost: %llu\n",
              static_cast<unsigned long long>(counters.at(PC_COUNTER_NEW_FLOW)), inserted,
              static_cast<unsigned long long>(events), static_cast<unsigned long long>(allowed_events),
              static_cast<unsigned long long>(counters.at(PC_COUNTER_EVENT_LOST)));
  std::printf("\nfill wall time %.1f s, whole run %.1f s\n", fill_seconds,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  const bool healthy = run_errors == 0 && not_passed == 0 && not_stored == 0 && drops == 0 &&
                       counters.at(PC_COUNTER_NEW_FLOW) == inserted;
  return healthy ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "flow_table_bench: %s\n", error.what());
    return 1;
  }
}
