// libFuzzer target: whole captures through `replay` (libpcap, the link-layer normalization, the data plane's
// code built for userspace, identification and the daemon's decisions) under a policy that makes flows wait
// for their names. Beyond memory errors: a damaged capture is reported, never a crash, and every flow gets a
// verdict of the three there are.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "policy/policy_loader.h"
#include "replay/replayer.h"

namespace {

std::shared_ptr<const portcullis::policy::CompiledPolicy> fuzz_policy() {
  static const auto compiled = [] {
    portcullis::policy::LoadResult loaded = portcullis::policy::load_policy(R"(version: 1
defaults: {action: deny, sni_ip_binding: off, l7_timeout_ms: 200}
rules:
  - {name: web, dst: "**.example.com", proto: https}
  - {name: plain, dst: .example.org, proto: http}
  - {name: shell, dst: 10.0.0.0/8, proto: ssh}
  - {name: any-dns, dst: 0.0.0.0/0, proto: dns}
  - {name: no, dst: evil.example.com, proto: any, action: deny}
)",
                                                                            "fuzz.yaml");
    return portcullis::policy::compile_policy(std::move(*loaded.policy));
  }();
  return compiled;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::FILE* file = fmemopen(const_cast<uint8_t*>(data), size, "rb");
  if (file == nullptr) return 0;
  portcullis::replay::Replayer replayer(fuzz_policy(), portcullis::policy::Mode::host);
  try {
    replayer.replay(file, "fuzz.pcap");
  } catch (const std::runtime_error&) {
    return 0;  // not a capture, or a link type portcullis does not read
  }
  for (const portcullis::replay::FlowReport& flow : replayer.flows()) {
    if (flow.verdict != "allow" && flow.verdict != "deny" && flow.verdict != "pending") __builtin_trap();
    if (flow.reason.empty()) __builtin_trap();
  }
  return 0;
}
