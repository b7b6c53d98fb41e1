// What DNS answers cost the daemon: an answer frame parsed and its bindings made (a CNAME chain to an A
// record, as dnsmasq sends it), alone and with a deny rule naming the chain's end, whose address goes into the
// bound-names table (written to a counter here, to the data plane's map live); the lookups a decision makes;
// then the memory a binding and a bound-names entry take, measured from the heap as a table fills (glibc's
// mallinfo2).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstdio>
#include <string>
#include <vector>

#include "policy/policy_loader.h"
#include "punt/bound_names.h"
#include "punt/dns_bindings.h"
#include "support/packet_builder.h"

namespace {

using namespace portcullis;

// Ethernet, IPv4 198.18.0.53 -> 10.88.1.2, UDP 53 -> 40000, and a DNS answer: alias.test CNAME cdn.test,
// cdn.test A 198.18.0.10.
std::vector<uint8_t> answer_frame() {
  const std::vector<uint8_t> dns = {0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x05, 'a',
                                    'l',  'i',  'a',  's',  0x04, 't',  'e',  's',  't',  0x00, 0x00, 0x01, 0x00, 0x01,
                                    0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x0a, 0x03, 'c',
                                    'd',  'n',  0x04, 't',  'e',  's',  't',  0x00, 0xc0, 0x28, 0x00, 0x01, 0x00, 0x01,
                                    0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 198,  18,   0,    10};
  return test::PacketBuilder()
      .ipv4({.src = test::ipv4_address("198.18.0.53"), .dst = test::ipv4_address("10.88.1.2")})
      .udp({.sport = 53, .dport = 40000, .payload = dns})
      .frame();
}

std::shared_ptr<const policy::CompiledPolicy> sandbox_policy() {
  policy::LoadResult loaded = policy::load_policy(R"(version: 1
dns: {resolvers: [198.18.0.53]}
rules:
  - {name: cdn, dst: .test, proto: https}
  - {name: no-cdn-ssh, action: deny, dst: cdn.test, proto: ssh}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
                                                  "bench.yaml");
  return policy::compile_policy(std::move(*loaded.policy));
}

void BM_LearnFromAnswer(benchmark::State& state) {
  const auto policy = sandbox_policy();
  const std::vector<uint8_t> frame = answer_frame();
  punt::DnsBindings bindings;
  uint64_t now = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(punt::learn_from_answer(bindings, *policy, frame, now));
    now += 1000;
  }
  if (bindings.size() != 2) state.SkipWithError("the answer bound nothing");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LearnFromAnswer);

void BM_LearnFromAnswerIntoBoundNames(benchmark::State& state) {
  const auto policy = sandbox_policy();
  const std::vector<uint8_t> frame = answer_frame();
  punt::DnsBindings bindings;
  size_t writes = 0;
  punt::BoundNameTable bound_names([&writes](const pc_bound_key&, const pc_bound_name*) { return ++writes > 0; });
  bound_names.set_policy(policy, bindings);
  bindings.observe([&](std::optional<size_t> group, const std::vector<std::string>& names,
                       const policy::IpAddress& address, uint32_t,
                       uint64_t expires_ns) { bound_names.on_bound(group, names, address, expires_ns); });
  uint64_t now = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(punt::learn_from_answer(bindings, *policy, frame, now));
    now += 1'000'000'000;  // each answer moves the binding's end: a write each time
  }
  if (bound_names.size() != 1 || writes == 0) state.SkipWithError("the answer marked nothing");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LearnFromAnswerIntoBoundNames);

void BM_BindingLookup(benchmark::State& state) {
  punt::DnsBindings bindings;
  const auto address = *policy::IpAddress::parse("198.18.0.10");
  for (int i = 0; i < state.range(0); ++i) {
    bindings.bind(0, {"host" + std::to_string(i) + ".test"}, address, 60, 0);
  }
  for (auto _ : state) benchmark::DoNotOptimize(bindings.bound(0, "host7.test", address, 1));
}
BENCHMARK(BM_BindingLookup)->Arg(1000)->Arg(100000);

// Heap bytes per binding of a table of `n` names, each bound to its own address.
void BM_MemoryPerBinding(benchmark::State& state) {
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    {
      punt::DnsBindings bindings;
      policy::IpAddress address = *policy::IpAddress::parse("100.64.0.0");
      for (int64_t i = 0; i < state.range(0); ++i) {
        address.bytes[2] = static_cast<uint8_t>(i >> 8);
        address.bytes[3] = static_cast<uint8_t>(i);
        bindings.bind(0, {"name-" + std::to_string(i) + ".registry.example.com"}, address, 60, 0);
      }
      state.counters["bytes_per_binding"] =
          static_cast<double>(mallinfo2().uordblks - before) / static_cast<double>(state.range(0));
    }
  }
}
BENCHMARK(BM_MemoryPerBinding)->Arg(100000)->Iterations(1);

// Heap bytes per bound-names entry, a table full of `n` addresses (the data plane's map takes its own).
void BM_MemoryPerBoundName(benchmark::State& state) {
  const auto policy = sandbox_policy();
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    {
      punt::BoundNameTable bound_names([](const pc_bound_key&, const pc_bound_name*) { return true; },
                                       static_cast<size_t>(state.range(0)));
      bound_names.set_policy(policy, punt::DnsBindings());
      policy::IpAddress address = *policy::IpAddress::parse("100.64.0.0");
      for (int64_t i = 0; i < state.range(0); ++i) {
        address.bytes[2] = static_cast<uint8_t>(i >> 8);
        address.bytes[3] = static_cast<uint8_t>(i);
        bound_names.on_bound(0, {"cdn.test"}, address, 60'000'000'000);
      }
      if (bound_names.size() != static_cast<size_t>(state.range(0))) state.SkipWithError("entries went missing");
      state.counters["bytes_per_entry"] =
          static_cast<double>(mallinfo2().uordblks - before) / static_cast<double>(state.range(0));
    }
  }
}
BENCHMARK(BM_MemoryPerBoundName)->Arg(65536)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
