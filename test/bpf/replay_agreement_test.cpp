// `replay --kernel` and `replay` agree flow by flow: the BPF programs fed every packet of the whole shared corpus
// (BPF_PROG_TEST_RUN) and their userspace build give the same verdict, rule, reason and identification, under
// a policy that decides flows by address, by name and by protocol. Root; the kernel replay runs in a network
// namespace of its own.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy/policy_loader.h"
#include "replay/kernel_data_plane.h"
#include "replay/replayer.h"
#include "support/sni_corpus.h"

namespace portcullis::replay {
namespace {

constexpr const char* kPolicy = R"(version: 1
defaults: {action: deny, sni_ip_binding: off, l7_timeout_ms: 5000}
rules:
  - {name: github, dst: [.github.com, .githubusercontent.com], proto: https}
  - {name: google, dst: .google.com, proto: https}
  - {name: cloudflare, dst: .cloudflare.com, proto: quic}
  - {name: web-by-address, dst: 10.0.0.0/8, proto: tcp, ports: ["1-65535"]}
  - {name: no-facebook, dst: .facebook.com, proto: any, action: deny}
  - {name: dns, dst: 0.0.0.0/0, proto: dns}
  - {name: ping, dst: 0.0.0.0/0, proto: icmp}
)";

std::vector<FlowReport> replay_corpus(ReplayDataPlaneFactory factory) {
  policy::LoadResult loaded = policy::load_policy(kPolicy, "agreement.yaml");
  EXPECT_TRUE(loaded.policy.has_value());
  Replayer replayer(policy::compile_policy(std::move(*loaded.policy)), policy::Mode::host, std::move(factory));
  // The whole corpus: every capture libpcap can open (a pcapng whose interfaces differ in link type cannot be).
  std::set<std::string> captures;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(test::corpus_dir())) {
    const std::string path = entry.path().string();
    if (path.ends_with(".pcap") || path.ends_with(".pcapng")) captures.insert(path);
  }
  for (const std::string& capture : captures) {
    try {
      replayer.replay(capture);
    } catch (const std::runtime_error&) {
    }
  }
  EXPECT_GT(captures.size(), 100u);
  return replayer.flows();
}

std::string describe(const FlowReport& flow) {
  return flow.capture + " " + flow.proto + " " + flow.src + ":" + std::to_string(flow.sport.value_or(0)) + " -> " +
         flow.dst + ":" + std::to_string(flow.dport.value_or(0));
}

TEST(ReplayAgreement, KernelAndUserspaceDecideEveryCorpusFlowAlike) {
  if (geteuid() != 0) GTEST_SKIP() << "loading BPF programs needs root";
  const std::vector<FlowReport> userspace = replay_corpus(make_userspace_data_plane);
  const std::vector<FlowReport> kernel = replay_corpus(make_kernel_data_plane);
  ASSERT_EQ(kernel.size(), userspace.size());
  size_t allowed = 0;
  size_t denied = 0;
  for (size_t i = 0; i < kernel.size(); ++i) {
    const FlowReport& k = kernel[i];
    const FlowReport& u = userspace[i];
    ASSERT_EQ(describe(k), describe(u));
    EXPECT_EQ(k.verdict, u.verdict) << describe(k);
    EXPECT_EQ(k.rule, u.rule) << describe(k);
    EXPECT_EQ(k.reason, u.reason) << describe(k);
    EXPECT_EQ(k.l7, u.l7) << describe(k);
    EXPECT_EQ(k.name, u.name) << describe(k);
    allowed += k.verdict == "allow";
    denied += k.verdict == "deny";
  }
  // The policy leaves both outcomes well represented, so agreement means something.
  EXPECT_GT(allowed, 10u);
  EXPECT_GT(denied, 10u);
}

}  // namespace
}  // namespace portcullis::replay
