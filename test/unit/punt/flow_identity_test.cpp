// What a pending flow shows (TLS, HTTP, SSH, or nothing portcullis reads), on bytes built here and on the real
// captures of the shared corpus; and the verdict the policy gives it.
#include "punt/flow_identity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "parsers/quic_initial.h"
#include "parsers/tcp_stream_prefix.h"
#include "policy/policy_loader.h"
#include "support/sni_corpus.h"

namespace portcullis::punt {
namespace {

using State = FlowIdentity::State;

std::vector<uint8_t> bytes(std::string_view text) {
  return {text.begin(), text.end()};
}

TEST(IdentifyTcpStream, HttpRequestGivesItsHost) {
  const FlowIdentity identity =
      identify_tcp_stream(bytes("GET / HTTP/1.1\r\nHost: Allowed.Test:8080\r\nUser-Agent: curl/7.88.1\r\n\r\n"));
  EXPECT_EQ(identity.state, State::identified);
  EXPECT_EQ(identity.l7, policy::L7Proto::http);
  EXPECT_EQ(identity.name, "allowed.test");
}

TEST(IdentifyTcpStream, WaitsForTheEndOfARequestHead) {
  EXPECT_EQ(identify_tcp_stream(bytes("GET / HTTP/1.1\r\nHost: allowed.te")).state, State::need_more);
  EXPECT_EQ(identify_tcp_stream(bytes("G")).state, State::need_more);
  EXPECT_EQ(identify_tcp_stream({}).state, State::need_more);
}

TEST(IdentifyTcpStream, TwoHostsAreMalformedHttp) {
  const FlowIdentity identity =
      identify_tcp_stream(bytes("GET / HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n"));
  EXPECT_EQ(identity.state, State::malformed);
  EXPECT_EQ(identity.l7, policy::L7Proto::http);
}

TEST(IdentifyTcpStream, SshBannerIsSshAndHttpMethodsStartingWithSAreStillHttp) {
  const FlowIdentity ssh = identify_tcp_stream(bytes("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"));
  EXPECT_EQ(ssh.state, State::identified);
  EXPECT_EQ(ssh.l7, policy::L7Proto::ssh);
  EXPECT_FALSE(ssh.name.has_value());
  EXPECT_EQ(identify_tcp_stream(bytes("SSH-2.0-Open")).state, State::need_more);
  const FlowIdentity search = identify_tcp_stream(bytes("SEARCH / HTTP/1.1\r\nHost: allowed.test\r\n\r\n"));
  EXPECT_EQ(search.l7, policy::L7Proto::http);
  EXPECT_EQ(search.name, "allowed.test");
}

TEST(IdentifyTcpStream, BytesOfNoKnownProtocolAreUnknownAtOnce) {
  const FlowIdentity identity = identify_tcp_stream(std::vector<uint8_t>{0x00, 0x01, 0x02});
  EXPECT_EQ(identity.state, State::unknown);
  EXPECT_EQ(identity.l7, policy::L7Proto::none);
  EXPECT_EQ(identify_tcp_stream(bytes("EHLO client.test\r\n")).state, State::unknown);
}

// Every TCP ClientHello of the corpus, reassembled from its segments as the daemon does, gives its SNI. The
// flows that do not start with a ClientHello (STARTTLS upgrades, SSLv2-compatible hellos: see
// tls_client_hello_test.cpp) are of no protocol portcullis reads, so only L4 rules could allow them.
TEST(IdentifyTcpStream, EveryTcpClientHelloOfTheCorpusGivesItsSni) {
  const std::vector<test::SniRow> rows = test::read_sni_rows();
  ASSERT_FALSE(rows.empty()) << "no rows in " << test::corpus_dir() / "expected-sni.tsv";
  size_t checked = 0;
  size_t unknown = 0;
  for (const test::SniRow& row : rows) {
    if (row.l4 != "TCP") continue;
    const test::CapturedFlow* flow =
        test::find_flow(test::corpus_capture_flows(row.capture), test::Transport::tcp, row.client, row.server);
    ASSERT_NE(flow, nullptr) << row.capture << " " << row.client;
    ASSERT_FALSE(flow->client_segments.empty());
    const test::TcpSegment& first = flow->client_segments.front();
    parsers::TcpStreamPrefix stream(first.syn ? first.seq + 1 : first.seq, 20 * 1024);
    FlowIdentity identity;
    for (const test::TcpSegment& segment : flow->client_segments) {
      stream.add_segment(segment.seq, segment.payload, segment.syn);
      identity = identify_tcp_stream(stream.contiguous());
      if (identity.state != State::need_more) break;
    }
    ++checked;
    if (identity.state == State::unknown) {
      ++unknown;
      EXPECT_NE(stream.contiguous().front(), 0x16) << row.capture << " " << row.client;
      continue;
    }
    EXPECT_EQ(identity.state, State::identified) << row.capture << " " << row.client << " " << identity.detail;
    EXPECT_EQ(identity.l7, policy::L7Proto::tls) << row.capture;
    // An address in SNI names no host (the flow is matched by its destination address alone).
    const bool no_name = row.expected_sni == "-" || policy::IpAddress::parse(row.expected_sni).has_value();
    const std::optional<std::string> expected = no_name ? std::nullopt : std::optional<std::string>(row.expected_sni);
    EXPECT_EQ(identity.name, expected) << row.capture << " " << row.client;
  }
  EXPECT_GT(checked, 100u);
  EXPECT_EQ(unknown, 13u) << "the STARTTLS and SSLv2 flows listed in tls_client_hello_test.cpp";
}

// Every QUIC ClientHello of the corpus, from the client's datagrams as the daemon holds them, gives its SNI as
// a QUIC flow.
TEST(IdentifyQuic, EveryUdpClientHelloOfTheCorpusGivesItsSni) {
  parsers::QuicInitialDecryptor decryptor;
  size_t checked = 0;
  for (const test::SniRow& row : test::read_sni_rows()) {
    if (row.l4 != "UDP") continue;
    const test::CapturedFlow* flow =
        test::find_flow(test::corpus_capture_flows(row.capture), test::Transport::udp, row.client, row.server);
    ASSERT_NE(flow, nullptr) << row.capture << " " << row.client;
    ASSERT_FALSE(flow->client_datagrams.empty());
    ASSERT_TRUE(starts_quic_long_header(flow->client_datagrams.front())) << row.capture;
    parsers::QuicClientHelloReader reader(decryptor);
    FlowIdentity identity;
    for (const std::vector<uint8_t>& datagram : flow->client_datagrams) {
      identity = identify_quic(reader.add_datagram(datagram));
      if (identity.state != State::need_more) break;
    }
    ++checked;
    EXPECT_EQ(identity.state, State::identified) << row.capture << " " << row.client << " " << identity.detail;
    EXPECT_EQ(identity.l7, policy::L7Proto::quic);
    // "host:port" in SNI (some test clients send it) is no DNS name either.
    const bool no_name = row.expected_sni == "-" || policy::IpAddress::parse(row.expected_sni).has_value() ||
                         row.expected_sni.find(':') != std::string::npos;
    EXPECT_EQ(identity.name, no_name ? std::nullopt : std::optional<std::string>(row.expected_sni)) << row.capture;
  }
  EXPECT_GE(checked, 46u);
}

TEST(IdentifyQuic, UnknownVersionsAreLeftToThePolicyAndDnsIsNotQuic) {
  parsers::QuicInitialDecryptor decryptor;
  parsers::QuicClientHelloReader reader(decryptor);
  // A long header of version 0x1a2a3a4a (reserved for greasing), DCID of 8 bytes, padded.
  std::vector<uint8_t> grease = {0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0};
  grease.resize(1200, 0);
  const FlowIdentity identity = identify_quic(reader.add_datagram(grease));
  EXPECT_EQ(identity.state, State::identified);
  EXPECT_TRUE(identity.quic_unknown_version);
  // A DNS query's first byte is its ID: no long header unless by chance, and never then a valid one.
  EXPECT_FALSE(starts_quic_long_header(std::vector<uint8_t>{0x12, 0x34, 0x01, 0x00, 0x00, 0x01}));
}

std::shared_ptr<const policy::CompiledPolicy> compile(const std::string& yaml) {
  policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
  EXPECT_TRUE(loaded.policy.has_value());
  return policy::compile_policy(std::move(*loaded.policy));
}

PendingFlowFacts tcp_to(const char* dst, uint16_t port) {
  PendingFlowFacts facts;
  facts.src = *policy::IpAddress::parse("10.88.1.2");
  facts.dst = *policy::IpAddress::parse(dst);
  facts.dport = port;
  return facts;
}

FlowIdentity shown(policy::L7Proto l7, std::optional<std::string> name) {
  FlowIdentity identity;
  identity.state = State::identified;
  identity.l7 = l7;
  identity.name = std::move(name);
  return identity;
}

constexpr const char* kPolicy = R"(version: 1
defaults: {action: deny, sni_ip_binding: %s, ech: deny}
rules:
  - {name: allowed, dst: allowed.test, proto: https}
  - {name: plain, dst: allowed.test, proto: http}
  - {name: git, dst: 198.18.0.30, proto: ssh}
  - {name: no-evil, dst: evil.test, proto: any, action: deny}
  - {name: wide, dst: 198.18.0.0/24, proto: tls, ports: [8443]}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)";

std::string policy_with(const char* binding) {
  std::string yaml = kPolicy;
  yaml.replace(yaml.find("%s"), 2, binding);
  return yaml;
}

TEST(DecidePendingFlow, WithoutBindingTheNameAloneDecides) {
  const auto policy = compile(policy_with("off"));
  const PendingVerdict allowed = decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                                     shown(policy::L7Proto::tls, "allowed.test"));
  EXPECT_TRUE(allowed.allow);
  ASSERT_NE(allowed.rule, nullptr);
  EXPECT_EQ(allowed.rule->name, "allowed");
  EXPECT_EQ(allowed.group, 0u);
  const PendingVerdict other = decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                                   shown(policy::L7Proto::tls, "other.test"));
  EXPECT_FALSE(other.allow);
  EXPECT_EQ(other.reason, PC_DROP_DENIED_BY_DEFAULT);
}

TEST(DecidePendingFlow, WithDnsBindingANameMatchFailsClosedUntilBindingsExist) {
  const auto policy = compile(policy_with("dns"));
  const PendingVerdict verdict = decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                                     shown(policy::L7Proto::tls, "allowed.test"));
  EXPECT_FALSE(verdict.allow);
  EXPECT_EQ(verdict.reason, PC_DROP_NO_DNS_BINDING);
}

TEST(DecidePendingFlow, ADeniedNameIsDeniedWhateverTheAddressAllows) {
  const auto policy = compile(policy_with("dns"));
  // 198.18.0.20:8443 is allowed by address for TLS, but the flow claims a denied name.
  const PendingVerdict verdict = decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.20", 8443),
                                                     shown(policy::L7Proto::tls, "evil.test"));
  EXPECT_FALSE(verdict.allow);
  EXPECT_EQ(verdict.reason, PC_DROP_DENIED_BY_RULE);
  ASSERT_NE(verdict.rule, nullptr);
  EXPECT_EQ(verdict.rule->name, "no-evil");
  // Without SNI, the address rule decides.
  EXPECT_TRUE(decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.20", 8443),
                                  shown(policy::L7Proto::tls, std::nullopt))
                  .allow);
}

TEST(DecidePendingFlow, TheProtocolMustBeTheOneTheRuleNames) {
  const auto policy = compile(policy_with("off"));
  // HTTP to the TLS-only rule's port; bytes of no protocol to an ssh rule.
  EXPECT_FALSE(decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.20", 8443),
                                   shown(policy::L7Proto::http, "allowed.test"))
                   .allow);
  FlowIdentity garbage;
  garbage.state = State::unknown;
  const PendingVerdict verdict =
      decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.30", 22), garbage);
  EXPECT_FALSE(verdict.allow);
  EXPECT_EQ(verdict.reason, PC_DROP_L7_MISMATCH);
  EXPECT_TRUE(
      decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.30", 22), shown(policy::L7Proto::ssh, {}))
          .allow);
}

TEST(DecidePendingFlow, QuicOfAnUnknownVersionFollowsTheDefault) {
  FlowIdentity unknown;
  unknown.state = State::identified;
  unknown.l7 = policy::L7Proto::quic;
  unknown.quic_unknown_version = true;
  PendingFlowFacts facts = tcp_to("198.18.0.10", 443);
  facts.proto = policy::L4Proto::udp;
  std::string yaml = policy_with("off");
  const PendingVerdict denied = decide_pending_flow(*compile(yaml), policy::Mode::gateway, facts, unknown);
  EXPECT_FALSE(denied.allow);
  EXPECT_EQ(denied.reason, PC_DROP_QUIC_UNKNOWN_VERSION);
  yaml.replace(yaml.find("ech: deny"), 9, "ech: deny, quic_unknown_version: allow");
  EXPECT_TRUE(decide_pending_flow(*compile(yaml), policy::Mode::gateway, facts, unknown).allow);
}

TEST(DecidePendingFlow, HttpsAllowsQuicAndAUdpRuleDoesNotReadNames) {
  const auto policy = compile(policy_with("off"));
  PendingFlowFacts facts = tcp_to("198.18.0.10", 443);
  facts.proto = policy::L4Proto::udp;
  EXPECT_TRUE(
      decide_pending_flow(*policy, policy::Mode::gateway, facts, shown(policy::L7Proto::quic, "allowed.test")).allow);
  EXPECT_FALSE(
      decide_pending_flow(*policy, policy::Mode::gateway, facts, shown(policy::L7Proto::quic, "other.test")).allow);
  // tls rules are TCP only: 8443 over QUIC is not allowed by allowed-tls-8443's sibling address rule.
  facts.dport = 8443;
  EXPECT_FALSE(
      decide_pending_flow(*policy, policy::Mode::gateway, facts, shown(policy::L7Proto::quic, "allowed.test")).allow);
}

TEST(DecidePendingFlow, MalformedAndRefusedEchAreDenied) {
  const auto policy = compile(policy_with("off"));
  FlowIdentity malformed = shown(policy::L7Proto::tls, "allowed.test");
  malformed.state = State::malformed;
  EXPECT_EQ(decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.10", 443), malformed).reason,
            PC_DROP_L7_MALFORMED);
  FlowIdentity ech = shown(policy::L7Proto::tls, "allowed.test");
  ech.ech = true;
  const PendingVerdict verdict = decide_pending_flow(*policy, policy::Mode::gateway, tcp_to("198.18.0.10", 443), ech);
  EXPECT_FALSE(verdict.allow);
  EXPECT_EQ(verdict.reason, PC_DROP_ECH_REFUSED);
}

}  // namespace
}  // namespace portcullis::punt
