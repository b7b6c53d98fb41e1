// HTTP/1.x request head parser: finds the host a plain-HTTP request is for, from the first bytes
// of the client-to-server direction of a TCP stream.
//
// Strict on purpose, like the ClientHello parser: a firewall that decides by Host must see the
// same single host the server will, so whatever servers or proxies in front of them could read
// differently (several Host fields, a Host that disagrees with an absolute-form target, space
// before a colon, folded lines, bare CR or LF line ends) is refused as malformed rather than
// guessed at. Only CRLF ends a line: RFC 9112 2.2 lets a recipient accept a bare LF, and servers
// disagree on whether they do, so accepting it here would let the firewall and the server split
// the head into different lines. curl, browsers and HTTP libraries all send CRLF.
//
// The parser reads only the first request head. Later requests on a kept-alive connection can name
// other hosts; binding the flow's destination address to the name (DNS) is what covers them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "parsers/parse_result.h"

namespace portcullis::parsers {

enum class HttpRequestReason : uint8_t {
  none,
  method_invalid,        // the method is empty or has a byte that is not a token character
  method_too_long,       // the method is longer than kMaxHttpMethodLength
  target_invalid,        // a target byte is not visible ASCII, or the target form does not fit the method
  request_line_invalid,  // not METHOD SP target SP version: a part is missing or empty
  version_invalid,       // the version is neither HTTP/1.0 nor HTTP/1.1
  not_http1,             // another major version: the HTTP/2 preface ("PRI * HTTP/2.0"), HTTP/3
  line_ending,           // a CR not followed by LF, or an LF without CR before it
  obs_fold,              // a header line starts with SP or HTAB (obsolete line folding)
  header_name_invalid,   // a header name is empty, has a non-token byte (space before the colon) or no colon
  header_value_invalid,  // a header value has a control character other than HTAB
  too_large,             // the head does not end within HttpRequestLimits::max_head bytes
  host_missing,          // an HTTP/1.1 request with neither a Host field nor a target naming the host
  host_conflict,         // several Host fields, or a Host field naming another host than the target
  host_invalid,          // a host that is empty, has userinfo or whitespace, or is no DNS name or IP literal
  port_invalid,          // a port that is empty, not decimal digits or outside 1..65535
};

[[nodiscard]] std::string_view to_string(HttpRequestReason reason) noexcept;

enum class HttpVersion : uint8_t {
  http_1_0,
  http_1_1,
};

[[nodiscard]] std::string_view to_string(HttpVersion version) noexcept;

// Registered methods are at most 17 bytes (UPDATEREDIRECTREF); the cap rejects a long run of
// token bytes (a binary protocol that happens to start like one) within the first line.
inline constexpr size_t kMaxHttpMethodLength = 32;

struct HttpRequestLimits {
  // Largest accepted head: request line, header lines and the empty line. Real clients send well
  // under 1 KB without cookies; 8 KiB is the common server default (Apache, nginx's first buffer).
  size_t max_head = size_t{8} * 1024;
};

struct HttpRequestResult {
  ParseStatus status = ParseStatus::need_more;
  HttpRequestReason reason = HttpRequestReason::none;
  // The fields below are set only when status is found.
  std::string method;
  std::string target;  // as sent
  HttpVersion version = HttpVersion::http_1_1;
  // From an absolute-form or authority-form target when the request has one (RFC 9112 3.2.2:
  // proxies use the target and ignore Host), else from the Host field. Lower-case, without the
  // port or one trailing dot; an IPv6 literal without its brackets, in its canonical text form.
  // Unset only for an HTTP/1.0 request that names no host: the caller decides about those.
  std::optional<std::string> host;
  std::optional<uint16_t> host_port;
  bool host_is_ip_literal = false;  // dotted IPv4 or bracketed IPv6
  uint32_t head_length = 0;         // through the empty line that ends the head: the body starts here
};

// `stream` is the start of the client's direction of a TCP stream.
[[nodiscard]] HttpRequestResult parse_http_request(std::span<const uint8_t> stream,
                                                   const HttpRequestLimits& limits = {});

}  // namespace portcullis::parsers
