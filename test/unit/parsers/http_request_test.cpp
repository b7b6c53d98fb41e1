#include "parsers/http_request.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"

namespace portcullis::parsers {
namespace {

using Reason = HttpRequestReason;

constexpr size_t kDefaultMaxHead = size_t{8} * 1024;

// What `curl http://allowed.test/` sends (curl 7.88, Debian 12).
constexpr std::string_view kCurlRequest =
    "GET / HTTP/1.1\r\n"
    "Host: allowed.test\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "\r\n";

// What `curl -x http://proxy:3128 http://allowed.test/path?q=1` sends to the proxy.
constexpr std::string_view kCurlProxyRequest =
    "GET http://allowed.test/path?q=1 HTTP/1.1\r\n"
    "Host: allowed.test\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "Proxy-Connection: Keep-Alive\r\n"
    "\r\n";

// What `curl -p -x http://proxy:3128 https://allowed.test/` sends to the proxy to open a tunnel.
constexpr std::string_view kCurlConnectRequest =
    "CONNECT allowed.test:443 HTTP/1.1\r\n"
    "Host: allowed.test:443\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Proxy-Connection: Keep-Alive\r\n"
    "\r\n";

std::span<const uint8_t> bytes_of(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

HttpRequestResult parse(std::string_view stream, const HttpRequestLimits& limits = {}) {
  return parse_http_request(bytes_of(stream), limits);
}

// A GET for / with the given header lines (each without its CRLF) and the empty line.
std::string request_with(const std::vector<std::string>& fields, std::string_view version = "HTTP/1.1") {
  std::string request = "GET / " + std::string(version) + "\r\n";
  for (const std::string& field : fields) {
    request += field + "\r\n";
  }
  return request + "\r\n";
}

std::string request_for_host(std::string_view value) {
  return request_with({"Host: " + std::string(value)});
}

void expect_malformed(std::string_view stream, Reason reason) {
  const HttpRequestResult result = parse(stream);
  EXPECT_EQ(to_string(result.status), to_string(ParseStatus::malformed)) << stream;
  EXPECT_EQ(to_string(result.reason), to_string(reason)) << stream;
}

void expect_host(std::string_view host_value, std::string_view host) {
  const HttpRequestResult result = parse(request_for_host(host_value));
  ASSERT_EQ(result.status, ParseStatus::found) << host_value << ": " << to_string(result.reason);
  EXPECT_EQ(result.host, host) << host_value;
}

// ---- reason names ------------------------------------------------------------------------

TEST(HttpRequestReason, EveryReasonHasADistinctKebabCaseName) {
  std::vector<std::string_view> names;
  for (auto value = static_cast<uint8_t>(Reason::none); value <= static_cast<uint8_t>(Reason::port_invalid); ++value) {
    const std::string_view name = to_string(static_cast<Reason>(value));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(std::ranges::all_of(name, [](char c) { return (c >= 'a' && c <= 'z') || c == '1' || c == '-'; }))
        << name;
    names.push_back(name);
  }
  std::ranges::sort(names);
  EXPECT_EQ(std::ranges::adjacent_find(names), names.end());
  EXPECT_EQ(to_string(Reason::host_conflict), "host-conflict");
  EXPECT_EQ(to_string(Reason::not_http1), "not-http1");
}

TEST(HttpRequestReason, VersionsPrintAsOnTheWire) {
  EXPECT_EQ(to_string(HttpVersion::http_1_0), "HTTP/1.0");
  EXPECT_EQ(to_string(HttpVersion::http_1_1), "HTTP/1.1");
}

// ---- what real clients send --------------------------------------------------------------

TEST(HttpRequest, FindsHostInWhatCurlSends) {
  const HttpRequestResult result = parse(kCurlRequest);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.reason, Reason::none);
  EXPECT_EQ(result.method, "GET");
  EXPECT_EQ(result.target, "/");
  EXPECT_EQ(result.version, HttpVersion::http_1_1);
  EXPECT_EQ(result.host, "allowed.test");
  EXPECT_FALSE(result.host_port.has_value());
  EXPECT_FALSE(result.host_is_ip_literal);
  EXPECT_EQ(result.head_length, kCurlRequest.size());
}

TEST(HttpRequest, HeadLengthStopsAtTheEmptyLineBeforeTheBody) {
  const std::string head =
      "POST /form HTTP/1.1\r\nHost: allowed.test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: 7\r\n\r\n";
  const HttpRequestResult result = parse(head + "a=1&b=2");
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.method, "POST");
  EXPECT_EQ(result.head_length, head.size());
}

TEST(HttpRequest, NeedsMoreForEveryProperPrefixOfARequest) {
  const std::string ipv6_request = request_for_host("[2001:db8::10]:8080");
  for (const std::string_view request :
       {kCurlRequest, kCurlProxyRequest, kCurlConnectRequest, std::string_view(ipv6_request)}) {
    for (size_t length = 0; length < request.size(); ++length) {
      const HttpRequestResult result = parse(request.substr(0, length));
      ASSERT_EQ(result.status, ParseStatus::need_more)
          << "prefix of " << length << " bytes of " << request << ": " << to_string(result.reason);
    }
    EXPECT_EQ(parse(request).status, ParseStatus::found) << request;
  }
}

TEST(HttpRequest, TakesHostFromAbsoluteFormTargetOfProxyRequest) {
  const HttpRequestResult result = parse(kCurlProxyRequest);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.target, "http://allowed.test/path?q=1");
  EXPECT_EQ(result.host, "allowed.test");
  EXPECT_FALSE(result.host_port.has_value());
}

TEST(HttpRequest, TakesHostAndPortFromConnectTarget) {
  const HttpRequestResult result = parse(kCurlConnectRequest);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.method, "CONNECT");
  EXPECT_EQ(result.target, "allowed.test:443");
  EXPECT_EQ(result.host, "allowed.test");
  EXPECT_EQ(result.host_port, 443);
}

// ---- Host rules --------------------------------------------------------------------------

TEST(HttpRequest, AcceptsHttp10WithoutHostAndLeavesTheHostUnset) {
  const HttpRequestResult result = parse("GET / HTTP/1.0\r\nUser-Agent: Wget/1.21.3\r\n\r\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.version, HttpVersion::http_1_0);
  EXPECT_FALSE(result.host.has_value());
  EXPECT_FALSE(result.host_port.has_value());
}

TEST(HttpRequest, FindsHostOfHttp10RequestThatSendsOne) {
  const HttpRequestResult result = parse(request_with({"Host: allowed.test"}, "HTTP/1.0"));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.version, HttpVersion::http_1_0);
  EXPECT_EQ(result.host, "allowed.test");
}

TEST(HttpRequest, RejectsHttp11WithoutHostOrAbsoluteTarget) {
  expect_malformed(request_with({"User-Agent: curl/7.88.1", "Accept: */*"}), Reason::host_missing);
  expect_malformed(request_with({}), Reason::host_missing);
}

TEST(HttpRequest, AcceptsAbsoluteTargetWithoutHostField) {
  const HttpRequestResult result = parse("GET http://allowed.test:8080/ HTTP/1.1\r\nAccept: */*\r\n\r\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.host, "allowed.test");
  EXPECT_EQ(result.host_port, 8080);
}

TEST(HttpRequest, RejectsSecondHostFieldEvenWithTheSameValue) {
  expect_malformed(request_with({"Host: allowed.test", "Host: evil.test"}), Reason::host_conflict);
  expect_malformed(request_with({"Host: allowed.test", "host: allowed.test"}), Reason::host_conflict);
  expect_malformed(request_with({"Host: allowed.test", "Accept: */*", "HOST: allowed.test"}), Reason::host_conflict);
}

TEST(HttpRequest, FindsHostFieldWhateverTheCaseOfItsName) {
  const HttpRequestResult result = parse(request_with({"Accept: */*", "hOsT: allowed.test"}));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.host, "allowed.test");
}

TEST(HttpRequest, RejectsHostFieldNamingAnotherHostThanTheTarget) {
  expect_malformed("GET http://allowed.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", Reason::host_conflict);
  expect_malformed("CONNECT allowed.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n", Reason::host_conflict);
}

TEST(HttpRequest, ComparesTargetAndHostFieldAfterNormalizing) {
  const HttpRequestResult result = parse("GET HTTP://Allowed.TEST./ HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.host, "allowed.test");
}

TEST(HttpRequest, AcceptsHttpsAbsoluteTarget) {
  const HttpRequestResult result = parse("GET https://allowed.test/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.host, "allowed.test");
}

TEST(HttpRequest, RejectsUserinfoInAbsoluteTarget) {
  expect_malformed("GET http://allowed.test@evil.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n", Reason::host_invalid);
  expect_malformed("GET http://user:pw@allowed.test/ HTTP/1.1\r\n\r\n", Reason::host_invalid);
}

TEST(HttpRequest, RejectsEmptyAuthorityInAbsoluteTarget) {
  expect_malformed("GET http:///path HTTP/1.1\r\nHost: allowed.test\r\n\r\n", Reason::host_invalid);
}

// ---- Host values -------------------------------------------------------------------------

TEST(HttpHost, IsLowerCasedWithOneTrailingDotStripped) {
  expect_host("AlLoWeD.TeSt", "allowed.test");
  expect_host("allowed.test.", "allowed.test");
  expect_malformed(request_for_host("allowed.test.."), Reason::host_invalid);
  expect_malformed(request_for_host("."), Reason::host_invalid);
}

TEST(HttpHost, IsTrimmedOfSpaceAndTabAroundIt) {
  expect_host(" \t allowed.test \t ", "allowed.test");
  expect_host("allowed.test", "allowed.test");
}

TEST(HttpHost, ReportsThePortApartFromTheName) {
  const HttpRequestResult result = parse(request_for_host("Allowed.test.:8080"));
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.host, "allowed.test");
  EXPECT_EQ(result.host_port, 8080);
}

TEST(HttpHost, AcceptsPortsFrom1To65535) {
  for (const auto& [value, port] : {std::pair{"allowed.test:1", 1},
                                    {"allowed.test:80", 80},
                                    {"allowed.test:080", 80},
                                    {"allowed.test:65535", 65535}}) {
    const HttpRequestResult result = parse(request_for_host(value));
    ASSERT_EQ(result.status, ParseStatus::found) << value;
    EXPECT_EQ(result.host_port, port) << value;
  }
}

TEST(HttpHost, RejectsPortThatIsEmptyOutOfRangeOrNotDigits) {
  for (const std::string_view value : {"allowed.test:", "allowed.test:0", "allowed.test:65536", "allowed.test:99999",
                                       "allowed.test:000080", "allowed.test:8o", "allowed.test:+80", "[::1]:"}) {
    expect_malformed(request_for_host(value), Reason::port_invalid);
  }
}

TEST(HttpHost, FlagsIpv4Literal) {
  const HttpRequestResult result = parse(request_for_host("198.18.0.10:80"));
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.host, "198.18.0.10");
  EXPECT_TRUE(result.host_is_ip_literal);
  EXPECT_EQ(result.host_port, 80);
}

TEST(HttpHost, TreatsNumericNamesThatAreNoIpv4AddressAsNames) {
  for (const std::string_view value : {"198.18.0.256", "198.18.010.1", "198.18.1"}) {
    const HttpRequestResult result = parse(request_for_host(value));
    ASSERT_EQ(result.status, ParseStatus::found) << value;
    EXPECT_FALSE(result.host_is_ip_literal) << value;
  }
}

TEST(HttpHost, UnbracketsAndCanonicalizesIpv6Literal) {
  const HttpRequestResult result = parse(request_for_host("[2001:DB8:0:0::10]:8080"));
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.host, "2001:db8::10");
  EXPECT_TRUE(result.host_is_ip_literal);
  EXPECT_EQ(result.host_port, 8080);
  expect_host("[::1]", "::1");
}

TEST(HttpHost, RejectsIpv6LiteralWithoutBracketsZoneOrClosingBracket) {
  for (const std::string_view value : {"2001:db8::10", "[fe80::1%25eth0]", "[fe80::1%eth0]", "[::1", "[::1]x",
                                       "[198.18.0.10]", "[]", "[v1.fe80::1]", "[::1]]"}) {
    expect_malformed(request_for_host(value), Reason::host_invalid);
  }
}

TEST(HttpHost, RejectsUserinfo) {
  expect_malformed(request_for_host("allowed.test@evil.test"), Reason::host_invalid);
  expect_malformed(request_for_host("user@allowed.test"), Reason::host_invalid);
}

TEST(HttpHost, RejectsWhitespaceInside) {
  expect_malformed(request_for_host("allowed.test evil.test"), Reason::host_invalid);
  expect_malformed(request_for_host("allowed.test\t:80"), Reason::host_invalid);
}

TEST(HttpHost, RejectsEmptyValue) {
  expect_malformed(request_with({"Host:"}), Reason::host_invalid);
  expect_malformed(request_with({"Host:  \t "}), Reason::host_invalid);
}

TEST(HttpHost, AcceptsLettersDigitsHyphenAndUnderscore) {
  expect_host("a-b_c.x1.test", "a-b_c.x1.test");
}

TEST(HttpHost, RejectsCharactersOutsideHostNames) {
  for (const std::string_view value :
       {"allowed.test/", "allowed%2etest", "allowed.test\\", "all*wed.test", "allowed..test", ".allowed.test",
        "caf\xc3\xa9.test", "allowed.test,evil.test"}) {
    expect_malformed(request_for_host(value), Reason::host_invalid);
  }
}

TEST(HttpHost, AcceptsNameOf253BytesAndRejectsLonger) {
  std::string name;
  while (name.size() < 253) {
    name += name.empty() ? "a" : ".a";
  }
  expect_host(name, name);
  expect_host(name + ".", name);
  expect_malformed(request_for_host(name + "b"), Reason::host_invalid);
}

TEST(HttpHost, AcceptsLabelOf63BytesAndRejectsLonger) {
  const std::string label(63, 'a');
  expect_host(label + ".test", label + ".test");
  expect_malformed(request_for_host(label + "a.test"), Reason::host_invalid);
}

// ---- request line ------------------------------------------------------------------------

TEST(HttpRequest, RejectsTlsClientHelloAtItsFirstByte) {
  // Record header of a ClientHello: handshake (22), TLS 1.0 record version, length; then type 1.
  const std::vector<uint8_t> client_hello{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
  for (size_t length = 1; length <= client_hello.size(); ++length) {
    const HttpRequestResult result = parse_http_request(std::span(client_hello).first(length));
    EXPECT_EQ(result.status, ParseStatus::malformed) << length;
    EXPECT_EQ(result.reason, Reason::method_invalid) << length;
  }
}

TEST(HttpRequest, RejectsSshBannerAtTheEndOfItsFirstLine) {
  // "SSH-2.0-OpenSSH_9.2p1" is a valid method token, so only the missing version gives it away.
  constexpr std::string_view kBanner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
  expect_malformed(kBanner, Reason::request_line_invalid);
  expect_malformed(kBanner.substr(0, kBanner.size() - 1), Reason::request_line_invalid);
  expect_malformed("SSH-2.0-OpenSSH_9.2p1\r\n", Reason::request_line_invalid);
}

TEST(HttpRequest, RejectsHttp2ConnectionPrefaceAsNotHttp1) {
  expect_malformed("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Reason::not_http1);
  expect_malformed("PRI * HTTP/2", Reason::not_http1);
}

TEST(HttpRequest, RejectsOtherMajorVersionsAsNotHttp1) {
  expect_malformed("GET / HTTP/3.0\r\n", Reason::not_http1);
  expect_malformed("GET / HTTP/0.9\r\n", Reason::not_http1);
}

TEST(HttpRequest, RejectsVersionsOtherThanHttp10AndHttp11) {
  for (const std::string_view version : {"HTTP/1.2", "HTTP/1.10", "http/1.1", "HTTP/1", "HTTP/1.", "HTTP/1.1 ",
                                         "HTTP/11", "HTTP /1.1", "HTTPS/1.1", "ICY"}) {
    expect_malformed(request_with({"Host: allowed.test"}, version), Reason::version_invalid);
  }
}

TEST(HttpRequest, AcceptsAnyTokenAsMethod) {
  for (const std::string_view method : {"GET", "HEAD", "DELETE", "PROPFIND", "M-SEARCH", "get", "X!#$%&'*+.^_`|~1"}) {
    const std::string request = std::string(method) + " / HTTP/1.1\r\nHost: allowed.test\r\n\r\n";
    const HttpRequestResult result = parse(request);
    ASSERT_EQ(result.status, ParseStatus::found) << method << ": " << to_string(result.reason);
    EXPECT_EQ(result.method, method);
  }
}

TEST(HttpRequest, RejectsMethodWithNonTokenByte) {
  for (const std::string_view request :
       {"GE(T / HTTP/1.1\r\n", "GET\t/ HTTP/1.1\r\n", " GET / HTTP/1.1\r\n", "G\"ET", "GE\x7f", "G\xc3\xa9T"}) {
    expect_malformed(request, Reason::method_invalid);
  }
}

TEST(HttpRequest, RejectsMethodLongerThanTheCapBeforeItEnds) {
  const std::string longest(kMaxHttpMethodLength, 'M');
  EXPECT_EQ(parse(longest + " / HTTP/1.1\r\nHost: allowed.test\r\n\r\n").status, ParseStatus::found);
  EXPECT_EQ(parse(longest).status, ParseStatus::need_more);
  expect_malformed(longest + "M", Reason::method_too_long);
}

TEST(HttpRequest, RejectsTargetByteThatIsNotVisibleAscii) {
  for (const std::string_view request : {"GET /a\x01", "GET /\x7f", "GET /caf\xc3\xa9", "GET /a\tb HTTP/1.1\r\n"}) {
    expect_malformed(request, Reason::target_invalid);
  }
}

TEST(HttpRequest, RejectsRequestLineWithAPartMissingOrEmpty) {
  for (const std::string_view request : {"GET  / HTTP/1.1\r\n", "GET /\r\n", "GET\r\n", "\r\n", "GET / \r\n"}) {
    const HttpRequestResult result = parse(request);
    EXPECT_EQ(result.status, ParseStatus::malformed) << request;
    EXPECT_TRUE(result.reason == Reason::request_line_invalid || result.reason == Reason::version_invalid)
        << request << ": " << to_string(result.reason);
  }
  expect_malformed("GET  / HTTP/1.1\r\n", Reason::request_line_invalid);
  expect_malformed("GET /\r\n", Reason::request_line_invalid);
}

TEST(HttpRequest, AcceptsTargetFormsTheirMethodsMayUse) {
  for (const std::string_view request :
       {"OPTIONS * HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "OPTIONS http://allowed.test HTTP/1.1\r\n\r\n",
        "GET /a/b?c=d&e HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "GET http://allowed.test?x HTTP/1.1\r\n\r\n"}) {
    const HttpRequestResult result = parse(request);
    EXPECT_EQ(result.status, ParseStatus::found) << request << ": " << to_string(result.reason);
    EXPECT_EQ(result.host, "allowed.test") << request;
  }
}

TEST(HttpRequest, RejectsTargetFormsTheMethodMayNotUse) {
  for (const std::string_view request :
       {"GET * HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "GET index.html HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        "GET allowed.test:80 HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        "GET ftp://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        "GET http:/allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        "CONNECT / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "CONNECT * HTTP/1.1\r\nHost: allowed.test\r\n\r\n"}) {
    expect_malformed(request, Reason::target_invalid);
  }
}

TEST(HttpRequest, RejectsConnectTargetWithoutPort) {
  expect_malformed("CONNECT allowed.test HTTP/1.1\r\nHost: allowed.test\r\n\r\n", Reason::port_invalid);
}

// ---- line ends and header fields ---------------------------------------------------------

TEST(HttpRequest, RejectsBareLfLineEnds) {
  expect_malformed("GET / HTTP/1.1\nHost: allowed.test\n\n", Reason::line_ending);
  expect_malformed("GET / HTTP/1.1\r\nHost: allowed.test\n\r\n", Reason::line_ending);
  expect_malformed("GET / HTTP/1.1\r\nHost: allowed.test\r\n\n", Reason::line_ending);
}

TEST(HttpRequest, RejectsCrNotFollowedByLf) {
  expect_malformed("GET / HTTP/1.1\r\nHost: allowed.test\rHost: evil.test\r\n\r\n", Reason::line_ending);
  expect_malformed("GET / HTTP/1.1\r\r\n", Reason::line_ending);
  expect_malformed("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\r\n", Reason::line_ending);
}

TEST(HttpRequest, RejectsWhitespaceBeforeTheColon) {
  expect_malformed(request_with({"Host : evil.test"}), Reason::header_name_invalid);
  expect_malformed(request_with({"Host: allowed.test", "Host\t: evil.test"}), Reason::header_name_invalid);
  expect_malformed(request_with({"Host: allowed.test", "Transfer-Encoding : chunked"}), Reason::header_name_invalid);
}

TEST(HttpRequest, RejectsObsoleteLineFolding) {
  expect_malformed(request_with({"Host: allowed.test", "X-Folded: a", " b"}), Reason::obs_fold);
  expect_malformed(request_with({"Host: allowed.test", "X-Folded: a", "\tb"}), Reason::obs_fold);
  // Whitespace before the first field would hide it from some servers (RFC 9112 2.2).
  expect_malformed(request_with({" Host: evil.test", "Host: allowed.test"}), Reason::obs_fold);
}

TEST(HttpRequest, RejectsHeaderLineWithoutNameOrColon) {
  expect_malformed(request_with({"Host: allowed.test", ": empty-name"}), Reason::header_name_invalid);
  expect_malformed(request_with({"Host: allowed.test", "NoColon"}), Reason::header_name_invalid);
  expect_malformed(request_with({"Host: allowed.test", "X(y): z"}), Reason::header_name_invalid);
}

TEST(HttpRequest, RejectsControlCharacterInFieldValue) {
  using namespace std::string_literals;
  expect_malformed(request_with({"Host: allowed.test", "X-Nul: a\0b"s}), Reason::header_value_invalid);
  expect_malformed(request_with({"Host: allowed.test", "X-Del: a\x7f"}), Reason::header_value_invalid);
  expect_malformed(request_with({"Host: allowed.test", "X-Esc: \x1b[0m"}), Reason::header_value_invalid);
}

TEST(HttpRequest, AcceptsTabAndEightBitBytesInFieldValue) {
  const HttpRequestResult result = parse(request_with({"Host: allowed.test", "X-Name: caf\xc3\xa9\tbar"}));
  EXPECT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
}

TEST(HttpRequest, ChecksHostFieldAsSoonAsItsLineEnds) {
  expect_malformed("GET / HTTP/1.1\r\nHost: user@allowed.test\r\n", Reason::host_invalid);
  expect_malformed("GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n", Reason::host_conflict);
}

// ---- size limit --------------------------------------------------------------------------

// A request head of exactly `length` bytes, filled up with a padding field.
std::string head_of_length(size_t length) {
  const std::string empty = request_with({"Host: allowed.test", "X-Padding: "});
  return request_with({"Host: allowed.test", "X-Padding: " + std::string(length - empty.size(), 'p')});
}

TEST(HttpRequest, AcceptsHeadOfExactlyTheDefaultLimit) {
  const std::string head = head_of_length(kDefaultMaxHead);
  ASSERT_EQ(head.size(), kDefaultMaxHead);
  const HttpRequestResult result = parse(head);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.head_length, head.size());
}

TEST(HttpRequest, RejectsHeadOverTheDefaultLimitAsTooLarge) {
  expect_malformed(head_of_length(kDefaultMaxHead + 1), Reason::too_large);
}

TEST(HttpRequest, RejectsTooLargeOnceTheLimitIsReachedWithoutTheHeadEnding) {
  const std::string head = head_of_length(9000);
  EXPECT_EQ(parse(std::string_view(head).substr(0, kDefaultMaxHead - 1)).status, ParseStatus::need_more);
  expect_malformed(std::string_view(head).substr(0, kDefaultMaxHead), Reason::too_large);
}

TEST(HttpRequest, HonoursConfiguredLimit) {
  const std::string head = head_of_length(600);
  EXPECT_EQ(parse(head, {.max_head = 600}).status, ParseStatus::found);
  const HttpRequestResult result = parse(head, {.max_head = 599});
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, Reason::too_large);
}

}  // namespace
}  // namespace portcullis::parsers
