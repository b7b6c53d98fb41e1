#include "parsers/dns_message.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"
#include "support/pcap_flows.h"
#include "support/sni_corpus.h"

namespace portcullis::parsers {
namespace {

using Reason = DnsReason;
using Bytes = std::vector<uint8_t>;

constexpr uint16_t kQueryFlags = 0x0100;     // RD
constexpr uint16_t kResponseFlags = 0x8180;  // QR RD RA, NOERROR
constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeTxt = 16;
constexpr uint16_t kTypeAaaa = 28;
constexpr uint16_t kTypeSvcb = 64;
constexpr uint16_t kTypeHttps = 65;
constexpr uint16_t kClassIn = 1;
constexpr uint16_t kClassChaos = 3;
constexpr size_t kQuestionNameOffset = 12;

// ---- real messages: dnsmasq 2.90 answering dig 9.18 ------------------------------------------
// dnsmasq --host-record=allowed.test,198.18.0.10,2001:db8::10 --cname=www.allowed.test,allowed.test
//         --cname=cdn.allowed.test,www.allowed.test --dns-rr=allowed.test,65,<HTTPS: 1 . alpn=h2
//         ipv4hint=198.18.0.10 ipv6hint=2001:db8::10>, captured with tcpdump (fuzz/corpus/dns_message
// holds the same messages as seeds).

// `dig cdn.allowed.test A`, with EDNS and a cookie.
constexpr std::string_view kQueryAEdns =
    "f6de012000010000000000010363646e07616c6c6f7765640474657374000001000100002904d000000000000c000a0008edb80aa48e27a8"
    "d5";
// Its answer: cdn -> www -> allowed.test, A 198.18.0.10, an OPT record.
constexpr std::string_view kAnswerACnameChain =
    "f6de858000010003000000010363646e07616c6c6f77656404746573740000010001c00c0005000100000000001203777777"
    "07616c6c6f776564047465737400c02e0005000100000000000e07616c6c6f776564047465737400c04c00010001000000"
    "000004c612000a00002904d0000000000000";
// `dig cdn.allowed.test AAAA +noedns`'s answer: the same chain, AAAA 2001:db8::10.
constexpr std::string_view kAnswerAaaaCnameChain =
    "6fca858000010003000000000363646e07616c6c6f776564047465737400001c0001c00c0005000100000000001203777777"
    "07616c6c6f776564047465737400c02e0005000100000000000e07616c6c6f776564047465737400c04c001c0001000000"
    "00001020010db8000000000000000000000010";
// `dig WWW.Allowed.Test A +noedns` and its answer, which keeps the query's case in the question.
constexpr std::string_view kQueryMixedCase = "2f1d012000010000000000000357575707416c6c6f77656404546573740000010001";
constexpr std::string_view kAnswerMixedCase =
    "2f1d858000010002000000000357575707416c6c6f77656404546573740000010001c00c0005000100000000000e07616c6c"
    "6f776564047465737400c02e00010001000000000004c612000a";
// `dig allowed.test HTTPS`'s answer: ServiceMode, alpn h2, both hints.
constexpr std::string_view kAnswerHttpsHints =
    "7eb08580000100010000000107616c6c6f77656404746573740000410001c00c004100010000000000260001000001000302"
    "683200040004c612000a0006001020010db800000000000000000000001000002904d0000000000000";
// `dig www.allowed.test HTTPS +noedns`'s answer: a CNAME, then the HTTPS record of its target.
constexpr std::string_view kAnswerHttpsViaCname =
    "12d9858000010002000000000377777707616c6c6f77656404746573740000410001c00c0005000100000000000e07616c6c"
    "6f776564047465737400c02e004100010000000000260001000001000302683200040004c612000a0006001020010db80000"
    "00000000000000000010";
// The HTTPS answer when --dns-rr was given a stray byte: ipv4hint with length 0 (dig: FORMERR).
constexpr std::string_view kAnswerHttpsEmptyHint =
    "3e338580000100010000000107616c6c6f77656404746573740000410001c00c00410001000000000027000100000100030"
    "268320004000004c612000a0006001020010db800000000000000000000001000002904d0000000000000";
// `dig nothere.example A +noedns` with --no-resolv: REFUSED, no records.
constexpr std::string_view kAnswerRefused = "f3a881850001000000000000076e6f7468657265076578616d706c650000010001";
// `dig +tcp cdn.allowed.test A`'s answer, as the server's side of the TCP stream (length prefix first).
constexpr std::string_view kTcpAnswerACnameChain =
    "0075c114858000010003000000010363646e07616c6c6f77656404746573740000010001c00c000500010000000000120377"
    "777707616c6c6f776564047465737400c02e0005000100000000000e07616c6c6f776564047465737400c04c000100010000"
    "00000004c612000a00002904d0000000000000";

Bytes from_hex(std::string_view hex) {
  Bytes bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return bytes;
}

// ---- building messages -----------------------------------------------------------------------

void put16(Bytes& bytes, size_t value) {
  bytes.push_back(static_cast<uint8_t>(value >> 8));
  bytes.push_back(static_cast<uint8_t>(value));
}

void put32(Bytes& bytes, uint32_t value) {
  put16(bytes, value >> 16);
  put16(bytes, value & 0xffff);
}

void append(Bytes& to, const Bytes& from) {
  to.insert(to.end(), from.begin(), from.end());
}

Bytes header(uint16_t flags, size_t questions, size_t answers, size_t authority = 0, size_t additional = 0) {
  Bytes bytes;
  put16(bytes, 0x1234);
  put16(bytes, flags);
  put16(bytes, questions);
  put16(bytes, answers);
  put16(bytes, authority);
  put16(bytes, additional);
  return bytes;
}

// Labels of a dotted name, uncompressed, with the root label.
Bytes wire_name(std::string_view dotted) {
  Bytes bytes;
  while (!dotted.empty()) {
    const size_t dot = std::min(dotted.find('.'), dotted.size());
    bytes.push_back(static_cast<uint8_t>(dot));
    bytes.insert(bytes.end(), dotted.begin(), dotted.begin() + static_cast<std::ptrdiff_t>(dot));
    dotted.remove_prefix(std::min(dot + 1, dotted.size()));
  }
  bytes.push_back(0);
  return bytes;
}

Bytes pointer(size_t offset) {
  return {static_cast<uint8_t>(0xc0 | (offset >> 8)), static_cast<uint8_t>(offset)};
}

Bytes question(const Bytes& name, uint16_t type = kTypeA) {
  Bytes bytes = name;
  put16(bytes, type);
  put16(bytes, kClassIn);
  return bytes;
}

Bytes record(const Bytes& owner, uint16_t type, const Bytes& rdata, uint16_t rclass = kClassIn) {
  Bytes bytes = owner;
  put16(bytes, type);
  put16(bytes, rclass);
  put32(bytes, 300);
  put16(bytes, rdata.size());
  append(bytes, rdata);
  return bytes;
}

Bytes query_for(std::string_view name, uint16_t flags = kQueryFlags) {
  Bytes bytes = header(flags, 1, 0);
  append(bytes, question(wire_name(name)));
  return bytes;
}

// A response for example.test (its name at offset 12) with these answer records.
Bytes response_with(const std::vector<Bytes>& answers) {
  Bytes bytes = header(kResponseFlags, 1, answers.size());
  append(bytes, question(wire_name("example.test")));
  for (const Bytes& answer : answers) {
    append(bytes, answer);
  }
  return bytes;
}

Bytes ipv4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return {a, b, c, d};
}

Bytes ipv6_ending(uint8_t last) {
  Bytes bytes{0x20, 0x01, 0x0d, 0xb8};
  bytes.resize(16);
  bytes.back() = last;
  return bytes;
}

std::array<uint8_t, 16> padded(const Bytes& address) {
  std::array<uint8_t, 16> bytes{};
  std::ranges::copy(address, bytes.begin());
  return bytes;
}

// SVCB/HTTPS RDATA: priority, the root as target, then each (key, value) as given.
Bytes service_binding(uint16_t priority, const std::vector<std::pair<uint16_t, Bytes>>& params) {
  Bytes bytes;
  put16(bytes, priority);
  bytes.push_back(0);
  for (const auto& [key, value] : params) {
    put16(bytes, key);
    put16(bytes, value.size());
    append(bytes, value);
  }
  return bytes;
}

DnsMessage parse(const Bytes& message, DnsDirection direction = DnsDirection::any) {
  return parse_dns_message(message, direction);
}

void expect_malformed(const Bytes& message, Reason reason) {
  const DnsMessage result = parse(message);
  EXPECT_EQ(to_string(result.status), to_string(ParseStatus::malformed));
  EXPECT_EQ(to_string(result.reason), to_string(reason));
  EXPECT_TRUE(result.addresses.empty());
  EXPECT_TRUE(result.cnames.empty());
}

// ---- reason names ----------------------------------------------------------------------------

TEST(DnsReason, EveryReasonHasADistinctKebabCaseName) {
  std::vector<std::string_view> names;
  for (auto value = static_cast<uint8_t>(Reason::none); value <= static_cast<uint8_t>(Reason::question_count);
       ++value) {
    const std::string_view name = to_string(static_cast<Reason>(value));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(std::ranges::all_of(name, [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; })) << name;
    names.push_back(name);
  }
  std::ranges::sort(names);
  EXPECT_EQ(std::ranges::adjacent_find(names), names.end());
  EXPECT_EQ(to_string(Reason::pointer_out_of_bounds), "pointer-out-of-bounds");
  EXPECT_EQ(to_string(Reason::question_count), "question-count");
}

// ---- real messages ---------------------------------------------------------------------------

TEST(DnsMessage, ReadsDnsmasqCnameChainWithItsAddress) {
  const DnsMessage message = parse(from_hex(kAnswerACnameChain), DnsDirection::response);
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.id, 0xf6de);
  EXPECT_TRUE(message.response);
  EXPECT_EQ(message.rcode, 0);
  EXPECT_TRUE(message.recursion_desired);
  EXPECT_FALSE(message.truncated_flag);
  EXPECT_EQ(message.question.name, "cdn.allowed.test");
  EXPECT_EQ(message.question.type, kTypeA);
  EXPECT_EQ(message.question.qclass, kClassIn);
  EXPECT_EQ(message.question_end, 34U);
  ASSERT_EQ(message.cnames.size(), 2U);
  EXPECT_EQ(message.cnames[0].name, "cdn.allowed.test");
  EXPECT_EQ(message.cnames[0].target, "www.allowed.test");
  EXPECT_EQ(message.cnames[1].name, "www.allowed.test");
  EXPECT_EQ(message.cnames[1].target, "allowed.test");
  ASSERT_EQ(message.addresses.size(), 1U);
  EXPECT_EQ(message.addresses[0].name, "allowed.test");
  EXPECT_FALSE(message.addresses[0].v6);
  EXPECT_EQ(message.addresses[0].address, padded(ipv4(198, 18, 0, 10)));
  EXPECT_EQ(message.addresses[0].ttl, 0U);
  EXPECT_EQ(cname_chain(message, message.question.name),
            (std::vector<std::string>{"cdn.allowed.test", "www.allowed.test", "allowed.test"}));
}

TEST(DnsMessage, ReadsDnsmasqAaaaAnswer) {
  const DnsMessage message = parse(from_hex(kAnswerAaaaCnameChain));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.question.type, kTypeAaaa);
  EXPECT_EQ(message.cnames.size(), 2U);
  ASSERT_EQ(message.addresses.size(), 1U);
  EXPECT_TRUE(message.addresses[0].v6);
  EXPECT_EQ(message.addresses[0].address, padded(ipv6_ending(0x10)));
}

TEST(DnsMessage, LowerCasesNamesSentInMixedCase) {
  const DnsMessage query = parse(from_hex(kQueryMixedCase), DnsDirection::query);
  ASSERT_EQ(query.status, ParseStatus::found) << to_string(query.reason);
  EXPECT_EQ(query.question.name, "www.allowed.test");
  const DnsMessage answer = parse(from_hex(kAnswerMixedCase), DnsDirection::response);
  ASSERT_EQ(answer.status, ParseStatus::found) << to_string(answer.reason);
  EXPECT_EQ(answer.question.name, "www.allowed.test");
  ASSERT_EQ(answer.cnames.size(), 1U);
  EXPECT_EQ(answer.cnames[0].name, "www.allowed.test");
  EXPECT_EQ(cname_chain(answer, "www.allowed.test"), (std::vector<std::string>{"www.allowed.test", "allowed.test"}));
}

TEST(DnsMessage, ReadsQueriesWithAnEdnsRecord) {
  const DnsMessage query = parse(from_hex(kQueryAEdns), DnsDirection::query);
  ASSERT_EQ(query.status, ParseStatus::found) << to_string(query.reason);
  EXPECT_FALSE(query.response);
  EXPECT_EQ(query.question.name, "cdn.allowed.test");
  EXPECT_TRUE(query.addresses.empty());
}

TEST(DnsMessage, TakesHttpsHintsAsAddressesOfTheOwner) {
  const DnsMessage message = parse(from_hex(kAnswerHttpsHints));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.question.type, kTypeHttps);
  ASSERT_EQ(message.addresses.size(), 2U);
  EXPECT_EQ(message.addresses[0].name, "allowed.test");
  EXPECT_EQ(message.addresses[0].address, padded(ipv4(198, 18, 0, 10)));
  EXPECT_FALSE(message.addresses[0].v6);
  EXPECT_EQ(message.addresses[1].name, "allowed.test");
  EXPECT_EQ(message.addresses[1].address, padded(ipv6_ending(0x10)));
  EXPECT_TRUE(message.addresses[1].v6);

  const DnsMessage via_cname = parse(from_hex(kAnswerHttpsViaCname));
  ASSERT_EQ(via_cname.status, ParseStatus::found) << to_string(via_cname.reason);
  EXPECT_EQ(cname_chain(via_cname, "www.allowed.test"), (std::vector<std::string>{"www.allowed.test", "allowed.test"}));
  EXPECT_EQ(via_cname.addresses.size(), 2U);
}

TEST(DnsMessage, RefusesHttpsRecordWithAnEmptyHint) {
  expect_malformed(from_hex(kAnswerHttpsEmptyHint), Reason::rdata_length);
}

TEST(DnsMessage, ReadsRefusalWithoutRecords) {
  const DnsMessage message = parse(from_hex(kAnswerRefused));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.rcode, 5);
  EXPECT_EQ(message.question.name, "nothere.example");
  EXPECT_TRUE(message.addresses.empty());
}

// ---- TCP -------------------------------------------------------------------------------------

TEST(DnsTcpStream, ReadsTheFirstMessageOnceWholeAndNeedsMoreBefore) {
  const Bytes stream = from_hex(kTcpAnswerACnameChain);
  for (size_t length = 0; length < stream.size(); ++length) {
    EXPECT_EQ(parse_dns_tcp_stream(std::span(stream).first(length)).status, ParseStatus::need_more) << length;
  }
  const DnsMessage message = parse_dns_tcp_stream(stream, DnsDirection::response);
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.id, 0xc114);
  EXPECT_EQ(message.question_end, 34U);
  EXPECT_EQ(message.addresses.size(), 1U);
  EXPECT_EQ(message.cnames.size(), 2U);

  Bytes two_messages = stream;
  append(two_messages, stream);
  EXPECT_EQ(parse_dns_tcp_stream(two_messages).id, 0xc114);
  EXPECT_EQ(parse_dns_tcp_stream(two_messages).status, ParseStatus::found);
}

TEST(DnsTcpStream, RefusesALengthBelowAHeaderFromThePrefixAlone) {
  const DnsMessage message = parse_dns_tcp_stream(Bytes{0x00, 0x0b});
  EXPECT_EQ(message.status, ParseStatus::malformed);
  EXPECT_EQ(message.reason, Reason::header_truncated);
}

TEST(DnsTcpStream, RefusesBytesAfterTheMessageWithinItsLength) {
  Bytes stream;
  const Bytes query = query_for("example.test");
  put16(stream, query.size() + 1);
  append(stream, query);
  stream.push_back(0);
  EXPECT_EQ(parse_dns_tcp_stream(stream).reason, Reason::trailing_data);
}

// ---- header and question ---------------------------------------------------------------------

TEST(DnsMessage, RefusesAMessageShorterThanAHeader) {
  Bytes message = query_for("example.test");
  message.resize(11);
  expect_malformed(message, Reason::header_truncated);
  expect_malformed({}, Reason::header_truncated);
}

TEST(DnsMessage, RefusesAQuestionCutShortAsMalformedNotNeedMore) {
  const Bytes message = query_for("example.test");
  for (size_t length = 12; length < message.size(); ++length) {
    expect_malformed(Bytes(message.begin(), message.begin() + static_cast<std::ptrdiff_t>(length)),
                     Reason::question_truncated);
  }
}

TEST(DnsMessage, RequiresExactlyOneQuestion) {
  expect_malformed(header(kQueryFlags, 0, 0), Reason::question_count);
  Bytes two = header(kQueryFlags, 2, 0);
  append(two, question(wire_name("a.test")));
  append(two, question(wire_name("b.test")));
  expect_malformed(two, Reason::question_count);
}

TEST(DnsMessage, RefusesOpcodesOtherThanQuery) {
  constexpr uint16_t kNotify = 4 << 11;
  constexpr uint16_t kUpdate = 5 << 11;
  expect_malformed(query_for("example.test", kNotify), Reason::opcode);
  expect_malformed(query_for("example.test", kUpdate | 0x8000), Reason::opcode);
}

TEST(DnsMessage, RefusesTheOtherDirectionWhenOneIsExpected) {
  const Bytes query = query_for("example.test");
  const Bytes response = response_with({});
  EXPECT_EQ(parse(query, DnsDirection::response).reason, Reason::not_a_response);
  EXPECT_EQ(parse(response, DnsDirection::query).reason, Reason::not_a_query);
  EXPECT_EQ(parse(query, DnsDirection::query).status, ParseStatus::found);
  EXPECT_EQ(parse(response, DnsDirection::response).status, ParseStatus::found);
  const DnsMessage refused = parse(response, DnsDirection::query);
  EXPECT_EQ(refused.id, 0x1234) << "header fields stay readable on a refused message";
  EXPECT_TRUE(refused.question.name.empty());
}

TEST(DnsMessage, ReadsTheRootAsAnEmptyName) {
  const DnsMessage message = parse(query_for(""));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.question.name, "");
  EXPECT_EQ(message.question_end, 17U);
}

// ---- names -----------------------------------------------------------------------------------

std::string labels_of_lengths(const std::vector<size_t>& lengths) {
  std::string name;
  for (const size_t length : lengths) {
    name += (name.empty() ? "" : ".") + std::string(length, 'x');
  }
  return name;
}

TEST(DnsName, Accepts255WireBytesAndRefuses256) {
  const std::string longest = labels_of_lengths({63, 63, 63, 61});
  ASSERT_EQ(wire_name(longest).size(), 255U);
  const DnsMessage message = parse(query_for(longest));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.question.name, longest);
  EXPECT_EQ(message.question.name.size(), 253U);

  const std::string too_long = labels_of_lengths({63, 63, 63, 62});
  ASSERT_EQ(wire_name(too_long).size(), 256U);
  expect_malformed(query_for(too_long), Reason::name_too_long);
}

TEST(DnsName, CountsTheLabelsAPointerLeadsToTowardsTheLengthLimit) {
  // The question holds 241 wire bytes; the owner adds one 14-byte label before pointing to it.
  const std::string base = labels_of_lengths({63, 63, 63, 47});
  ASSERT_EQ(wire_name(base).size(), 241U);
  Bytes owner = wire_name(std::string(13, 'y'));
  owner.pop_back();
  append(owner, pointer(kQuestionNameOffset));
  Bytes fits = header(kResponseFlags, 1, 1);
  append(fits, question(wire_name(base)));
  append(fits, record(owner, kTypeA, ipv4(192, 0, 2, 1)));
  const DnsMessage message = parse(fits);
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  ASSERT_EQ(message.addresses.size(), 1U);
  EXPECT_EQ(message.addresses[0].name, std::string(13, 'y') + "." + base);

  owner = wire_name(std::string(14, 'y'));
  owner.pop_back();
  append(owner, pointer(kQuestionNameOffset));
  Bytes too_long = header(kResponseFlags, 1, 1);
  append(too_long, question(wire_name(base)));
  append(too_long, record(owner, kTypeA, ipv4(192, 0, 2, 1)));
  expect_malformed(too_long, Reason::name_too_long);
}

TEST(DnsName, EscapesBytesThatAreNotVisibleAsciiAndDotsInsideALabel) {
  Bytes name{3, 'a', '.', 'b', 3, ' ', 0xff, '\\', 4, 'T', 'E', 'S', 'T', 0};
  Bytes message = header(kQueryFlags, 1, 0);
  append(message, question(name));
  const DnsMessage result = parse(message);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.question.name, "a\\046b.\\032\\255\\092.test");
}

TEST(DnsName, RefusesExtendedAndReservedLabelTypes) {
  for (const uint8_t type : {uint8_t{0x40}, uint8_t{0x80}, uint8_t{0x7f}, uint8_t{0xbf}}) {
    Bytes message = header(kQueryFlags, 1, 0);
    append(message, question({type, 'a', 0}));
    expect_malformed(message, Reason::bad_label_type);
  }
}

TEST(DnsName, FollowsPointersToEarlierNames) {
  Bytes www = {3, 'w', 'w', 'w'};
  append(www, pointer(kQuestionNameOffset));
  const DnsMessage message = parse(response_with({record(pointer(kQuestionNameOffset), kTypeCname, www)}));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  ASSERT_EQ(message.cnames.size(), 1U);
  EXPECT_EQ(message.cnames[0].name, "example.test");
  EXPECT_EQ(message.cnames[0].target, "www.example.test");
}

TEST(DnsName, RefusesAPointerToItself) {
  Bytes message = response_with({});
  message[7] = 1;  // ANCOUNT
  append(message, record(pointer(message.size()), kTypeA, ipv4(192, 0, 2, 1)));
  expect_malformed(message, Reason::pointer_loop);
}

TEST(DnsName, RefusesAPointerBackIntoTheNameItEnds) {
  Bytes message = response_with({});
  message[7] = 1;
  Bytes owner{1, 'a'};
  append(owner, pointer(message.size()));
  append(message, record(owner, kTypeA, ipv4(192, 0, 2, 1)));
  expect_malformed(message, Reason::pointer_loop);
}

TEST(DnsName, RefusesTwoPointersToEachOtherByTheForwardOne) {
  // The CNAME's owner is a pointer to its target, and the target a pointer back to the owner:
  // whichever is read first, one of the two points forward, and that is what is refused.
  Bytes message = response_with({});
  message[7] = 1;
  const size_t owner_offset = message.size();
  const size_t target_offset = owner_offset + 2 + 10;  // after the owner pointer and the fixed fields
  append(message, record(pointer(target_offset), kTypeCname, pointer(owner_offset)));
  expect_malformed(message, Reason::pointer_forward);

  // The pair side by side in a TXT record, entered through the second by a later record's owner:
  // the owner's pointer and the second lead back, the first then points forward.
  Bytes pair = response_with({});
  pair[7] = 2;
  const size_t rdata_offset = pair.size() + 2 + 10;
  Bytes pointers = pointer(rdata_offset + 2);
  append(pointers, pointer(rdata_offset));
  append(pair, record(pointer(kQuestionNameOffset), kTypeTxt, pointers));
  append(pair, record(pointer(rdata_offset + 2), kTypeA, ipv4(192, 0, 2, 1)));
  expect_malformed(pair, Reason::pointer_forward);
}

TEST(DnsName, RefusesPointersIntoTheHeaderOrPastTheEnd) {
  expect_malformed(response_with({record(pointer(4), kTypeA, ipv4(192, 0, 2, 1))}), Reason::pointer_out_of_bounds);
  expect_malformed(response_with({record(pointer(0x3fff), kTypeA, ipv4(192, 0, 2, 1))}), Reason::pointer_out_of_bounds);
  // A question name cannot be compressed: everything before it is header, and at its own offset
  // a pointer points to itself.
  Bytes into_header = header(kQueryFlags, 1, 0);
  append(into_header, question(pointer(4)));
  expect_malformed(into_header, Reason::pointer_out_of_bounds);
  Bytes to_itself = header(kQueryFlags, 1, 0);
  append(to_itself, question(pointer(kQuestionNameOffset)));
  expect_malformed(to_itself, Reason::pointer_loop);
}

TEST(DnsName, RefusesAPointerToALaterOffset) {
  Bytes message = response_with({});
  message[7] = 2;
  const size_t first = message.size();
  append(message, record(pointer(first + 16), kTypeA, ipv4(192, 0, 2, 1)));
  append(message, record(wire_name("later.test"), kTypeA, ipv4(192, 0, 2, 2)));
  expect_malformed(message, Reason::pointer_forward);
}

// A TXT record full of pointers, each to the one before it (the first to the question), then an A
// record whose owner points to the last: `chain` pointers plus the owner's.
Bytes pointer_chain_message(size_t chain) {
  Bytes message = response_with({});
  message[7] = 2;
  const size_t rdata_offset = message.size() + 2 + 10;
  Bytes rdata = pointer(kQuestionNameOffset);
  for (size_t i = 1; i < chain; ++i) {
    append(rdata, pointer(rdata_offset + 2 * (i - 1)));
  }
  append(message, record(pointer(kQuestionNameOffset), kTypeTxt, rdata));
  append(message, record(pointer(rdata_offset + 2 * (chain - 1)), kTypeA, ipv4(192, 0, 2, 1)));
  return message;
}

TEST(DnsName, BoundsTheJumpsOfOneName) {
  const DnsMessage longest = parse(pointer_chain_message(kMaxDnsPointerJumps - 1));
  ASSERT_EQ(longest.status, ParseStatus::found) << to_string(longest.reason);
  EXPECT_EQ(longest.addresses.at(0).name, "example.test");
  expect_malformed(pointer_chain_message(kMaxDnsPointerJumps), Reason::too_many_pointers);
}

// ---- records ---------------------------------------------------------------------------------

TEST(DnsRecord, RefusesAMessageThatEndsInsideARecord) {
  const Bytes whole = response_with({record(pointer(kQuestionNameOffset), kTypeA, ipv4(192, 0, 2, 1))});
  const size_t question_end = 12 + 14 + 4;
  ASSERT_EQ(parse(whole).status, ParseStatus::found);
  for (size_t length = question_end; length < whole.size(); ++length) {
    expect_malformed(Bytes(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(length)),
                     Reason::record_truncated);
  }
}

TEST(DnsRecord, RefusesAddressesOfTheWrongLength) {
  const Bytes owner = pointer(kQuestionNameOffset);
  expect_malformed(response_with({record(owner, kTypeA, {192, 0, 2, 1, 0})}), Reason::rdata_length);
  expect_malformed(response_with({record(owner, kTypeA, ipv6_ending(1))}), Reason::rdata_length);
  expect_malformed(response_with({record(owner, kTypeAaaa, ipv4(192, 0, 2, 1))}), Reason::rdata_length);
}

TEST(DnsRecord, RefusesACnameWhoseNameDoesNotEndAtItsRdlength) {
  const Bytes owner = pointer(kQuestionNameOffset);
  Bytes longer = wire_name("target.test");
  longer.push_back(0);
  expect_malformed(response_with({record(owner, kTypeCname, longer)}), Reason::rdata_length);
  Bytes shorter = wire_name("target.test");
  shorter.pop_back();
  expect_malformed(response_with({record(owner, kTypeCname, shorter), record(owner, kTypeA, ipv4(192, 0, 2, 1))}),
                   Reason::rdata_length);
}

TEST(DnsRecord, SkipsOtherTypesAndClasses) {
  const Bytes owner = pointer(kQuestionNameOffset);
  const DnsMessage message = parse(response_with({
      record(owner, kTypeTxt, {3, 'a', 'b', 'c'}),
      record(owner, kTypeA, ipv4(192, 0, 2, 1), kClassChaos),
      record(owner, kTypeCname, {7}, kClassChaos),
      record(owner, kTypeA, ipv4(192, 0, 2, 2)),
  }));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  ASSERT_EQ(message.addresses.size(), 1U);
  EXPECT_EQ(message.addresses[0].address, padded(ipv4(192, 0, 2, 2)));
  EXPECT_TRUE(message.cnames.empty());
}

TEST(DnsRecord, WalksAuthorityAndAdditionalRecordsWithoutReadingThem) {
  Bytes message = response_with({record(pointer(kQuestionNameOffset), kTypeA, ipv4(192, 0, 2, 1))});
  message[9] = 1;   // NSCOUNT
  message[11] = 1;  // ARCOUNT
  append(message, record(pointer(kQuestionNameOffset), kTypeA, ipv4(192, 0, 2, 9)));
  Bytes additional = record(wire_name(""), 41, {});
  const DnsMessage result = parse(message);
  EXPECT_EQ(result.reason, Reason::record_truncated) << "ARCOUNT promises a record not there";
  append(message, additional);
  const DnsMessage whole = parse(message);
  ASSERT_EQ(whole.status, ParseStatus::found) << to_string(whole.reason);
  EXPECT_EQ(whole.addresses.size(), 1U);
}

TEST(DnsRecord, RefusesBytesAfterTheLastRecord) {
  Bytes message = response_with({record(pointer(kQuestionNameOffset), kTypeA, ipv4(192, 0, 2, 1))});
  message.push_back(0);
  expect_malformed(message, Reason::trailing_data);
}

TEST(DnsRecord, BoundsTheRecordsOfASection) {
  const Bytes answer = record(pointer(kQuestionNameOffset), kTypeA, ipv4(192, 0, 2, 1));
  const std::vector<Bytes> most(kMaxDnsRecordsPerSection, answer);
  const DnsMessage message = parse(response_with(most));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_EQ(message.addresses.size(), kMaxDnsRecordsPerSection);

  std::vector<Bytes> too_many = most;
  too_many.push_back(answer);
  expect_malformed(response_with(too_many), Reason::too_many_records);
  Bytes additional = response_with({});
  additional[10] = 0x01;  // ARCOUNT 257
  additional[11] = 0x01;
  expect_malformed(additional, Reason::too_many_records);
}

// ---- HTTPS and SVCB --------------------------------------------------------------------------

TEST(DnsServiceBinding, ReadsEveryHintAddressOfSvcbToo) {
  const Bytes hints = service_binding(
      1, {{1, {2, 'h', '3'}}, {4, {192, 0, 2, 1, 192, 0, 2, 2}}, {6, ipv6_ending(1)}, {0xff00, {1, 2, 3}}});
  const DnsMessage message = parse(response_with({record(pointer(kQuestionNameOffset), kTypeSvcb, hints)}));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  ASSERT_EQ(message.addresses.size(), 3U);
  EXPECT_EQ(message.addresses[1].address, padded(ipv4(192, 0, 2, 2)));
  EXPECT_EQ(message.addresses[2].address, padded(ipv6_ending(1)));
  EXPECT_EQ(message.addresses[2].name, "example.test");
}

TEST(DnsServiceBinding, IgnoresHintsInAliasMode) {
  Bytes alias;
  put16(alias, 0);
  append(alias, wire_name("pool.example.test"));
  put16(alias, 4);
  put16(alias, 4);
  append(alias, ipv4(192, 0, 2, 1));
  const DnsMessage message = parse(response_with({record(pointer(kQuestionNameOffset), kTypeHttps, alias)}));
  ASSERT_EQ(message.status, ParseStatus::found) << to_string(message.reason);
  EXPECT_TRUE(message.addresses.empty());
}

TEST(DnsServiceBinding, RefusesMalformedParameters) {
  const Bytes owner = pointer(kQuestionNameOffset);
  const std::vector<Bytes> malformed = {
      {0},                                                               // priority cut
      {0, 1},                                                            // no target
      service_binding(1, {{4, {192, 0, 2}}}),                            // ipv4hint not a multiple of 4
      service_binding(1, {{6, ipv4(192, 0, 2, 1)}}),                     // ipv6hint not a multiple of 16
      service_binding(1, {{6, {}}}),                                     // empty hint
      service_binding(1, {{6, ipv6_ending(1)}, {4, ipv4(1, 2, 3, 4)}}),  // keys out of order
      service_binding(1, {{1, {2, 'h', '2'}}, {1, {2, 'h', '3'}}}),      // a key twice
  };
  for (const Bytes& rdata : malformed) {
    expect_malformed(response_with({record(owner, kTypeHttps, rdata)}), Reason::rdata_length);
  }
  Bytes value_past_rdata = service_binding(1, {{4, ipv4(192, 0, 2, 1)}});
  value_past_rdata.pop_back();
  expect_malformed(response_with({record(owner, kTypeHttps, value_past_rdata)}), Reason::rdata_length);
  Bytes target_past_rdata{0, 1, 4, 'p', 'o', 'o', 'l'};
  expect_malformed(response_with({record(owner, kTypeHttps, target_past_rdata)}), Reason::rdata_length);
}

// ---- NXDOMAIN replies ------------------------------------------------------------------------

TEST(DnsNxdomain, RepliesWithTheQuerysIdAndQuestionBytes) {
  const Bytes query = from_hex(kQueryMixedCase);
  const auto reply = synthesize_nxdomain(query);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(Bytes(reply->begin() + 12, reply->end()), Bytes(query.begin() + 12, query.end()))
      << "the question comes back byte for byte, case pattern included";
  const DnsMessage parsed = parse(*reply, DnsDirection::response);
  ASSERT_EQ(parsed.status, ParseStatus::found) << to_string(parsed.reason);
  EXPECT_EQ(parsed.id, 0x2f1d);
  EXPECT_EQ(parsed.rcode, 3);
  EXPECT_TRUE(parsed.recursion_desired);
  EXPECT_EQ(parsed.question.name, "www.allowed.test");
  EXPECT_EQ(parsed.question.type, kTypeA);
  EXPECT_EQ((*reply)[2], 0x81);  // QR, opcode QUERY, RD
  EXPECT_EQ((*reply)[3], 0x83);  // RA, NXDOMAIN; AD cleared although the query set it
}

TEST(DnsNxdomain, DropsTheQuerysEdnsRecordAndCopiesCd) {
  Bytes query = from_hex(kQueryAEdns);
  query[2] = 0x00;  // RD clear
  query[3] = 0x10;  // CD
  const auto reply = synthesize_nxdomain(query);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->size(), 34U);
  EXPECT_EQ((*reply)[2], 0x80);
  EXPECT_EQ((*reply)[3], 0x93);
  EXPECT_EQ(Bytes(reply->begin() + 4, reply->begin() + 12), (Bytes{0, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_FALSE(parse(*reply).recursion_desired);
}

TEST(DnsNxdomain, RefusesResponsesAndMalformedQueries) {
  EXPECT_FALSE(synthesize_nxdomain(from_hex(kAnswerACnameChain)).has_value());
  EXPECT_FALSE(synthesize_nxdomain(Bytes{0x12, 0x34}).has_value());
  Bytes trailing = query_for("example.test");
  trailing.push_back(0);
  EXPECT_FALSE(synthesize_nxdomain(trailing).has_value());
}

// ---- CNAME chains ----------------------------------------------------------------------------

DnsMessage with_cnames(const std::vector<std::pair<std::string, std::string>>& links) {
  DnsMessage message;
  for (const auto& [name, target] : links) {
    message.cnames.push_back({name, target, 60});
  }
  return message;
}

TEST(DnsCnameChain, StopsBeforeANameItAlreadyHolds) {
  const DnsMessage loop = with_cnames({{"a.test", "b.test"}, {"b.test", "c.test"}, {"c.test", "a.test"}});
  EXPECT_EQ(cname_chain(loop, "a.test"), (std::vector<std::string>{"a.test", "b.test", "c.test"}));
  const DnsMessage self = with_cnames({{"a.test", "a.test"}});
  EXPECT_EQ(cname_chain(self, "a.test"), (std::vector<std::string>{"a.test"}));
}

TEST(DnsCnameChain, IsTheStartAloneWithoutACname) {
  const DnsMessage message = with_cnames({{"other.test", "b.test"}});
  EXPECT_EQ(cname_chain(message, "a.test"), (std::vector<std::string>{"a.test"}));
}

TEST(DnsCnameChain, IsBoundedInLength) {
  constexpr int kLinks = 40;
  std::vector<std::pair<std::string, std::string>> links;
  links.reserve(kLinks);
  for (int i = 0; i < kLinks; ++i) {
    links.emplace_back("n" + std::to_string(i) + ".test", "n" + std::to_string(i + 1) + ".test");
  }
  const std::vector<std::string> chain = cname_chain(with_cnames(links), "n0.test");
  ASSERT_EQ(chain.size(), kMaxDnsCnameChain);
  EXPECT_EQ(chain.back(), "n15.test");
}

// ---- corpus: real captures -------------------------------------------------------------------

// The corpus captures that hold DNS (tshark -Y dns over every capture): Windows and Firefox lookups
// answered by real resolvers, CNAME chains of CDNs among them.
constexpr std::array kDnsCaptures = {"suricata-verify/tls__tls-subjectaltname__input.pcap",
                                     "suricata-verify/tls__tls13-draft18__tls13_draft18.pcap"};

TEST(DnsCorpus, EveryQueryAndResponseOnPort53Parses) {
  size_t responses = 0;
  for (const char* capture : kDnsCaptures) {
    for (const test::CapturedFlow& flow : test::corpus_capture_flows(capture).flows) {
      if (flow.transport != test::Transport::udp || flow.server.port != 53) {
        continue;
      }
      SCOPED_TRACE(std::string(capture) + " " + test::to_string(flow.client));
      for (const Bytes& datagram : flow.client_datagrams) {
        const DnsMessage query = parse(datagram, DnsDirection::query);
        EXPECT_EQ(query.status, ParseStatus::found) << to_string(query.reason);
      }
      for (const Bytes& datagram : flow.server_datagrams) {
        const DnsMessage response = parse(datagram, DnsDirection::response);
        EXPECT_EQ(response.status, ParseStatus::found) << to_string(response.reason);
        ++responses;
      }
    }
  }
  EXPECT_EQ(responses, 39U) << "as many as tshark finds";
}

// What tshark reads from the response for www.bing.com: three CNAMEs, then two addresses.
TEST(DnsCorpus, BindsABingLookupThroughItsCnameChain) {
  std::optional<DnsMessage> bing;
  for (const test::CapturedFlow& flow : test::corpus_capture_flows(kDnsCaptures[0]).flows) {
    for (const Bytes& datagram : flow.server_datagrams) {
      DnsMessage message = parse(datagram);
      if (!bing && flow.server.port == 53 && message.question.name == "www.bing.com") {
        bing = std::move(message);
      }
    }
  }
  ASSERT_TRUE(bing.has_value());
  const std::vector<std::string> chain = cname_chain(*bing, "www.bing.com");
  ASSERT_EQ(chain.size(), 4U);
  EXPECT_EQ(chain.back(), "dual-a-0001.a-msedge.net");
  ASSERT_EQ(bing->addresses.size(), 2U);
  EXPECT_EQ(bing->addresses[0].name, chain.back());
  const std::vector<std::array<uint8_t, 16>> expected = {padded(ipv4(204, 79, 197, 200)),
                                                         padded(ipv4(13, 107, 21, 200))};
  EXPECT_TRUE(
      std::ranges::is_permutation(std::vector{bing->addresses[0].address, bing->addresses[1].address}, expected));
}

}  // namespace
}  // namespace portcullis::parsers
