#include "parsers/tls_client_hello.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "parsers/byte_reader.h"
#include "parsers/parse_result.h"
#include "parsers/tcp_stream_prefix.h"
#include "support/pcap_flows.h"
#include "support/sni_corpus.h"

namespace portcullis::parsers {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t kHandshake = 22;
constexpr uint8_t kChangeCipherSpec = 20;
constexpr uint16_t kTls10 = 0x0301;
constexpr uint16_t kTls12 = 0x0303;
constexpr uint16_t kServerName = 0;
constexpr uint16_t kAlpn = 16;
constexpr uint16_t kPadding = 21;
constexpr uint16_t kEch = 0xfe0d;
constexpr size_t kMaxFragment = 16384;

// ---- building ClientHellos ---------------------------------------------------------------

void put_u16(Bytes& out, size_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

void put_u24(Bytes& out, size_t value) {
  out.push_back(static_cast<uint8_t>(value >> 16));
  put_u16(out, value & 0xffff);
}

void put_bytes(Bytes& out, const Bytes& bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

Bytes text(std::string_view value) {
  return {value.begin(), value.end()};
}

Bytes u16_prefixed(const Bytes& body) {
  Bytes out;
  put_u16(out, body.size());
  put_bytes(out, body);
  return out;
}

struct Extension {
  uint16_t type;
  Bytes data;
};

// server_name extension data (RFC 6066 3): a list of (name_type, name) entries.
Bytes server_name_data(const std::vector<Bytes>& names, uint8_t name_type = 0) {
  Bytes list;
  for (const Bytes& name : names) {
    list.push_back(name_type);
    put_bytes(list, u16_prefixed(name));
  }
  return u16_prefixed(list);
}

Extension server_name(std::string_view name) {
  return {kServerName, server_name_data({text(name)})};
}

Extension alpn(const std::vector<std::string>& protocols) {
  Bytes list;
  for (const std::string& protocol : protocols) {
    list.push_back(static_cast<uint8_t>(protocol.size()));
    put_bytes(list, text(protocol));
  }
  return {kAlpn, u16_prefixed(list)};
}

struct HelloSpec {
  uint16_t legacy_version = kTls12;
  Bytes session_id = Bytes(32, 0x5a);
  Bytes cipher_suites = {0x13, 0x01, 0xc0, 0x2f};
  Bytes compression_methods = {0x00};
  std::optional<std::vector<Extension>> extensions = std::vector<Extension>{};
};

Bytes hello_body(const HelloSpec& spec) {
  Bytes body;
  put_u16(body, spec.legacy_version);
  body.insert(body.end(), 32, 0x11);  // random
  body.push_back(static_cast<uint8_t>(spec.session_id.size()));
  put_bytes(body, spec.session_id);
  put_bytes(body, u16_prefixed(spec.cipher_suites));
  body.push_back(static_cast<uint8_t>(spec.compression_methods.size()));
  put_bytes(body, spec.compression_methods);
  if (spec.extensions) {
    Bytes block;
    for (const Extension& extension : *spec.extensions) {
      put_u16(block, extension.type);
      put_bytes(block, u16_prefixed(extension.data));
    }
    put_bytes(body, u16_prefixed(block));
  }
  return body;
}

Bytes handshake_message(const Bytes& body, uint8_t type = 1) {
  Bytes message{type};
  put_u24(message, body.size());
  put_bytes(message, body);
  return message;
}

Bytes record(uint8_t content_type, uint16_t version, const Bytes& fragment) {
  Bytes out{content_type};
  put_u16(out, version);
  put_u16(out, fragment.size());
  put_bytes(out, fragment);
  return out;
}

// The message cut into records of at most `fragment_size` bytes.
Bytes records(const Bytes& message, size_t fragment_size = kMaxFragment, uint16_t version = kTls10) {
  Bytes out;
  for (size_t offset = 0; offset < message.size(); offset += fragment_size) {
    const size_t length = std::min(fragment_size, message.size() - offset);
    put_bytes(out, record(kHandshake, version, Bytes(message.begin() + offset, message.begin() + offset + length)));
  }
  return out;
}

Bytes hello_with(std::vector<Extension> extensions) {
  HelloSpec spec;
  spec.extensions = std::move(extensions);
  return records(handshake_message(hello_body(spec)));
}

Bytes hello_for(std::string_view name) {
  return hello_with({server_name(name)});
}

// A ClientHello whose body is exactly `body_length` bytes, filled up with a padding extension.
Bytes message_of_length(size_t body_length) {
  HelloSpec spec;
  spec.extensions = std::vector<Extension>{server_name("example.com"), {kPadding, {}}};
  const size_t fill = body_length - hello_body(spec).size();
  spec.extensions->back().data.assign(fill, 0);
  return handshake_message(hello_body(spec));
}

ClientHelloResult parse(const Bytes& stream, const ClientHelloLimits& limits = {}) {
  return parse_client_hello(stream, limits);
}

void expect_malformed(const Bytes& stream, ClientHelloReason reason) {
  const ClientHelloResult result = parse(stream);
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(to_string(result.reason), to_string(reason));
}

// ---- ByteReader --------------------------------------------------------------------------

TEST(ByteReader, ReadsBigEndianIntegersOfEachWidth) {
  const Bytes data{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a};
  ByteReader reader(data);
  EXPECT_EQ(reader.u8(), 0x01);
  EXPECT_EQ(reader.u16(), 0x0203);
  EXPECT_EQ(reader.u24(), 0x040506u);
  EXPECT_EQ(reader.u32(), 0x0708090au);
  EXPECT_TRUE(reader.empty());
  EXPECT_EQ(reader.consumed(), data.size());
}

TEST(ByteReader, FailedReadConsumesNothing) {
  const Bytes data{0x01, 0x02, 0x03};
  ByteReader reader(data);
  EXPECT_FALSE(reader.u32().has_value());
  EXPECT_FALSE(reader.bytes(4).has_value());
  EXPECT_FALSE(reader.skip(4));
  EXPECT_EQ(reader.remaining(), 3u);
  EXPECT_EQ(reader.u24(), 0x010203u);
  EXPECT_FALSE(reader.u8().has_value());
}

TEST(ByteReader, DecodesQuicVarintsOfEachLength) {
  // The examples of RFC 9000 appendix A.1.
  const Bytes data{0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c, 0x9d,
                   0x7f, 0x3e, 0x7d, 0x7b, 0xbd, 0x25, 0x40, 0x25};
  ByteReader reader(data);
  EXPECT_EQ(reader.varint(), 151288809941952652u);
  EXPECT_EQ(reader.varint(), 494878333u);
  EXPECT_EQ(reader.varint(), 15293u);
  EXPECT_EQ(reader.varint(), 37u);
  EXPECT_EQ(reader.varint(), 37u);
  EXPECT_TRUE(reader.empty());
}

TEST(ByteReader, TruncatedVarintConsumesNothing) {
  const Bytes data{0x80, 0x01, 0x02};  // a 4-byte varint cut after 3 bytes
  ByteReader reader(data);
  EXPECT_FALSE(reader.varint().has_value());
  EXPECT_EQ(reader.remaining(), 3u);
}

TEST(ByteReader, PrefixedYieldsTheVectorAndRejectsOverrunWithoutConsuming) {
  const Bytes data{0x00, 0x02, 0xaa, 0xbb, 0x05, 0xcc};
  ByteReader reader(data);
  auto vector = reader.prefixed(2);
  ASSERT_TRUE(vector.has_value());
  EXPECT_EQ(vector->remaining(), 2u);
  EXPECT_EQ(vector->u16(), 0xaabb);
  EXPECT_FALSE(reader.prefixed(1).has_value());  // claims 5 bytes, 1 left
  EXPECT_EQ(reader.remaining(), 2u);
}

// ---- result vocabulary -------------------------------------------------------------------

TEST(ParseResult, StatusNamesAreKebabCase) {
  EXPECT_EQ(to_string(ParseStatus::found), "found");
  EXPECT_EQ(to_string(ParseStatus::need_more), "need-more");
  EXPECT_EQ(to_string(ParseStatus::malformed), "malformed");
}

TEST(ClientHelloReason, EveryReasonHasADistinctKebabCaseName) {
  std::vector<std::string_view> names;
  for (auto value = static_cast<uint8_t>(ClientHelloReason::none);
       value <= static_cast<uint8_t>(ClientHelloReason::alpn_malformed); ++value) {
    const std::string_view name = to_string(static_cast<ClientHelloReason>(value));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(std::ranges::all_of(name, [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    })) << name;
    names.push_back(name);
  }
  std::ranges::sort(names);
  EXPECT_EQ(std::ranges::adjacent_find(names), names.end());
  EXPECT_EQ(to_string(ClientHelloReason::sni_ambiguous), "sni-ambiguous");
  EXPECT_EQ(to_string(ClientHelloReason::too_large), "too-large");
}

// ---- record layer ------------------------------------------------------------------------

TEST(ClientHello, FindsSniAndFieldsInSingleRecord) {
  HelloSpec spec;
  spec.extensions = std::vector<Extension>{server_name("example.com"), alpn({"h2", "http/1.1"})};
  const Bytes message = handshake_message(hello_body(spec));
  const Bytes stream = records(message);

  const ClientHelloResult result = parse(stream);
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.reason, ClientHelloReason::none);
  EXPECT_EQ(result.sni, "example.com");
  EXPECT_FALSE(result.sni_is_ip_literal);
  EXPECT_FALSE(result.has_ech);
  EXPECT_EQ(result.legacy_version, kTls12);
  EXPECT_EQ(result.record_version, kTls10);
  EXPECT_EQ(result.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_EQ(result.handshake_length, message.size());
  EXPECT_EQ(result.stream_length, stream.size());
}

TEST(ClientHello, AcceptsEveryRecordVersionFromSsl30ToTls13) {
  const Bytes message = handshake_message(hello_body({}));
  for (uint16_t version = 0x0300; version <= 0x0304; ++version) {
    const ClientHelloResult result = parse(records(message, kMaxFragment, version));
    EXPECT_EQ(result.status, ParseStatus::found) << version;
    EXPECT_EQ(result.record_version, version);
  }
}

TEST(ClientHello, RejectsRecordVersionOutsideSsl30ToTls13) {
  const Bytes message = handshake_message(hello_body({}));
  for (const uint16_t version : {0x0200, 0x02ff, 0x0305, 0x0403, 0x7f1c}) {
    expect_malformed(records(message, kMaxFragment, static_cast<uint16_t>(version)), ClientHelloReason::record_version);
  }
}

TEST(ClientHello, ReassemblesClientHelloSplitAcrossRecords) {
  const Bytes message =
      handshake_message(hello_body({.extensions = std::vector<Extension>{server_name("split.example")}}));
  const Bytes stream = records(message, 20);
  const ClientHelloResult result = parse(stream);
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.sni, "split.example");
  EXPECT_EQ(result.handshake_length, message.size());
  EXPECT_EQ(result.stream_length, stream.size());
}

TEST(ClientHello, ReassemblesClientHelloFromOneByteRecords) {
  const Bytes message =
      handshake_message(hello_body({.extensions = std::vector<Extension>{server_name("tiny.example")}}));
  const ClientHelloResult result = parse(records(message, 1));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.sni, "tiny.example");
}

TEST(ClientHello, NeedsMoreForEveryProperPrefixOfAFragmentedStream) {
  const Bytes stream =
      records(handshake_message(hello_body({.extensions = std::vector<Extension>{server_name("a.example")}})), 7);
  for (size_t length = 0; length < stream.size(); ++length) {
    const ClientHelloResult result = parse_client_hello(std::span(stream).first(length));
    ASSERT_EQ(result.status, ParseStatus::need_more) << "prefix of " << length << " bytes";
  }
  EXPECT_EQ(parse(stream).status, ParseStatus::found);
}

TEST(ClientHello, RejectsNonHandshakeRecordBeforeClientHelloCompletes) {
  const Bytes message = handshake_message(hello_body({.extensions = std::vector<Extension>{server_name("a.example")}}));
  const size_t half = message.size() / 2;
  Bytes stream = record(kHandshake, kTls10, Bytes(message.begin(), message.begin() + half));
  put_bytes(stream, record(kChangeCipherSpec, kTls12, {0x01}));
  put_bytes(stream, record(kHandshake, kTls10, Bytes(message.begin() + half, message.end())));
  expect_malformed(stream, ClientHelloReason::record_not_handshake);
}

TEST(ClientHello, RejectsStreamThatDoesNotStartWithHandshakeRecord) {
  expect_malformed(text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), ClientHelloReason::record_not_handshake);
  expect_malformed(text("G"), ClientHelloReason::record_not_handshake);
}

TEST(ClientHello, RejectsSslv2CompatibleClientHello) {
  // 2-byte SSLv2 record header (high bit set), CLIENT-HELLO, version 3.1, then spec lengths.
  const Bytes stream{0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  expect_malformed(stream, ClientHelloReason::sslv2);
}

TEST(ClientHello, RejectsEmptyHandshakeRecord) {
  Bytes stream = record(kHandshake, kTls10, {});
  put_bytes(stream, records(handshake_message(hello_body({}))));
  expect_malformed(stream, ClientHelloReason::record_empty);
}

TEST(ClientHello, RejectsRecordLongerThan16KiB) {
  Bytes stream{kHandshake, 0x03, 0x01};
  put_u16(stream, kMaxFragment + 1);
  expect_malformed(stream, ClientHelloReason::record_too_long);
}

TEST(ClientHello, RejectsBytesAfterClientHelloInItsLastRecord) {
  Bytes fragment = handshake_message(hello_body({}));
  put_bytes(fragment, handshake_message({}, 16));  // a second handshake message in the record
  expect_malformed(record(kHandshake, kTls10, fragment), ClientHelloReason::record_trailing_data);
}

TEST(ClientHello, RejectsOtherHandshakeMessageType) {
  expect_malformed(records(handshake_message(hello_body({}), 2)), ClientHelloReason::not_client_hello);
}

TEST(ClientHello, StreamLengthLeadsToTheNextRecord) {
  Bytes stream = hello_for("first.example");
  const size_t first_length = stream.size();
  put_bytes(stream, record(kChangeCipherSpec, kTls12, {0x01}));
  const ClientHelloResult result = parse(stream);
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.stream_length, first_length);
}

// ---- size limit --------------------------------------------------------------------------

TEST(ClientHello, AcceptsClientHelloOfExactlyTheDefaultLimit) {
  const ClientHelloResult result = parse(records(message_of_length(size_t{16} * 1024)));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.sni, "example.com");
}

TEST(ClientHello, RejectsClientHelloOverTheDefaultLimitAsTooLarge) {
  expect_malformed(records(message_of_length(size_t{16} * 1024 + 1)), ClientHelloReason::too_large);
}

TEST(ClientHello, RejectsTooLargeAsSoonAsTheHandshakeHeaderArrives) {
  const Bytes stream = records(message_of_length(size_t{16} * 1024 + 1));
  expect_malformed(Bytes(stream.begin(), stream.begin() + 9), ClientHelloReason::too_large);
}

TEST(ClientHello, HonoursConfiguredLimit) {
  const Bytes stream = records(message_of_length(600));
  EXPECT_EQ(parse(stream, {.max_length = 600}).status, ParseStatus::found);
  const ClientHelloResult result = parse(stream, {.max_length = 599});
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, ClientHelloReason::too_large);
}

// ---- ClientHello body --------------------------------------------------------------------

TEST(ClientHello, AcceptsHelloWithoutExtensionBlock) {
  const ClientHelloResult result = parse(records(handshake_message(hello_body({.extensions = std::nullopt}))));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_FALSE(result.sni.has_value());
}

TEST(ClientHello, ReportsNoSniWhenServerNameExtensionIsAbsent) {
  const ClientHelloResult result = parse(hello_with({alpn({"h2"})}));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_FALSE(result.sni.has_value());
  EXPECT_EQ(result.alpn, std::vector<std::string>{"h2"});
}

TEST(ClientHello, RejectsLegacyVersionOutsideSsl30ToTls13) {
  expect_malformed(records(handshake_message(hello_body({.legacy_version = 0x0002}))),
                   ClientHelloReason::client_version);
  expect_malformed(records(handshake_message(hello_body({.legacy_version = 0x0305}))),
                   ClientHelloReason::client_version);
}

TEST(ClientHello, RejectsSessionIdLongerThan32Bytes) {
  expect_malformed(records(handshake_message(hello_body({.session_id = Bytes(33, 1)}))),
                   ClientHelloReason::session_id_too_long);
}

TEST(ClientHello, RejectsEmptyOrOddCipherSuiteList) {
  expect_malformed(records(handshake_message(hello_body({.cipher_suites = {}}))),
                   ClientHelloReason::cipher_suites_invalid);
  expect_malformed(records(handshake_message(hello_body({.cipher_suites = {0x13, 0x01, 0x00}}))),
                   ClientHelloReason::cipher_suites_invalid);
}

TEST(ClientHello, RejectsEmptyCompressionMethodList) {
  expect_malformed(records(handshake_message(hello_body({.compression_methods = {}}))),
                   ClientHelloReason::compression_methods_invalid);
}

TEST(ClientHello, RejectsLengthFieldRunningPastTheMessage) {
  Bytes body = hello_body({.extensions = std::nullopt});
  body.resize(2 + 32 + 1 + 32 + 1);  // cut inside the cipher suite length
  expect_malformed(records(handshake_message(body)), ClientHelloReason::field_overrun);
}

// ---- extensions block --------------------------------------------------------------------

TEST(ClientHello, RejectsExtensionBlockLongerThanTheMessage) {
  Bytes body = hello_body({.extensions = std::vector<Extension>{server_name("a.example")}});
  body.pop_back();
  expect_malformed(records(handshake_message(body)), ClientHelloReason::extensions_length);
}

TEST(ClientHello, RejectsBytesAfterTheExtensionBlock) {
  Bytes body = hello_body({.extensions = std::vector<Extension>{server_name("a.example")}});
  body.push_back(0);
  expect_malformed(records(handshake_message(body)), ClientHelloReason::extensions_length);
}

TEST(ClientHello, RejectsSingleByteWhereTheExtensionBlockShouldBe) {
  Bytes body = hello_body({.extensions = std::nullopt});
  body.push_back(0);
  expect_malformed(records(handshake_message(body)), ClientHelloReason::extensions_length);
}

TEST(ClientHello, RejectsExtensionRunningPastTheBlock) {
  Bytes body = hello_body({.extensions = std::nullopt});
  const Bytes block{0x00, 0x17, 0x00, 0x05, 0x00};  // extension 23 claims 5 bytes, has 1
  put_bytes(body, u16_prefixed(block));
  expect_malformed(records(handshake_message(body)), ClientHelloReason::extensions_length);
}

TEST(ClientHello, RejectsDuplicateExtensionOfAnyType) {
  expect_malformed(hello_with({alpn({"h2"}), alpn({"h2"})}), ClientHelloReason::extension_duplicate);
  expect_malformed(hello_with({{0x1234, {}}, server_name("a.example"), {0x1234, {}}}),
                   ClientHelloReason::extension_duplicate);
}

TEST(ClientHello, AcceptsUpToTheExtensionCountCap) {
  std::vector<Extension> extensions{server_name("many.example")};
  for (uint16_t type = 0x1000; extensions.size() < kMaxClientHelloExtensions; ++type) {
    extensions.push_back({type, {}});
  }
  EXPECT_EQ(parse(hello_with(extensions)).status, ParseStatus::found);
  extensions.push_back({0x2000, {}});
  expect_malformed(hello_with(extensions), ClientHelloReason::too_many_extensions);
}

TEST(ClientHello, FlagsEncryptedClientHello) {
  const ClientHelloResult result = parse(hello_with({server_name("public.example"), {kEch, {0x00, 0x01}}}));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_TRUE(result.has_ech);
  EXPECT_EQ(result.sni, "public.example");
}

TEST(ClientHello, RejectsEmptyAlpnProtocolOrList) {
  expect_malformed(hello_with({alpn({"h2", ""})}), ClientHelloReason::alpn_malformed);
  expect_malformed(hello_with({{kAlpn, u16_prefixed({})}}), ClientHelloReason::alpn_malformed);
  expect_malformed(hello_with({{kAlpn, {0x00, 0x03, 0x02, 'h', '2', 0x00}}}), ClientHelloReason::alpn_malformed);
}

// ---- server_name -------------------------------------------------------------------------

TEST(ServerName, IsNormalizedToLowerCaseWithoutTrailingDot) {
  EXPECT_EQ(parse(hello_for("WWW.Example.COM.")).sni, "www.example.com");
}

TEST(ServerName, RejectsSecondServerNameExtensionAsAmbiguous) {
  expect_malformed(hello_with({server_name("a.example"), alpn({"h2"}), server_name("b.example")}),
                   ClientHelloReason::sni_ambiguous);
  expect_malformed(hello_with({server_name("a.example"), server_name("a.example")}), ClientHelloReason::sni_ambiguous);
}

TEST(ServerName, RejectsSeveralNamesInOneExtensionAsAmbiguous) {
  expect_malformed(hello_with({{kServerName, server_name_data({text("a.example"), text("b.example")})}}),
                   ClientHelloReason::sni_ambiguous);
}

TEST(ServerName, RejectsHostNameFollowedByAnotherEntryAsAmbiguous) {
  Bytes list{0x00};
  put_bytes(list, u16_prefixed(text("a.example")));
  list.push_back(0x01);  // an entry of another name type
  put_bytes(list, u16_prefixed(text("b")));
  expect_malformed(hello_with({{kServerName, u16_prefixed(list)}}), ClientHelloReason::sni_ambiguous);
}

TEST(ServerName, RejectsBrokenExtensionStructure) {
  expect_malformed(hello_with({{kServerName, {}}}), ClientHelloReason::sni_malformed);
  expect_malformed(hello_with({{kServerName, u16_prefixed({})}}), ClientHelloReason::sni_malformed);
  Bytes overrun = server_name_data({text("a.example")});
  overrun.pop_back();
  expect_malformed(hello_with({{kServerName, overrun}}), ClientHelloReason::sni_malformed);
  Bytes trailing = server_name_data({text("a.example")});
  trailing.push_back(0);
  expect_malformed(hello_with({{kServerName, trailing}}), ClientHelloReason::sni_malformed);
}

TEST(ServerName, RejectsEntryThatIsNotHostName) {
  expect_malformed(hello_with({{kServerName, server_name_data({text("a.example")}, 1)}}),
                   ClientHelloReason::sni_malformed);
}

TEST(ServerName, RejectsEmptyName) {
  expect_malformed(hello_for(""), ClientHelloReason::sni_invalid);
  expect_malformed(hello_for("."), ClientHelloReason::sni_invalid);
}

TEST(ServerName, AcceptsNameOf253BytesAndRejectsLonger) {
  const std::string label(62, 'a');
  const std::string name = label + "." + label + "." + label + "." + label + ".b";  // 4*63 + 1
  ASSERT_EQ(name.size(), 253u);
  EXPECT_EQ(parse(hello_for(name)).sni, name);
  EXPECT_EQ(parse(hello_for(name + ".")).sni, name);
  expect_malformed(hello_for(name + "b"), ClientHelloReason::sni_invalid);
}

TEST(ServerName, AcceptsLabelOf63BytesAndRejectsLonger) {
  const std::string label(63, 'x');
  EXPECT_EQ(parse(hello_for(label + ".example")).sni, label + ".example");
  expect_malformed(hello_for(label + "x.example"), ClientHelloReason::sni_invalid);
}

TEST(ServerName, RejectsEmptyLabel) {
  expect_malformed(hello_for("a..example"), ClientHelloReason::sni_invalid);
  expect_malformed(hello_for(".example"), ClientHelloReason::sni_invalid);
  expect_malformed(hello_for("example.."), ClientHelloReason::sni_invalid);
}

TEST(ServerName, AcceptsLettersDigitsHyphenAndUnderscore) {
  EXPECT_EQ(parse(hello_for("_sip._tcp.my-host9.example")).sni, "_sip._tcp.my-host9.example");
}

TEST(ServerName, RejectsCharactersOutsideHostNameSet) {
  for (const std::string_view name : {"a b.example", "*.example", "a/b.example", "a@example", "caf\xc3\xa9.example"}) {
    expect_malformed(hello_for(name), ClientHelloReason::sni_invalid);
  }
  expect_malformed(hello_for(std::string_view("evil.example\0good.example", 25)), ClientHelloReason::sni_invalid);
}

TEST(ServerName, FlagsIpv4LiteralWithoutFailing) {
  const ClientHelloResult result = parse(hello_for("192.0.2.1"));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.sni, "192.0.2.1");
  EXPECT_TRUE(result.sni_is_ip_literal);
}

TEST(ServerName, FlagsNameContainingColonAsLiteral) {
  for (const std::string_view name : {"2001:db8::1", "::ffff:192.0.2.1", "server4:443"}) {
    const ClientHelloResult result = parse(hello_for(name));
    ASSERT_EQ(result.status, ParseStatus::found) << name;
    EXPECT_EQ(result.sni, name);
    EXPECT_TRUE(result.sni_is_ip_literal);
  }
  EXPECT_EQ(parse(hello_for("2001:DB8::A")).sni, "2001:db8::a");
  expect_malformed(hello_for("2001:db8:: 1"), ClientHelloReason::sni_invalid);
}

// A colon does not open the door to any bytes: only what IPv6 literals and host:port use, with dots that
// separate something (found by the fuzzer: ":104.236x1!`7.." came out as ":104.236x1!`7.").
TEST(ServerName, RejectsColonLiteralsWithOtherCharactersOrEmptyLabels) {
  for (const std::string_view name : {":104.236x1!`7..", "a:b/c", "host:443..", "host..x:443", ".:1"}) {
    expect_malformed(hello_for(name), ClientHelloReason::sni_invalid);
  }
  EXPECT_EQ(parse(hello_for("[2001:db8::1]:443")).status, ParseStatus::found);
}

TEST(ServerName, DoesNotFlagNumericDnsNames) {
  for (const std::string_view name : {"1.2.3", "10.0.0.1.example", "256.1.1.1"}) {
    const ClientHelloResult result = parse(hello_for(name));
    ASSERT_EQ(result.status, ParseStatus::found) << name;
    EXPECT_FALSE(result.sni_is_ip_literal) << name;
  }
}

// ---- bare handshake message (QUIC CRYPTO stream) ------------------------------------------

TEST(ClientHelloMessage, ParsesBareHandshakeMessageAndIgnoresWhatFollows) {
  Bytes message = handshake_message(hello_body({.extensions = std::vector<Extension>{server_name("quic.example")}}));
  const size_t length = message.size();
  message.insert(message.end(), 10, 0);
  const ClientHelloResult result = parse_client_hello_message(message);
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.sni, "quic.example");
  EXPECT_EQ(result.record_version, 0);
  EXPECT_EQ(result.handshake_length, length);
  EXPECT_EQ(result.stream_length, 0u);
}

TEST(ClientHelloMessage, NeedsMoreUntilTheMessageIsComplete) {
  const Bytes message = handshake_message(hello_body({}));
  for (size_t length = 0; length < message.size(); ++length) {
    ASSERT_EQ(parse_client_hello_message(std::span(message).first(length)).status, ParseStatus::need_more);
  }
}

TEST(ClientHelloMessage, RejectsOtherTypesAndOversizeMessages) {
  const Bytes server_hello{0x02};
  EXPECT_EQ(parse_client_hello_message(server_hello).reason, ClientHelloReason::not_client_hello);
  const Bytes huge{0x01, 0x00, 0x40, 0x01};
  EXPECT_EQ(parse_client_hello_message(huge).reason, ClientHelloReason::too_large);
}

// ---- capture reader (test support) --------------------------------------------------------

// Frames for the link and network layers the corpus does not exercise.
Bytes ipv4_fragment_tcp_syn(const Bytes& payload, uint16_t fragment_offset) {
  Bytes frame(12, 0x02);                       // destination and source MACs
  put_bytes(frame, {0x81, 0x00, 0x00, 0x07});  // 802.1Q tag, VLAN 7
  put_bytes(frame, {0x08, 0x00});
  put_bytes(frame, {0x45, 0x00});
  put_u16(frame, 20 + 20 + payload.size());
  put_bytes(frame, {0x00, 0x01});
  put_u16(frame, fragment_offset);
  put_bytes(frame, {64, 6, 0x00, 0x00, 192, 0, 2, 1, 198, 51, 100, 2});
  put_bytes(frame, {0x9c, 0x40, 0x01, 0xbb, 0x00, 0x00, 0x03, 0xe8});  // 40000 -> 443, seq 1000
  put_bytes(frame, {0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0});  // SYN
  put_bytes(frame, payload);
  frame.resize(std::max<size_t>(frame.size(), 60));  // Ethernet minimum frame padding
  return frame;
}

Bytes ipv6_hop_by_hop_udp(const Bytes& payload) {
  Bytes frame(12, 0x02);
  put_bytes(frame, {0x86, 0xdd, 0x60, 0, 0, 0});
  put_u16(frame, 8 + 8 + payload.size());
  put_bytes(frame, {0x00, 64});  // next header: hop-by-hop options
  const Bytes source{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const Bytes destination{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  put_bytes(frame, source);
  put_bytes(frame, destination);
  put_bytes(frame, {17, 0, 1, 4, 0, 0, 0, 0});  // then UDP; PadN option
  put_bytes(frame, {0x14, 0xe9, 0x01, 0xbb});   // 5353 -> 443
  put_u16(frame, 8 + payload.size());
  put_bytes(frame, {0x00, 0x00});
  put_bytes(frame, payload);
  return frame;
}

std::string write_ethernet_capture(const std::string& name, const std::vector<Bytes>& frames) {
  std::string path = ::testing::TempDir() + name;
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* dumper = pcap_dump_open(dead, path.c_str());
  for (const Bytes& frame : frames) {
    pcap_pkthdr header{};
    header.caplen = header.len = static_cast<bpf_u_int32>(frame.size());
    pcap_dump(reinterpret_cast<u_char*>(dumper), &header, frame.data());
  }
  pcap_dump_close(dumper);
  pcap_close(dead);
  return path;
}

TEST(CaptureReader, ReadsVlanTaggedTcpAndIpv6WithExtensionHeaders) {
  const std::string path = write_ethernet_capture(
      "capture_reader.pcap", {ipv4_fragment_tcp_syn(text("hello"), 0), ipv4_fragment_tcp_syn(text("later"), 100),
                              ipv6_hop_by_hop_udp(text("quic"))});
  const test::CaptureFlows capture = test::read_capture_flows(path);
  EXPECT_TRUE(capture.read_error.empty());
  ASSERT_EQ(capture.flows.size(), 2u);

  const test::CapturedFlow* tcp = test::find_flow(capture, test::Transport::tcp, "192.0.2.1:40000", "198.51.100.2:443");
  ASSERT_NE(tcp, nullptr);
  ASSERT_EQ(tcp->client_segments.size(), 1u);  // the non-first fragment is skipped
  EXPECT_TRUE(tcp->client_segments[0].syn);
  EXPECT_EQ(tcp->client_segments[0].seq, 1000u);
  EXPECT_EQ(tcp->client_segments[0].payload, text("hello"));  // without the Ethernet padding

  const test::CapturedFlow* udp = test::find_flow(capture, test::Transport::udp, "2001:db8::1:5353", "2001:db8::2:443");
  ASSERT_NE(udp, nullptr);
  EXPECT_EQ(udp->client_datagrams, std::vector<Bytes>{text("quic")});
  EXPECT_TRUE(udp->server_datagrams.empty());
}

TEST(CaptureReader, ThrowsForMissingFile) {
  EXPECT_THROW((void)test::read_capture_flows(::testing::TempDir() + "no-such-capture.pcap"), std::runtime_error);
}

// ---- corpus: real captures ---------------------------------------------------------------

using test::corpus_dir;
using test::read_sni_rows;
using test::SniRow;

const test::CaptureFlows& capture_flows(const std::string& capture) {
  return test::corpus_capture_flows(capture);
}

// The stream starts at ISN + 1 when the SYN was captured, else at the first data segment.
TcpStreamPrefix reassemble(const std::vector<test::TcpSegment>& segments) {
  const auto syn = std::ranges::find_if(segments, &test::TcpSegment::syn);
  const uint32_t first_seq = syn != segments.end() ? syn->seq + 1 : segments.front().seq;
  TcpStreamPrefix prefix(first_seq);
  for (const test::TcpSegment& segment : segments) {
    prefix.add_segment(segment.seq, segment.payload, segment.syn);
  }
  return prefix;
}

// Every ClientHello at the start of the stream, one after another: a client answering a
// HelloRetryRequest sends a second one, after an optional ChangeCipherSpec record.
std::vector<ClientHelloResult> successive_client_hellos(std::span<const uint8_t> stream) {
  std::vector<ClientHelloResult> hellos;
  while (true) {
    ClientHelloResult hello = parse_client_hello(stream);
    if (hello.status != ParseStatus::found) {
      return hellos;
    }
    stream = stream.subspan(hello.stream_length);
    hellos.push_back(std::move(hello));
    while (stream.size() >= 5 && stream[0] == kChangeCipherSpec) {
      stream = stream.subspan(std::min(stream.size(), 5 + (size_t{stream[3]} << 8 | stream[4])));
    }
  }
}

std::string sni_or_dash(const ClientHelloResult& result) {
  return result.sni.value_or("-");
}

bool is_ip_literal(const std::string& name) {
  in_addr address{};
  return name.find(':') != std::string::npos || inet_pton(AF_INET, name.c_str(), &address) == 1;
}

// Rows whose stream cannot simply be parsed from its first byte, and what is asserted instead.
enum class Exception { starttls, sslv2_hello };

struct KnownException {
  std::string_view capture;
  std::string_view client;
  Exception kind;
  // STARTTLS: the client's upgrade command, which must precede the ClientHello.
  std::string_view upgrade_marker;
};

const KnownException kExceptions[] = {
    // STARTTLS: plaintext protocol first, TLS after the upgrade. The daemon sees the plaintext
    // and cannot find a ClientHello at byte 0; the test finds it after the upgrade command.
    {"suricata-verify/ldap-starttls__input.pcap", "::1:37386", Exception::starttls, "1.3.6.1.4.1.1466.20037"},
    {"suricata-verify/pgsql__pgsql-upgrade-tls__input.pcap", "192.168.50.11:60358", Exception::starttls,
     std::string_view("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8)},  // SSLRequest
    {"zeek/imap-starttls.pcap", "192.168.17.53:49640", Exception::starttls, "STARTTLS\r\n"},
    {"zeek/pop3-starttls.pcap", "192.168.4.149:54775", Exception::starttls, "STLS\r\n"},
    {"zeek/smtp-starttls.pcap", "192.168.4.149:54170", Exception::starttls, "STARTTLS\r\n"},
    {"zeek/xmpp-dialback-starttls.pcap", "184.73.173.246:1193", Exception::starttls, "<starttls "},
    {"zeek/xmpp-starttls.pcap", "198.128.203.95:56048", Exception::starttls, "<starttls "},
    // SSLv2-compatible ClientHellos: the format has no extensions, hence tshark's "-", and
    // Portcullis refuses it as malformed "sslv2" rather than reporting "no SNI".
    {"suricata-verify/sslv2-tls-upgrade-01__ssl-v2-s1.pcap", "10.150.98.145:1660", Exception::sslv2_hello, {}},
    {"suricata-verify/tls__tls-altname-zero__input.pcap", "192.168.134.106:23481", Exception::sslv2_hello, {}},
    {"suricata-verify/tls__tls-glupteba-mb__input.pcap", "192.168.134.106:23481", Exception::sslv2_hello, {}},
    {"suricata-verify/tls__tls-glupteba__input.pcap", "192.168.134.106:23481", Exception::sslv2_hello, {}},
    {"zeek/ssl-v2.pcap", "192.168.4.149:59062", Exception::sslv2_hello, {}},
    {"zeek/ssl.v3.pcap", "192.150.187.164:58868", Exception::sslv2_hello, {}},
};

// Flows whose stream holds more ClientHellos than the TSV has rows for them; the later ones
// must name the same server (RFC 8446 4.1.2 lets a retried ClientHello change little else).
const std::map<std::pair<std::string_view, std::string_view>, size_t> kExtraClientHellos = {
    {{"zeek/hrr.pcap", "10.192.48.168:63564"}, 1},                                       // HelloRetryRequest
    {{"suricata-verify/bug-5758__input.pcap", "10.84.1.13:34792"}, 1},                   // HelloRetryRequest
    {{"suricata-verify/tls__tls13-draft22__tls13_draft22.pcap", "127.0.0.1:41752"}, 1},  // HelloRetryRequest
    {{"suricata-verify/tls-duplicate-hello__input.pcap", "127.0.0.1:49954"}, 1},         // sent twice
};

const KnownException* find_exception(const SniRow& row) {
  const auto found = std::ranges::find_if(kExceptions, [&row](const KnownException& known) {
    return known.capture == row.capture && known.client == row.client;
  });
  return found != std::end(kExceptions) ? &*found : nullptr;
}

// The ClientHellos a flow's client stream yields, checking an exception's own assertion.
std::vector<ClientHelloResult> client_hellos(std::span<const uint8_t> stream, const KnownException* exception) {
  if (exception == nullptr) {
    return successive_client_hellos(stream);
  }
  const ClientHelloResult at_start = parse_client_hello(stream);
  EXPECT_EQ(at_start.status, ParseStatus::malformed);
  if (exception->kind == Exception::sslv2_hello) {
    EXPECT_EQ(at_start.reason, ClientHelloReason::sslv2);
    return {ClientHelloResult{}};  // stands for the row's "-": no name can be shown
  }
  EXPECT_EQ(at_start.reason, ClientHelloReason::record_not_handshake);
  const std::string_view plain(reinterpret_cast<const char*>(stream.data()), stream.size());
  const size_t marker = plain.find(exception->upgrade_marker);
  if (marker == std::string_view::npos) {
    ADD_FAILURE() << "no upgrade command before the ClientHello";
    return {};
  }
  const size_t hello = plain.find(static_cast<char>(kHandshake), marker + exception->upgrade_marker.size());
  return successive_client_hellos(stream.subspan(std::min(hello, stream.size())));
}

TEST(ClientHelloCorpus, EveryTcpRowYieldsTheSniTsharkDecoded) {
  const std::vector<SniRow> rows = read_sni_rows();
  ASSERT_FALSE(rows.empty()) << "no rows in " << (corpus_dir() / "expected-sni.tsv");

  // Rows of one flow, in order (a flow may repeat for a retried ClientHello).
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<const SniRow*>> flows;
  std::vector<std::tuple<std::string, std::string, std::string>> order;
  for (const SniRow& row : rows) {
    if (row.l4 != "TCP") {
      continue;
    }
    auto key = std::make_tuple(row.capture, row.client, row.server);
    auto& flow_rows = flows[key];
    if (flow_rows.empty()) {
      order.push_back(key);
    }
    flow_rows.push_back(&row);
  }
  size_t checked = 0;
  size_t excepted = 0;
  for (const auto& key : order) {
    const auto& flow_rows = flows[key];
    const SniRow& row = *flow_rows.front();
    SCOPED_TRACE(row.capture + " " + row.client + " -> " + row.server);
    const test::CapturedFlow* flow =
        test::find_flow(capture_flows(row.capture), test::Transport::tcp, row.client, row.server);
    ASSERT_NE(flow, nullptr);
    ASSERT_FALSE(flow->client_segments.empty());
    const TcpStreamPrefix prefix = reassemble(flow->client_segments);
    EXPECT_FALSE(prefix.conflict());
    const KnownException* exception = find_exception(row);
    excepted += exception != nullptr ? flow_rows.size() : 0;

    const std::vector<ClientHelloResult> hellos = client_hellos(prefix.contiguous(), exception);
    const auto extra = kExtraClientHellos.find({row.capture, row.client});
    EXPECT_EQ(hellos.size(), flow_rows.size() + (extra != kExtraClientHellos.end() ? extra->second : 0));
    for (size_t index = 0; index < std::min(hellos.size(), flow_rows.size()); ++index) {
      const std::string& expected = flow_rows[index]->expected_sni;
      EXPECT_EQ(sni_or_dash(hellos[index]), expected) << "ClientHello " << index;
      EXPECT_EQ(hellos[index].sni_is_ip_literal, expected != "-" && is_ip_literal(expected));
      ++checked;
    }
    for (size_t index = flow_rows.size(); index < hellos.size(); ++index) {
      EXPECT_EQ(sni_or_dash(hellos[index]), sni_or_dash(hellos.front())) << "retried ClientHello " << index;
    }
  }
  EXPECT_EQ(excepted, std::size(kExceptions));
  EXPECT_GT(checked, 150u);
}

TEST(ClientHelloCorpus, EveryUdpRowFlowIsReadWithClientDatagrams) {
  size_t udp_rows = 0;
  for (const SniRow& row : read_sni_rows()) {
    if (row.l4 != "UDP") {
      continue;
    }
    SCOPED_TRACE(row.capture + " " + row.client + " -> " + row.server);
    const test::CapturedFlow* flow =
        test::find_flow(capture_flows(row.capture), test::Transport::udp, row.client, row.server);
    ASSERT_NE(flow, nullptr);
    EXPECT_FALSE(flow->client_datagrams.empty());
    ++udp_rows;
  }
  EXPECT_GT(udp_rows, 0u);
}

TEST(ClientHelloCorpus, DamagedCaptureYieldsFlowsBeforeTheDamage) {
  const test::CaptureFlows& capture = capture_flows("suricata-verify/bug-1450-04__tls_DER-incomplete-header.pcap");
  EXPECT_FALSE(capture.read_error.empty());
  EXPECT_FALSE(capture.flows.empty());
}

}  // namespace
}  // namespace portcullis::parsers
