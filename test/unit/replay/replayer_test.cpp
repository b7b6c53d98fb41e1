// `replay` over the shared corpus (real captures): every ClientHello the corpus lists is found on its flow, by
// TLS and by QUIC, through the same data-path code and decisions as `run`; a policy's verdicts per flow.
#include "replay/replayer.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "policy/ip_address.h"
#include "policy/policy_loader.h"
#include "replay/capture_reader.h"
#include "replay/capture_writer.h"
#include "support/packet_builder.h"
#include "support/sni_corpus.h"

namespace portcullis::replay {
namespace {

std::string endpoint(const std::string& address, const std::optional<uint16_t>& port) {
  return address + ":" + std::to_string(port.value_or(0));
}

// Every capture the rows name, replayed once without a policy.
const std::vector<FlowReport>& corpus_flows() {
  static const std::vector<FlowReport> flows = [] {
    Replayer replayer(nullptr, policy::Mode::host);
    std::set<std::string> captures;
    for (const test::SniRow& row : test::read_sni_rows()) captures.insert(row.capture);
    for (const std::string& capture : captures) replayer.replay((test::corpus_dir() / capture).string());
    return replayer.flows();
  }();
  return flows;
}

const FlowReport* find(const test::SniRow& row) {
  const std::string capture = (test::corpus_dir() / row.capture).string();
  const std::string proto = row.l4 == "TCP" ? "tcp" : "udp";
  for (const FlowReport& flow : corpus_flows()) {
    if (flow.capture != capture || flow.proto != proto) continue;
    const std::string src = endpoint(flow.src, flow.sport);
    const std::string dst = endpoint(flow.dst, flow.dport);
    if ((src == row.client && dst == row.server) || (src == row.server && dst == row.client)) return &flow;
  }
  return nullptr;
}

TEST(Replayer, EveryClientHelloOfTheCorpusIsFoundOnItsFlow) {
  const std::vector<test::SniRow> rows = test::read_sni_rows();
  ASSERT_FALSE(rows.empty());
  size_t tls = 0;
  size_t quic = 0;
  size_t unread = 0;
  for (const test::SniRow& row : rows) {
    const FlowReport* flow = find(row);
    ASSERT_NE(flow, nullptr) << row.capture << " " << row.client << " -> " << row.server;
    EXPECT_EQ(flow->verdict, "allow") << "no policy allows everything";
    if (flow->l7 == "none") {
      // The STARTTLS upgrades and SSLv2-compatible hellos of tls_client_hello_test.cpp: no ClientHello first.
      ++unread;
      EXPECT_EQ(row.l4, "TCP") << row.capture;
      continue;
    }
    EXPECT_EQ(flow->l7, row.l4 == "TCP" ? "tls" : "quic") << row.capture << " " << row.client;
    (row.l4 == "TCP" ? tls : quic) += 1;
    const bool no_name = row.expected_sni == "-" || policy::IpAddress::parse(row.expected_sni).has_value() ||
                         row.expected_sni.find(':') != std::string::npos;
    EXPECT_EQ(flow->name, no_name ? std::nullopt : std::optional<std::string>(row.expected_sni))
        << row.capture << " " << row.client;
  }
  EXPECT_EQ(unread, 13u);
  EXPECT_GE(quic, 46u);
  EXPECT_GE(tls, 100u);
}

TEST(Replayer, APolicyDecidesEachFlowByWhatItShows) {
  // One corpus capture: a ClientHello for raw.githubusercontent.com to 151.101.36.133:443.
  const std::string capture = (test::corpus_dir() / "suricata-verify/bug-2646-01__input.pcap").string();
  const auto run = [&](const std::string& yaml) {
    policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
    EXPECT_TRUE(loaded.policy.has_value());
    Replayer replayer(policy::compile_policy(std::move(*loaded.policy)), policy::Mode::host);
    replayer.replay(capture);
    EXPECT_EQ(replayer.flows().size(), 1u);
    return replayer.flows().empty() ? FlowReport{} : replayer.flows().front();
  };
  const FlowReport allowed = run(R"(version: 1
defaults: {action: deny, sni_ip_binding: off}
rules:
  - {name: github-content, dst: "*.githubusercontent.com", proto: https}
)");
  EXPECT_EQ(allowed.verdict, "allow");
  EXPECT_EQ(allowed.rule, "github-content");
  EXPECT_EQ(allowed.l7, "tls");
  EXPECT_EQ(allowed.name, "raw.githubusercontent.com");

  const FlowReport other = run(R"(version: 1
defaults: {action: deny, sni_ip_binding: off}
rules:
  - {name: github, dst: github.com, proto: https}
)");
  EXPECT_EQ(other.verdict, "deny");
  EXPECT_EQ(other.reason, "denied-by-default");

  const FlowReport unbound = run(R"(version: 1
defaults: {action: deny}
rules:
  - {name: github-content, dst: "*.githubusercontent.com", proto: https}
)");
  EXPECT_EQ(unbound.verdict, "deny") << "sni_ip_binding: dns, and the capture has no DNS answer for the name";
  EXPECT_EQ(unbound.reason, "no-dns-binding");

  const FlowReport by_address = run(R"(version: 1
defaults: {action: deny}
rules:
  - {name: fastly, dst: 151.101.0.0/16, proto: tcp, ports: [443]}
)");
  EXPECT_EQ(by_address.verdict, "allow");
  EXPECT_EQ(by_address.rule, "fastly");
  EXPECT_EQ(by_address.name, "raw.githubusercontent.com") << "identified all the same";
}

size_t packets_in(const std::string& path) {
  std::unique_ptr<CaptureReader> reader = CaptureReader::open(path);
  size_t packets = 0;
  while (reader->next()) ++packets;
  return packets;
}

TEST(Replayer, SplitsACaptureIntoThePacketsAllowedAndThoseDenied) {
  const std::string capture = (test::corpus_dir() / "zeek/tls13_psk_succesfull.pcap").string();
  const std::string dir = ::testing::TempDir();
  const std::string allowed = dir + "/pc-replay-allowed.pcap";
  const std::string denied = dir + "/pc-replay-denied.pcap";
  const size_t total = packets_in(capture);
  ASSERT_GT(total, 5u);
  {
    policy::LoadResult loaded = policy::load_policy("version: 1\ndefaults: {action: deny}\n", "deny.yaml");
    Replayer replayer(policy::compile_policy(std::move(*loaded.policy)), policy::Mode::host);
    replayer.split_into(allowed, denied);
    replayer.replay(capture);
  }
  // The client's packets are refused; the server's never come, but in a capture they are there, and they
  // belong to a denied flow too.
  EXPECT_EQ(packets_in(allowed), 0u);
  EXPECT_EQ(packets_in(denied), total);
  {
    Replayer replayer(nullptr, policy::Mode::host);
    replayer.split_into(allowed, "");
    replayer.replay(capture);
  }
  EXPECT_EQ(packets_in(allowed), total);
  std::remove(allowed.c_str());
  std::remove(denied.c_str());
}

TEST(Replayer, DnsQueriesAreNamedAndFilteredAsLive) {
  // A Windows client asking 192.168.100.2 for names: www.bing.com among them.
  const std::string capture = (test::corpus_dir() / "suricata-verify/tls__tls-subjectaltname__input.pcap").string();
  policy::LoadResult loaded = policy::load_policy(R"(version: 1
defaults: {action: deny, sni_ip_binding: off}
dns: {resolvers: [192.168.100.2]}
rules:
  - {name: bing, dst: "*.bing.com", proto: https}
)",
                                                  "dns.yaml");
  ASSERT_TRUE(loaded.policy.has_value());
  Replayer replayer(policy::compile_policy(std::move(*loaded.policy)), policy::Mode::host);
  replayer.replay(capture);
  size_t allowed = 0;
  size_t filtered = 0;
  for (const FlowReport& flow : replayer.flows()) {
    if (flow.dport != 53 || flow.proto != "udp") continue;
    EXPECT_EQ(flow.l7, "dns");
    ASSERT_TRUE(flow.name.has_value());
    if (flow.name->ends_with(".bing.com")) {
      EXPECT_EQ(flow.verdict, "allow") << *flow.name;
      ++allowed;
    } else {
      EXPECT_EQ(flow.verdict, "deny") << *flow.name;
      EXPECT_EQ(flow.reason, "query-filtered") << *flow.name;
      ++filtered;
    }
  }
  EXPECT_GT(allowed, 0u);
  EXPECT_GT(filtered, 0u);
}

TEST(Replayer, ACaptureThatCannotBeReadIsAnErrorThatNamesIt) {
  Replayer replayer(nullptr, policy::Mode::host);
  EXPECT_THROW(replayer.replay("/nonexistent/capture.pcap"), std::runtime_error);
  const std::string readme = (test::corpus_dir() / "README.md").string();
  try {
    replayer.replay(readme);
    FAIL() << "a text file is not a capture";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(readme), std::string::npos);
  }
}

TEST(Replayer, ADamagedRecordEndsItsCaptureAndIsReported) {
  Replayer replayer(nullptr, policy::Mode::host);
  replayer.replay((test::corpus_dir() / "suricata-verify/bug-1450-04__tls_DER-incomplete-header.pcap").string());
  ASSERT_EQ(replayer.stats().errors.size(), 1u);
  EXPECT_NE(replayer.stats().errors[0].find("bigger than snaplen"), std::string::npos);
}

// A capture of frames built here: each stamped `step` after the one before.
std::string write_capture(const std::string& name, const std::vector<test::Bytes>& frames) {
  const std::string path = ::testing::TempDir() + "/" + name;
  CaptureWriter writer(path, CaptureWriter::kEthernet);
  constexpr uint64_t kStart = 1'700'000'000'000'000'000ULL;
  constexpr uint64_t kStep = 10'000'000;
  uint64_t stamp = kStart;
  for (const test::Bytes& frame : frames) {
    writer.write(frame, stamp);
    stamp += kStep;
  }
  return path;
}

// The resolver's answer for "evil.test A": 198.18.0.10, TTL 300.
const test::Bytes kEvilAnswer = {
    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,  // header: 1 question, 1 answer
    0x04, 'e',  'v',  'i',  'l',  0x04, 't',  'e',  's',  't',  0x00, 0x00, 0x01, 0x00, 0x01,  // question
    0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x04,  // evil.test A, TTL 300, rdlength 4
    198,  18,   0,    10};

test::Bytes udp(const char* src, const char* dst, uint16_t sport, uint16_t dport, test::Bytes payload) {
  return test::PacketBuilder()
      .ipv4({.src = test::ipv4_address(src), .dst = test::ipv4_address(dst)})
      .udp({.sport = sport, .dport = dport, .payload = std::move(payload)})
      .frame();
}

test::Bytes syn(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  return test::PacketBuilder()
      .ipv4({.src = test::ipv4_address(src), .dst = test::ipv4_address(dst)})
      .tcp({.sport = sport, .dport = dport, .flags = test::kTcpSyn, .seq = 1000})
      .frame();
}

TEST(Replayer, AnL4DenyOfANameHoldsAgainstTheDefaultForAddressesAnAnswerBoundToIt) {
  policy::LoadResult loaded = policy::load_policy(R"(version: 1
defaults: {action: allow}
dns: {resolvers: [198.18.0.53], filter_queries: false}
rules:
  - {name: no-evil, dst: evil.test, proto: tcp, ports: [443], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
                                                  "bound.yaml");
  ASSERT_TRUE(loaded.policy.has_value());
  const auto policy = policy::compile_policy(std::move(*loaded.policy));
  const test::Bytes query = udp("10.88.1.2", "198.18.0.53", 40000, 53, {0x12, 0x34, 0x01, 0x00});
  const test::Bytes answer = udp("198.18.0.53", "10.88.1.2", 53, 40000, kEvilAnswer);
  const test::Bytes to_evil = syn("10.88.1.2", "198.18.0.10", 40001, 443);
  const test::Bytes to_other = syn("10.88.1.2", "198.18.0.20", 40002, 443);
  const auto tcp_flows = [&](const std::string& capture) {
    Replayer replayer(policy, policy::Mode::gateway);
    replayer.replay(capture);
    std::map<std::string, FlowReport> by_dst;
    for (const FlowReport& flow : replayer.flows()) {
      if (flow.proto == "tcp") by_dst[flow.dst] = flow;
    }
    return by_dst;
  };

  const std::string answered = write_capture("pc-replay-bound.pcap", {query, answer, to_evil, to_other});
  std::map<std::string, FlowReport> flows = tcp_flows(answered);
  ASSERT_EQ(flows.count("198.18.0.10"), 1u);
  EXPECT_EQ(flows["198.18.0.10"].verdict, "deny");
  EXPECT_EQ(flows["198.18.0.10"].rule, "no-evil");
  EXPECT_EQ(flows["198.18.0.10"].reason, "denied-by-rule");
  EXPECT_EQ(flows["198.18.0.20"].verdict, "allow") << "bound to no name";

  const std::string unanswered = write_capture("pc-replay-unbound.pcap", {query, to_evil, to_other});
  flows = tcp_flows(unanswered);
  ASSERT_EQ(flows.count("198.18.0.10"), 1u);
  EXPECT_EQ(flows["198.18.0.10"].verdict, "allow") << "no answer bound it to evil.test";
  EXPECT_EQ(flows["198.18.0.10"].reason, "default");
  std::remove(answered.c_str());
  std::remove(unanswered.c_str());
}

}  // namespace
}  // namespace portcullis::replay
