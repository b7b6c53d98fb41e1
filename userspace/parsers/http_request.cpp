#include "parsers/http_request.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>

#include "parsers/host_name.h"

namespace portcullis::parsers {
namespace {

using Reason = HttpRequestReason;

constexpr size_t kMaxPortDigits = 5;
constexpr uint32_t kMaxPort = 65535;
// Both accepted versions have this shape; the bytes at kVersionMajor and kVersionMinor vary.
constexpr std::string_view kVersionShape = "HTTP/1.x";
constexpr size_t kVersionMajor = 5;
constexpr size_t kVersionMinor = 7;

HttpRequestResult make_result(ParseStatus status, Reason reason = Reason::none) {
  HttpRequestResult result;
  result.status = status;
  result.reason = reason;
  return result;
}

// ---- characters --------------------------------------------------------------------------

// RFC 9110 5.6.2: the characters of a token (methods, field names), as a table because the
// symbol list would otherwise be searched for every byte of every field name.
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> table{};
  for (size_t c = 0; c < table.size(); ++c) {
    table[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  }
  return table;
}();

constexpr bool is_tchar(char c) {
  return kTokenChars[static_cast<uint8_t>(c)];
}

// RFC 5234 VCHAR: printable ASCII without space. The request target allows nothing else.
constexpr bool is_visible(char c) {
  return c >= 0x21 && c <= 0x7e;
}

// RFC 9110 5.5 field content: visible ASCII, SP, HTAB and obs-text (bytes 0x80 and up, which
// recipients must still accept). Every other control character is refused, since servers
// differ on whether they strip, keep or reject them.
constexpr bool is_field_char(char c) {
  const auto byte = static_cast<uint8_t>(c);
  return byte == '\t' || (byte >= 0x20 && byte != 0x7f);
}

constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

constexpr bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, {}, ascii_lower, ascii_lower);
}

std::string_view trim_ows(std::string_view value) {
  while (!value.empty() && is_ows(value.front())) {
    value.remove_prefix(1);
  }
  while (!value.empty() && is_ows(value.back())) {
    value.remove_suffix(1);
  }
  return value;
}

// ---- host --------------------------------------------------------------------------------

struct Authority {
  std::string host;
  std::optional<uint16_t> port;
  bool ip_literal = false;
};

Reason set_name(std::string_view name, Authority& out) {
  if (name.ends_with('.')) {
    name.remove_suffix(1);
  }
  if (name.empty() || name.size() > kMaxHostNameLength) {
    return Reason::host_invalid;
  }
  out.host.resize(name.size());
  std::ranges::transform(name, out.host.begin(), ascii_lower);
  if (!is_dns_name(out.host)) {
    return Reason::host_invalid;
  }
  out.ip_literal = is_ipv4_literal(out.host);
  return Reason::none;
}

// Kept in canonical text form (RFC 5952, as inet_ntop writes it), so every spelling of one
// address gives one host string. Zone identifiers (RFC 6874) are refused: they name a local
// interface, never a destination a policy could allow.
Reason set_ipv6_literal(std::string_view literal, Authority& out) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (literal.size() >= text.size()) {
    return Reason::host_invalid;
  }
  std::ranges::copy(literal, text.begin());
  in6_addr address{};
  if (inet_pton(AF_INET6, text.data(), &address) != 1 ||
      inet_ntop(AF_INET6, &address, text.data(), text.size()) == nullptr) {
    return Reason::host_invalid;
  }
  out.host = text.data();
  out.ip_literal = true;
  return Reason::none;
}

// Decimal only, at most five digits, so "080" is port 80 but no digit string can wrap around.
Reason set_port(std::string_view digits, Authority& out) {
  if (digits.empty() || digits.size() > kMaxPortDigits || !std::ranges::all_of(digits, is_digit)) {
    return Reason::port_invalid;
  }
  uint32_t port = 0;
  for (const char c : digits) {
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > kMaxPort) {
    return Reason::port_invalid;
  }
  out.port = static_cast<uint16_t>(port);
  return Reason::none;
}

// RFC 3986 3.2 authority, as a Host field or a target carries it: host [":" port]. Userinfo
// ("user@host") is refused, not skipped: RFC 9110 4.2.4 forbids it in http URIs, and
// "allowed.test@evil.test" is the classic way to make two readers see two hosts.
Reason parse_authority(std::string_view text, Authority& out) {
  if (text.empty() || text.find_first_of("@ \t") != std::string_view::npos) {
    return Reason::host_invalid;
  }
  std::optional<std::string_view> port;
  Reason reason = Reason::none;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return Reason::host_invalid;
    }
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return Reason::host_invalid;
      }
      port = after.substr(1);
    }
    reason = set_ipv6_literal(text.substr(1, close - 1), out);
  } else {
    const size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      // A second colon is an IPv6 literal without its brackets: no port can be told apart.
      if (text.find(':', colon + 1) != std::string_view::npos) {
        return Reason::host_invalid;
      }
      port = text.substr(colon + 1);
    }
    reason = set_name(text.substr(0, colon), out);
  }
  if (reason != Reason::none || !port) {
    return reason;
  }
  return set_port(*port, out);
}

// ---- request head ------------------------------------------------------------------------

struct Head {
  std::string_view method;
  std::string_view target;
  HttpVersion version = HttpVersion::http_1_1;
  std::optional<Authority> target_authority;  // from an absolute-form or authority-form target
  std::optional<Authority> host_field;
  size_t host_fields = 0;
};

enum class LineEnd : uint8_t {
  crlf,
  cr,      // the bytes end with the line's CR: its content is whole, its LF may follow
  open,    // the bytes end before the line does
  broken,  // a CR not followed by LF, or a bare LF
};

struct Line {
  std::string_view content;  // without the line end, so it never holds CR or LF
  LineEnd end = LineEnd::open;
  size_t next = 0;  // offset of the next line when end is crlf
};

Line next_line(std::string_view head, size_t offset) {
  // find_if rather than find_first_of("\r\n"), which searches the set once per byte of the line.
  const auto stop_at = std::find_if(head.begin() + offset, head.end(), [](char c) { return c == '\r' || c == '\n'; });
  if (stop_at == head.end()) {
    return {head.substr(offset), LineEnd::open, head.size()};
  }
  const auto stop = static_cast<size_t>(stop_at - head.begin());
  Line line{head.substr(offset, stop - offset), LineEnd::broken, stop};
  if (head[stop] == '\r' && stop + 1 == head.size()) {
    line.end = LineEnd::cr;
  } else if (head[stop] == '\r' && head[stop + 1] == '\n') {
    line.end = LineEnd::crlf;
    line.next = stop + 2;
  }
  return line;
}

// Each check below may be handed only the start of its line (`complete` false) and then judges
// the bytes it has, in order; only what needs the whole line (the target's form, the Host value)
// waits for its end. That is what rejects a stream within its first bytes when they cannot begin
// a request, and it keeps a verdict, once given, the same however many bytes follow. A line is
// complete once its CR or LF is in: its content cannot change after that, whatever the line end
// turns out to be.

Reason check_method(std::string_view method) {
  for (size_t i = 0; i < method.size(); ++i) {
    if (!is_tchar(method[i])) {
      return Reason::method_invalid;
    }
    if (i == kMaxHttpMethodLength) {
      return Reason::method_too_long;
    }
  }
  return Reason::none;
}

// Compared byte by byte, so a version already off "HTTP/1.0" and "HTTP/1.1" fails at once.
Reason check_version(std::string_view version, bool complete, Head& head) {
  for (size_t i = 0; i < std::min(version.size(), kVersionShape.size()); ++i) {
    const char c = version[i];
    if (i == kVersionMinor ? (c != '0' && c != '1') : c != kVersionShape[i]) {
      return i == kVersionMajor && is_digit(c) ? Reason::not_http1 : Reason::version_invalid;
    }
  }
  if (version.size() > kVersionShape.size() || (complete && version.size() < kVersionShape.size())) {
    return Reason::version_invalid;
  }
  if (complete) {
    head.version = version[kVersionMinor] == '0' ? HttpVersion::http_1_0 : HttpVersion::http_1_1;
  }
  return Reason::none;
}

// RFC 9112 3.2: CONNECT takes authority-form (host and port, the tunnel's far end) and nothing
// else; OPTIONS may take "*"; every method may take origin-form ("/path") or absolute-form
// ("http://host/path", how clients talk to proxies). The authority of the last two forms names the
// host.
Reason check_target_form(Head& head) {
  const std::string_view target = head.target;
  if (head.method == "CONNECT") {
    if (target.starts_with('/') || target == "*") {
      return Reason::target_invalid;
    }
    const Reason reason = parse_authority(target, head.target_authority.emplace());
    return reason == Reason::none && !head.target_authority->port ? Reason::port_invalid : reason;
  }
  if (target.starts_with('/')) {
    return Reason::none;
  }
  if (target == "*") {
    return head.method == "OPTIONS" ? Reason::none : Reason::target_invalid;
  }
  const size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) {
    return Reason::target_invalid;
  }
  const std::string_view scheme = target.substr(0, scheme_end);
  if (!equals_ignoring_case(scheme, "http") && !equals_ignoring_case(scheme, "https")) {
    return Reason::target_invalid;
  }
  const std::string_view rest = target.substr(scheme_end + 3);
  return parse_authority(rest.substr(0, rest.find_first_of("/?#")), head.target_authority.emplace());
}

// RFC 9112 3: method SP request-target SP HTTP-version, single spaces, nothing else.
Reason check_request_line(std::string_view line, bool complete, Head& head) {
  const size_t method_end = line.find(' ');
  if (method_end == 0) {
    return Reason::method_invalid;
  }
  if (const Reason reason = check_method(line.substr(0, method_end)); reason != Reason::none) {
    return reason;
  }
  if (method_end == std::string_view::npos) {
    return complete ? Reason::request_line_invalid : Reason::none;
  }
  const std::string_view rest = line.substr(method_end + 1);
  const size_t target_end = rest.find(' ');
  if (target_end == 0) {
    return Reason::request_line_invalid;
  }
  if (!std::ranges::all_of(rest.substr(0, target_end), is_visible)) {
    return Reason::target_invalid;
  }
  if (target_end == std::string_view::npos) {
    return complete ? Reason::request_line_invalid : Reason::none;
  }
  if (const Reason reason = check_version(rest.substr(target_end + 1), complete, head); reason != Reason::none) {
    return reason;
  }
  if (!complete) {
    return Reason::none;
  }
  head.method = line.substr(0, method_end);
  head.target = rest.substr(0, target_end);
  return check_target_form(head);
}

// RFC 9112 3.2: a server answers 400 to several Host fields, and a proxy given an absolute-form
// target replaces Host with the target's host. Either way some reader would go by another name
// than the firewall, so both are refused.
Reason add_host_field(std::string_view value, Head& head) {
  if (++head.host_fields > 1) {
    return Reason::host_conflict;
  }
  Authority host;
  if (const Reason reason = parse_authority(value, host); reason != Reason::none) {
    return reason;
  }
  if (head.target_authority && head.target_authority->host != host.host) {
    return Reason::host_conflict;
  }
  head.host_field = std::move(host);
  return Reason::none;
}

// RFC 9112 5: field-name ":" OWS field-value OWS. Whitespace before the colon and obs-fold are
// both refused outright (RFC 9112 5.1 and 5.2 allow a server to): they are how request
// smuggling hides a field from one reader and shows it to the next.
Reason check_header_line(std::string_view line, bool complete, Head& head) {
  if (!line.empty() && is_ows(line.front())) {
    return Reason::obs_fold;
  }
  const size_t colon = line.find(':');
  if (colon == 0 || !std::ranges::all_of(line.substr(0, colon), is_tchar)) {
    return Reason::header_name_invalid;
  }
  if (colon == std::string_view::npos) {
    return complete ? Reason::header_name_invalid : Reason::none;
  }
  const std::string_view value = line.substr(colon + 1);
  if (!std::ranges::all_of(value, is_field_char)) {
    return Reason::header_value_invalid;
  }
  if (!complete || !equals_ignoring_case(line.substr(0, colon), "host")) {
    return Reason::none;
  }
  return add_host_field(trim_ows(value), head);
}

HttpRequestResult finish(Head& head, size_t head_length) {
  if (!head.target_authority && !head.host_field && head.version == HttpVersion::http_1_1) {
    return make_result(ParseStatus::malformed, Reason::host_missing);
  }
  HttpRequestResult result = make_result(ParseStatus::found);
  result.method = head.method;
  result.target = head.target;
  result.version = head.version;
  result.head_length = static_cast<uint32_t>(head_length);
  if (auto& authority = head.target_authority ? head.target_authority : head.host_field) {
    result.host = std::move(authority->host);
    result.host_port = authority->port;
    result.host_is_ip_literal = authority->ip_literal;
  }
  return result;
}

}  // namespace

std::string_view to_string(HttpRequestReason reason) noexcept {
  switch (reason) {
    case Reason::none:
      return "none";
    case Reason::method_invalid:
      return "method-invalid";
    case Reason::method_too_long:
      return "method-too-long";
    case Reason::target_invalid:
      return "target-invalid";
    case Reason::request_line_invalid:
      return "request-line-invalid";
    case Reason::version_invalid:
      return "version-invalid";
    case Reason::not_http1:
      return "not-http1";
    case Reason::line_ending:
      return "line-ending";
    case Reason::obs_fold:
      return "obs-fold";
    case Reason::header_name_invalid:
      return "header-name-invalid";
    case Reason::header_value_invalid:
      return "header-value-invalid";
    case Reason::too_large:
      return "too-large";
    case Reason::host_missing:
      return "host-missing";
    case Reason::host_conflict:
      return "host-conflict";
    case Reason::host_invalid:
      return "host-invalid";
    case Reason::port_invalid:
      return "port-invalid";
  }
  return "unknown";
}

std::string_view to_string(HttpVersion version) noexcept {
  switch (version) {
    case HttpVersion::http_1_0:
      return "HTTP/1.0";
    case HttpVersion::http_1_1:
      return "HTTP/1.1";
  }
  return "unknown";
}

HttpRequestResult parse_http_request(std::span<const uint8_t> stream, const HttpRequestLimits& limits) {
  // Only the first max_head bytes are ever looked at: a head that has not ended by then is too
  // large however it goes on.
  const auto window = stream.first(std::min(stream.size(), limits.max_head));
  const std::string_view bytes(reinterpret_cast<const char*>(window.data()), window.size());
  Head head;
  for (size_t offset = 0;;) {
    const Line line = next_line(bytes, offset);
    const bool complete = line.end != LineEnd::open;
    const bool head_ends = offset != 0 && complete && line.content.empty();
    if (head_ends && line.end == LineEnd::crlf) {
      return finish(head, line.next);
    }
    Reason reason = Reason::none;
    if (offset == 0) {
      reason = check_request_line(line.content, complete, head);
    } else if (!head_ends) {
      reason = check_header_line(line.content, complete, head);
    }
    if (reason != Reason::none) {
      return make_result(ParseStatus::malformed, reason);
    }
    if (line.end == LineEnd::broken) {
      return make_result(ParseStatus::malformed, Reason::line_ending);
    }
    if (line.end != LineEnd::crlf) {
      return window.size() == limits.max_head ? make_result(ParseStatus::malformed, Reason::too_large)
                                              : make_result(ParseStatus::need_more);
    }
    offset = line.next;
  }
}

}  // namespace portcullis::parsers
