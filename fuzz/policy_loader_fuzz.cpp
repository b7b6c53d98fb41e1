// Any bytes as a policy file: the loader must report errors, never crash, and whatever it accepts must
// compile and answer a query.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/compiled_policy.h"
#include "policy/policy_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace portcullis::policy;
  LoadResult result = load_policy(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.yaml");
  if (!result.policy) return 0;
  const auto compiled = compile_policy(std::move(*result.policy));
  FlowQuery flow;
  flow.src = *IpAddress::parse("10.0.0.1");
  flow.dst = *IpAddress::parse("192.0.2.1");
  flow.dport = 443;
  flow.l7 = L7Proto::tls;
  flow.name = "www.example.com";
  (void)compiled->evaluate(flow, Mode::host);
  (void)compiled->evaluate(flow, Mode::gateway);
  return 0;
}
