// DNS bindings: what an answer binds, to whom, for how long, and within what bound.
#include "punt/dns_bindings.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "policy/policy_loader.h"
#include "portcullis/parse.h"
#include "support/packet_builder.h"

namespace portcullis::punt {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;

policy::IpAddress ip(const char* text) {
  return *policy::IpAddress::parse(text);
}

TEST(DnsBindings, ABindingHoldsForItsClampedTtlAndOnlyForItsGroup) {
  DnsBindings bindings({.min_ttl = 30, .max_ttl = 600, .max_bindings = 100});
  bindings.bind(0, {"alias.test", "cdn.test"}, ip("198.18.0.10"), 5, 100 * kSecond);
  // Every name of the chain, the one address, the one group.
  EXPECT_TRUE(bindings.bound(0, "alias.test", ip("198.18.0.10"), 100 * kSecond));
  EXPECT_TRUE(bindings.bound(0, "cdn.test", ip("198.18.0.10"), 100 * kSecond));
  EXPECT_FALSE(bindings.bound(0, "alias.test", ip("198.18.0.20"), 100 * kSecond));
  EXPECT_FALSE(bindings.bound(1, "alias.test", ip("198.18.0.10"), 100 * kSecond));
  EXPECT_FALSE(bindings.bound(std::nullopt, "alias.test", ip("198.18.0.10"), 100 * kSecond));
  // A TTL of 5 s lives min_ttl (30 s).
  EXPECT_TRUE(bindings.bound(0, "alias.test", ip("198.18.0.10"), 129 * kSecond));
  EXPECT_FALSE(bindings.bound(0, "alias.test", ip("198.18.0.10"), 131 * kSecond));
  // A day-long TTL lives max_ttl.
  bindings.bind(0, {"long.test"}, ip("2001:db8::10"), 86400, 0);
  EXPECT_TRUE(bindings.bound(0, "long.test", ip("2001:db8::10"), 599 * kSecond));
  EXPECT_FALSE(bindings.bound(0, "long.test", ip("2001:db8::10"), 601 * kSecond));
  bindings.expire(601 * kSecond);
  EXPECT_EQ(bindings.size(), 0u);
}

TEST(DnsBindings, PastTheBoundTheLeastRecentlyConfirmedGoes) {
  DnsBindings bindings({.min_ttl = 30, .max_ttl = 600, .max_bindings = 2});
  bindings.bind(0, {"a.test"}, ip("198.18.0.1"), 60, 0);
  bindings.bind(0, {"b.test"}, ip("198.18.0.2"), 60, 0);
  bindings.bind(0, {"a.test"}, ip("198.18.0.1"), 60, 1);  // confirmed again: now the youngest
  bindings.bind(0, {"c.test"}, ip("198.18.0.3"), 60, 2);
  EXPECT_EQ(bindings.size(), 2u);
  EXPECT_TRUE(bindings.bound(0, "a.test", ip("198.18.0.1"), 3));
  EXPECT_FALSE(bindings.bound(0, "b.test", ip("198.18.0.2"), 3));
  EXPECT_TRUE(bindings.bound(0, "c.test", ip("198.18.0.3"), 3));
}

// A dnsmasq answer for "alias.test A": alias.test CNAME cdn.test, cdn.test A 198.18.0.10 (TTL 0), id 0x1234.
const test::Bytes kAliasAnswer = {
    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,  // header: 1 question, 2 answers
    0x05, 'a',  'l',  'i',  'a',  's',  0x04, 't',  'e',  's',  't',  0x00, 0x00, 0x01, 0x00, 0x01,  // question
    0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a,  // alias.test CNAME, rdlength 10
    0x03, 'c',  'd',  'n',  0x04, 't',  'e',  's',  't',  0x00,              //   cdn.test
    0xc0, 0x28, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04,  // cdn.test A, rdlength 4
    198,  18,   0,    10};

TEST(DnsTcpAnswers, AnswersOverTcpBindAsTheirMessagesComplete) {
  policy::LoadResult loaded = policy::load_policy(R"(version: 1
dns: {resolvers: [198.18.0.53], min_ttl: 30}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
                                                  "test.yaml");
  ASSERT_TRUE(loaded.policy.has_value());
  const auto policy = policy::compile_policy(std::move(*loaded.policy));
  // Two answers in one stream, each behind its length: the first split across segments, the second pipelined
  // behind it. (The stream starts at the first segment with data: the handshake is not copied to the daemon.)
  test::Bytes stream = {0x00, static_cast<uint8_t>(kAliasAnswer.size())};
  stream.insert(stream.end(), kAliasAnswer.begin(), kAliasAnswer.end());
  stream.insert(stream.end(), stream.begin(), stream.end());
  const auto segment = [](uint32_t seq, test::Bytes payload) {
    return test::PacketBuilder()
        .ipv4({.src = test::ipv4_address("198.18.0.53"), .dst = test::ipv4_address("10.88.1.2")})
        .tcp({.sport = 53, .dport = 40000, .flags = test::kTcpAck | test::kTcpPsh, .seq = seq, .payload = payload})
        .frame();
  };
  const size_t cut = 20;
  const test::Bytes head(stream.begin(), stream.begin() + cut);
  const test::Bytes tail(stream.begin() + cut, stream.end());
  DnsBindings bindings;
  DnsTcpAnswers answers;
  const auto add = [&](const test::Bytes& frame) {
    pc_packet pkt{};
    EXPECT_EQ(pc_parse_packet(frame.data(), frame.data() + frame.size(), &pkt), PC_DROP_NONE);
    return answers.add(bindings, *policy, pkt, frame, 0);
  };
  EXPECT_EQ(add(segment(1000, head)).answers, 0u) << "a message cut short reads nothing yet";
  EXPECT_EQ(bindings.size(), 0u);
  const DnsTcpAnswers::Learned whole = add(segment(1000 + cut, tail));
  EXPECT_EQ(whole.answers, 2u);
  EXPECT_EQ(whole.malformed, 0u);
  EXPECT_TRUE(bindings.bound(0, "alias.test", policy::IpAddress::v4(0xc612000a), 1));
  EXPECT_TRUE(bindings.bound(0, "cdn.test", policy::IpAddress::v4(0xc612000a), 1));
  EXPECT_EQ(add(segment(1000, head)).answers, 0u) << "a retransmission reads nothing twice";
  answers.expire(1);
  EXPECT_EQ(add(segment(5000, stream)).answers, 2u) << "a stream forgotten starts afresh at its next segment";
}

TEST(LearnFromAnswer, AnAnswerBindsEveryNameOfItsChainForTheClientsGroup) {
  policy::LoadResult loaded = policy::load_policy(R"(version: 1
dns: {resolvers: [198.18.0.53], min_ttl: 30}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
  - {name: other, sources: [10.88.2.0/24]}
)",
                                                  "test.yaml");
  ASSERT_TRUE(loaded.policy.has_value());
  const auto policy = policy::compile_policy(std::move(*loaded.policy));
  const test::Bytes frame =
      test::PacketBuilder()
          .ipv4({.src = test::ipv4_address("198.18.0.53"), .dst = test::ipv4_address("10.88.1.2")})
          .udp({.sport = 53, .dport = 40000, .payload = kAliasAnswer})
          .frame();
  DnsBindings bindings;
  const std::optional<size_t> made = learn_from_answer(bindings, *policy, frame, 0);
  ASSERT_TRUE(made.has_value());
  EXPECT_EQ(*made, 2u);
  EXPECT_TRUE(bindings.bound(0, "alias.test", ip("198.18.0.10"), kSecond));
  EXPECT_TRUE(bindings.bound(0, "cdn.test", ip("198.18.0.10"), kSecond));
  EXPECT_FALSE(bindings.bound(1, "alias.test", ip("198.18.0.10"), kSecond)) << "another group's";
  // Not a DNS answer: nothing learned, and said so.
  const test::Bytes junk = test::PacketBuilder()
                               .ipv4({.src = test::ipv4_address("198.18.0.53"), .dst = test::ipv4_address("10.88.1.2")})
                               .udp({.sport = 53, .dport = 40000, .payload = {1, 2, 3}})
                               .frame();
  EXPECT_FALSE(learn_from_answer(bindings, *policy, junk, 0).has_value());
}

std::shared_ptr<const policy::CompiledPolicy> compile(const std::string& yaml) {
  policy::LoadResult loaded = policy::load_policy(yaml, "test.yaml");
  EXPECT_TRUE(loaded.policy.has_value());
  return policy::compile_policy(std::move(*loaded.policy));
}

PendingFlowFacts tcp_to(const char* dst, uint16_t port) {
  PendingFlowFacts facts;
  facts.src = ip("10.88.1.2");
  facts.dst = ip(dst);
  facts.dport = port;
  return facts;
}

// A flow held from its SYN (PC_DROP_BOUND_NAME): the daemon decides it before it shows anything.
FlowIdentity nothing_shown() {
  FlowIdentity identity;
  identity.state = FlowIdentity::State::unknown;
  return identity;
}

FlowIdentity tls_showing(std::optional<std::string> sni) {
  FlowIdentity identity;
  identity.state = FlowIdentity::State::identified;
  identity.l7 = policy::L7Proto::tls;
  identity.name = std::move(sni);
  return identity;
}

// sandbox (10.88.1.0/24) was told evil.test is 198.18.0.10; 198.18.0.20 is bound to nothing.
DnsBindings evil_bound() {
  DnsBindings bindings;
  bindings.bind(0, {"evil.test"}, ip("198.18.0.10"), 300, 0);
  return bindings;
}

TEST(DecideWithBindings, AnL4DenyOfABoundNameDeniesWhatAnAddressRuleOrTheDefaultAllows) {
  const DnsBindings bindings = evil_bound();
  for (const char* yaml : {R"(version: 1
defaults: {action: deny}
rules:
  - {name: web, dst: 198.18.0.0/24, proto: tcp, ports: [443]}
  - {name: no-evil, dst: evil.test, proto: tcp, ports: [443], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)",
                           R"(version: 1
defaults: {action: allow}
rules:
  - {name: no-evil, dst: evil.test, proto: tcp, ports: [443], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)"}) {
    const auto policy = compile(yaml);
    const PendingVerdict bound = decide_with_bindings(*policy, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                                      nothing_shown(), bindings, kSecond);
    EXPECT_FALSE(bound.allow) << yaml;
    EXPECT_EQ(bound.reason, PC_DROP_DENIED_BY_RULE) << yaml;
    ASSERT_NE(bound.rule, nullptr) << yaml;
    EXPECT_EQ(bound.rule->name, "no-evil");
    EXPECT_TRUE(decide_with_bindings(*policy, policy::Mode::gateway, tcp_to("198.18.0.20", 443), nothing_shown(),
                                     bindings, kSecond)
                    .allow)
        << "an address bound to no name: " << yaml;
  }
}

TEST(DecideWithBindings, ADenyOfSshToABoundNameWaitsForTheFlowsFirstBytes) {
  const DnsBindings bindings = evil_bound();
  const auto ssh_deny = compile(R"(version: 1
defaults: {action: allow}
rules:
  - {name: no-evil-ssh, dst: evil.test, proto: ssh, action: deny}
  - {name: no-evil-tcp, dst: evil.test, proto: tcp, ports: [2222], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)");
  // At the SYN nothing says SSH: only the first bytes can.
  EXPECT_FALSE(decide_at_syn(*ssh_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 22), bindings, kSecond));
  FlowIdentity ssh;
  ssh.state = FlowIdentity::State::identified;
  ssh.l7 = policy::L7Proto::ssh;
  const PendingVerdict denied =
      decide_with_bindings(*ssh_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 22), ssh, bindings, kSecond);
  EXPECT_FALSE(denied.allow);
  ASSERT_NE(denied.rule, nullptr);
  EXPECT_EQ(denied.rule->name, "no-evil-ssh");
  EXPECT_TRUE(decide_with_bindings(*ssh_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 22), nothing_shown(),
                                   bindings, kSecond)
                  .allow)
      << "other bytes on the port are no SSH";
  EXPECT_TRUE(decide_at_syn(*ssh_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 2222), bindings, kSecond))
      << "a deny of tcp decides at the SYN";
  EXPECT_TRUE(decide_at_syn(*ssh_deny, policy::Mode::gateway, tcp_to("198.18.0.20", 22), bindings, kSecond))
      << "an address bound to no name";
}

TEST(DecideWithBindings, AFlowShowingANameIsDeniedByAnL4DenyOfANameItsAddressIsBoundTo) {
  const DnsBindings bindings = evil_bound();
  const auto l4_deny = compile(R"(version: 1
defaults: {action: allow}
rules:
  - {name: no-evil, dst: evil.test, proto: tcp, ports: [443], action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)");
  const PendingVerdict denied = decide_with_bindings(*l4_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                                     tls_showing("good.test"), bindings, kSecond);
  EXPECT_FALSE(denied.allow);
  EXPECT_EQ(denied.reason, PC_DROP_DENIED_BY_RULE);
  ASSERT_NE(denied.rule, nullptr);
  EXPECT_EQ(denied.rule->name, "no-evil");
  EXPECT_TRUE(decide_with_bindings(*l4_deny, policy::Mode::gateway, tcp_to("198.18.0.20", 443),
                                   tls_showing("good.test"), bindings, kSecond)
                  .allow);
  // A ClientHello without SNI, the same.
  const PendingVerdict unnamed = decide_with_bindings(*l4_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                                      tls_showing(std::nullopt), bindings, kSecond);
  EXPECT_FALSE(unnamed.allow);
  EXPECT_EQ(unnamed.reason, PC_DROP_DENIED_BY_RULE);

  // A deny of the name shown (https) matches only the name the flow shows, whatever its address is bound to.
  const auto shown_deny = compile(R"(version: 1
defaults: {action: allow}
rules:
  - {name: no-evil, dst: evil.test, proto: https, action: deny}
groups:
  - {name: sandbox, sources: [10.88.1.0/24]}
)");
  EXPECT_TRUE(decide_with_bindings(*shown_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                   tls_showing("good.test"), bindings, kSecond)
                  .allow);
  EXPECT_FALSE(decide_with_bindings(*shown_deny, policy::Mode::gateway, tcp_to("198.18.0.10", 443),
                                    tls_showing("evil.test"), bindings, kSecond)
                   .allow);
}

}  // namespace
}  // namespace portcullis::punt
