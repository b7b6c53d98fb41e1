// libFuzzer target: the answer-to-binding path. Each input is a DNS answer carried in a UDP frame from a
// resolver to a sandbox, learned into a small binding table (parsers/dns_message, punt/dns_bindings). Beyond
// memory errors: the table never outgrows its bound, every binding it reports is of a name the answer's
// chain holds, and a binding learned now is one that holds now.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "parsers/dns_message.h"
#include "policy/policy_loader.h"
#include "punt/dns_bindings.h"
#include "support/packet_builder.h"

namespace {

using namespace portcullis;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

const policy::CompiledPolicy& fuzz_policy() {
  static const auto compiled = [] {
    policy::LoadResult loaded = policy::load_policy(
        "version: 1\ndns: {resolvers: [198.18.0.53]}\ngroups:\n  - {name: a, sources: [10.88.1.0/24]}\n", "fuzz.yaml");
    return policy::compile_policy(std::move(*loaded.policy));
  }();
  return *compiled;
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
  const std::optional<size_t> made = punt::learn_from_answer(bindings, fuzz_policy(), frame_of(dns), 1000);
  require(bindings.size() <= kBound);
  const parsers::DnsMessage answer = parsers::parse_dns_message(dns);
  if (!made) return 0;
  require(answer.status == parsers::ParseStatus::found && answer.response);
  const std::vector<std::string> chain = parsers::cname_chain(answer, answer.question.name);
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
