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
  std::vector<uint8_t> frame(14 + 20 + 8, 0);
  frame[12] = 0x08;
  uint8_t* ip = frame.data() + 14;
  const size_t ip_length = 20 + 8 + dns.size();
  ip[0] = 0x45;
  ip[2] = static_cast<uint8_t>(ip_length >> 8);
  ip[3] = static_cast<uint8_t>(ip_length);
  ip[8] = 64;
  ip[9] = 17;
  const uint8_t addresses[8] = {198, 18, 0, 53, 10, 88, 1, 2};
  std::copy(addresses, addresses + 8, ip + 12);
  uint8_t* udp = ip + 20;
  udp[1] = 53;
  udp[2] = 0x9c;
  udp[3] = 0x40;
  udp[4] = static_cast<uint8_t>((8 + dns.size()) >> 8);
  udp[5] = static_cast<uint8_t>(8 + dns.size());
  frame.insert(frame.end(), dns.begin(), dns.end());
  return frame;
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
