// Policy scale: load and compile a policy of 100k domain rules (exact and wildcard) and 100k CIDR rules,
// then time decisions by name and by address against it.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "policy/compiled_policy.h"
#include "policy/domain_matcher.h"
#include "policy/domain_name.h"
#include "policy/policy_loader.h"

namespace {

using namespace portcullis::policy;

constexpr int kDomainRules = 100000;
constexpr int kCidrRules = 100000;

std::string domain(int i) {
  return "svc" + std::to_string(i) + ".team" + std::to_string(i % 997) + ".corp" + std::to_string(i % 53) + ".example";
}

std::string large_policy_yaml() {
  std::string yaml = "version: 1\nrules:\n";
  yaml.reserve(16u << 20);
  static const char* const kPrefixes[] = {"", "*.", "**.", "."};
  for (int i = 0; i < kDomainRules; ++i) {
    // Three exact names for every wildcard, a mix close to real allow-lists.
    const char* prefix = (i % 4 == 3) ? kPrefixes[1 + (i / 4) % 3] : kPrefixes[0];
    yaml += "  - {dst: \"" + std::string(prefix) + domain(i) + "\", proto: https}\n";
  }
  for (int i = 0; i < kCidrRules; ++i) {
    if (i % 2 == 0) {
      yaml += "  - {dst: \"10." + std::to_string((i >> 8) & 0xff) + "." + std::to_string(i & 0xff) +
              ".0/24\", proto: tcp, ports: [5432]}\n";
    } else {
      yaml += "  - {dst: \"2001:db8:" + std::to_string(i % 10000) + ":" + std::to_string(i / 10000) +
              "::/64\", proto: tcp, ports: [5432]}\n";
    }
  }
  return yaml;
}

const std::string& policy_text() {
  static const std::string text = large_policy_yaml();
  return text;
}

const CompiledPolicy& compiled() {
  static const std::shared_ptr<const CompiledPolicy> policy = [] {
    LoadResult result = load_policy(policy_text(), "bench.yaml");
    return compile_policy(std::move(*result.policy));
  }();
  return *policy;
}

void BM_LoadAndValidate200kRules(benchmark::State& state) {
  for (auto _ : state) {
    LoadResult result = load_policy(policy_text(), "bench.yaml");
    if (!result.policy) state.SkipWithError("policy did not load");
    benchmark::DoNotOptimize(result);
  }
  state.counters["rules"] = kDomainRules + kCidrRules;
}
BENCHMARK(BM_LoadAndValidate200kRules)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_Compile200kRules(benchmark::State& state) {
  LoadResult loaded = load_policy(policy_text(), "bench.yaml");
  for (auto _ : state) {
    Policy copy = *loaded.policy;
    benchmark::DoNotOptimize(compile_policy(std::move(copy)));
  }
}
BENCHMARK(BM_Compile200kRules)->Unit(benchmark::kMillisecond)->Iterations(3);

// Names of flows: a third exact hits, a third wildcard hits (one label deeper), a third misses.
std::vector<std::string> query_names() {
  std::vector<std::string> names;
  std::mt19937 rng(7);
  for (int n = 0; n < 4096; ++n) {
    const int i = static_cast<int>(rng() % kDomainRules);
    switch (n % 3) {
      case 0:
        names.push_back(domain(i));
        break;
      case 1:
        names.push_back("api." + domain(i));
        break;
      default:
        names.push_back("svc" + std::to_string(i) + ".nowhere.example.net");
    }
  }
  return names;
}

// The name lookup alone: every pattern of 100k that matches a name.
void BM_NameLookup(benchmark::State& state) {
  DomainMatcher matcher;
  LoadResult loaded = load_policy(policy_text(), "bench.yaml");
  for (uint32_t i = 0; i < loaded.policy->rules.size(); ++i) {
    for (const Destination& dst : loaded.policy->rules[i].destinations) {
      if (const auto* pattern = std::get_if<NamePattern>(&dst)) matcher.add(*pattern, i);
    }
  }
  const std::vector<std::string> names = query_names();
  size_t n = 0;
  size_t hits = 0;
  for (auto _ : state) {
    matcher.match(names[n++ % names.size()], [&](uint32_t) { ++hits; });
  }
  benchmark::DoNotOptimize(hits);
}
BENCHMARK(BM_NameLookup);

void BM_DecideByName(benchmark::State& state) {
  const CompiledPolicy& policy = compiled();
  // The queries are built before the loop: only the decision is timed.
  std::vector<FlowQuery> flows;
  for (const std::string& name : query_names()) {
    FlowQuery& flow = flows.emplace_back();
    flow.src = *IpAddress::parse("192.168.0.2");
    flow.dst = *IpAddress::parse("198.51.100.7");
    flow.dport = 443;
    flow.l7 = L7Proto::tls;
    flow.name = name;
  }
  size_t n = 0;
  for (auto _ : state) benchmark::DoNotOptimize(policy.evaluate(flows[n++ % flows.size()], Mode::host));
}
BENCHMARK(BM_DecideByName);

void BM_NormalizeAndDecideByName(benchmark::State& state) {
  // What a live flow costs: the SNI is normalized before the decision.
  const CompiledPolicy& policy = compiled();
  const std::vector<std::string> names = query_names();
  FlowQuery flow;
  flow.src = *IpAddress::parse("192.168.0.2");
  flow.dst = *IpAddress::parse("198.51.100.7");
  flow.dport = 443;
  flow.l7 = L7Proto::tls;
  size_t n = 0;
  for (auto _ : state) {
    flow.name = normalize_domain_name(names[n++ % names.size()]).name;
    benchmark::DoNotOptimize(policy.evaluate(flow, Mode::host));
  }
}
BENCHMARK(BM_NormalizeAndDecideByName);

void BM_DecideByAddress(benchmark::State& state) {
  const CompiledPolicy& policy = compiled();
  std::vector<IpAddress> addresses;
  std::mt19937 rng(11);
  for (int n = 0; n < 4096; ++n) {
    addresses.push_back(n % 2 ? IpAddress::v4(0x0a000000u | (rng() & 0xffffff))
                              : *IpAddress::parse("2001:db8:" + std::to_string(rng() % 10000) + ":" +
                                                  std::to_string(rng() % 12) + "::1"));
  }
  FlowQuery flow;
  flow.proto = L4Proto::tcp;
  flow.dport = 5432;
  size_t n = 0;
  for (auto _ : state) {
    const IpAddress& dst = addresses[n++ % addresses.size()];
    flow.dst = dst;
    flow.src = dst.family == IpFamily::v4 ? *IpAddress::parse("192.168.0.2") : *IpAddress::parse("fd00::2");
    benchmark::DoNotOptimize(policy.evaluate(flow, Mode::host));
  }
}
BENCHMARK(BM_DecideByAddress);

}  // namespace

BENCHMARK_MAIN();
