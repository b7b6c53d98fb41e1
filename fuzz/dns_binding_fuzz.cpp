// libFuzzer target: the answer-to-binding path. Each input is a DNS answer carried in a UDP frame from a
// resolver to a sandbox, learned into a small binding table (parsers/dns_message, punt/dns_bindings) whose
// bindings of names a deny rule names go on into a bound-names table (punt/bound_names). Beyond memory errors:
// the tables never outgrow their bounds, every binding reported is of a name the answer's chain holds, a
// binding learned now is one that holds now, and every bound-names entry is an address of the answer, under
// the client's scope, with the deny rule's protocol, for as long as its binding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "parsers/dns_message.h"
#include "policy/policy_loader.h"
#include "portcullis/policy_maps.h"
#include "punt/bound_names.h"
#include "punt/dns_bindings.h"
#include "support/packet_builder.h"

namespace {

using namespace portcullis;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

const std::shared_ptr<const policy::CompiledPolicy>& fuzz_policy() {
  static const auto compiled = [] {
    policy::LoadResult loaded = policy::load_policy(
        "version: 1\ndns: {resolvers: [198.18.0.53]}\ngroups:\n  - {name: a, sources: [10.88.1.0/24]}\n"
        "rules:\n  - {name: block, action: deny, proto: icmp, dst: \"*.a\"}\n",
        "fuzz.yaml");
    return policy::compile_policy(std::move(*loaded.policy));
  }();
  return compiled;
}

std::vector<uint8_t> frame_of(std::span<const uint8_t> dns) {
  return test::PacketBuilder()
      .ipv4({.src = test::ipv4_address("198.18.0.53"), .dst = test::ipv4_address("10.88.1.2")})
      .udp({.sport = 53, .dport = 40000, .payload = test::Bytes(dns.begin(), dns.end())})
      .frame();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 60000) return 0;  // one UDP datagram
  const std::span<const uint8_t> dns(data, size);
  constexpr size_t kBound = 16;
  punt::DnsBindings bindings({.min_ttl = 1, .max_ttl = 60, .max_bindings = kBound});
  std::vector<std::pair<pc_bound_key, pc_bound_name>> written;
  punt::BoundNameTable bound_names(
      [&](const pc_bound_key& key, const pc_bound_name* name) {
        if (name != nullptr) written.emplace_back(key, *name);
        return true;
      },
      kBound);
  bound_names.set_policy(fuzz_policy(), bindings);
  bindings.observe([&](std::optional<size_t> group, const std::vector<std::string>& names,
                       const policy::IpAddress& address, uint32_t,
                       uint64_t expires_ns) { bound_names.on_bound(group, names, address, expires_ns); });
  const std::optional<size_t> made = punt::learn_from_answer(bindings, *fuzz_policy(), frame_of(dns), 1000);
  require(bindings.size() <= kBound);
  require(bound_names.size() <= kBound);
  const parsers::DnsMessage answer = parsers::parse_dns_message(dns);
  if (!made) return 0;
  require(answer.status == parsers::ParseStatus::found && answer.response);
  const std::vector<std::string> chain = parsers::cname_chain(answer, answer.question.name);
  for (const auto& entry : written) {
    const pc_bound_key& key = entry.first;
    require(key.scope == 1 && entry.second.l4_mask == (PC_L4_ICMP | PC_L4_ICMPV6) && entry.second.expires_ns > 1000);
    const bool of_the_answer = std::any_of(answer.addresses.begin(), answer.addresses.end(), [&](const auto& record) {
      return std::equal(record.address.begin(), record.address.begin() + (record.v6 ? 16 : 4), key.addr.bytes);
    });
    require(of_the_answer);
    const bool denied_name = std::any_of(
        chain.begin(), chain.end(), [](const std::string& name) { return name.size() > 2 && name.ends_with(".a"); });
    require(denied_name);
  }
  for (const parsers::DnsAddressRecord& record : answer.addresses) {
    policy::IpAddress address;
    address.family = record.v6 ? policy::IpFamily::v6 : policy::IpFamily::v4;
    std::copy(record.address.begin(), record.address.begin() + (record.v6 ? 16 : 4), address.bytes.begin());
    for (const std::string& name : bindings.names_of(0, address, 1000)) {
      require(std::find(chain.begin(), chain.end(), name) != chain.end());
    }
  }
  return 0;
}
