// libFuzzer target: the HTTP request head parser on arbitrary stream bytes, with the default head
// limit and with a small one (so too_large is reached without 8 KiB inputs).
// Besides memory errors it traps on broken promises: a found head lies within the input and the
// limit and carries a normalized host; every shorter prefix of it is need_more; and a verdict on a
// prefix of the input stands for the whole input, since the caller parses again as segments
// arrive (a firewall must neither refuse a request for arriving in pieces nor let one through that
// a shorter piece already refused).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "parsers/http_request.h"

namespace {

using portcullis::parsers::HttpRequestLimits;
using portcullis::parsers::HttpRequestReason;
using portcullis::parsers::HttpRequestResult;
using portcullis::parsers::kMaxHttpMethodLength;
using portcullis::parsers::ParseStatus;
using Reason = HttpRequestReason;

constexpr size_t kMaxHostNameLength = 253;
constexpr HttpRequestLimits kSmallLimits{.max_head = 64};

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

bool is_ipv6_text_char(char c) {
  return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9') || c == ':' || c == '.';
}

void check_host(const HttpRequestResult& result) {
  if (!result.host) {
    if (result.host_port || result.host_is_ip_literal || result.version != portcullis::parsers::HttpVersion::http_1_0) {
      __builtin_trap();
    }
    return;
  }
  const std::string& host = *result.host;
  if (host.empty() || host.size() > kMaxHostNameLength || host.back() == '.' || host.front() == '.') {
    __builtin_trap();
  }
  const bool ipv6 = host.find(':') != std::string::npos;
  for (const char c : host) {
    if (ipv6 ? !is_ipv6_text_char(c) : !is_name_char(c)) {
      __builtin_trap();
    }
  }
  if ((ipv6 && !result.host_is_ip_literal) || (result.host_port && *result.host_port == 0)) {
    __builtin_trap();
  }
}

bool same(const HttpRequestResult& a, const HttpRequestResult& b) {
  return a.status == b.status && a.reason == b.reason && a.method == b.method && a.target == b.target &&
         a.version == b.version && a.host == b.host && a.host_port == b.host_port &&
         a.host_is_ip_literal == b.host_is_ip_literal && a.head_length == b.head_length;
}

// `longer` starts with `shorter`: a verdict on the shorter input must stand.
void check_stable(const HttpRequestResult& shorter, const HttpRequestResult& longer) {
  if (shorter.status != ParseStatus::need_more && !same(shorter, longer)) {
    __builtin_trap();
  }
}

HttpRequestResult check_input(std::span<const uint8_t> input, const HttpRequestLimits& limits) {
  HttpRequestResult result = portcullis::parsers::parse_http_request(input, limits);
  if (result.status != ParseStatus::found) {
    return result;
  }
  check_host(result);
  if (result.head_length > input.size() || result.head_length > limits.max_head || result.method.empty() ||
      result.method.size() > kMaxHttpMethodLength || result.target.empty()) {
    __builtin_trap();
  }
  const auto head = input.first(result.head_length);
  if (portcullis::parsers::parse_http_request(head.first(head.size() - 1), limits).status != ParseStatus::need_more ||
      !same(portcullis::parsers::parse_http_request(head, limits), result)) {
    __builtin_trap();
  }
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  const HttpRequestResult result = check_input(input, {});
  // A prefix cut where the input's own first byte says, so the cut point is fuzzed too.
  const size_t cut = size == 0 ? 0 : data[0] % size;
  check_stable(portcullis::parsers::parse_http_request(input.first(cut)), result);
  check_stable(portcullis::parsers::parse_http_request(input.first(size / 2)), result);

  // The small limit can only turn a verdict into too_large: a head within it reads the same.
  const HttpRequestResult small = check_input(input, kSmallLimits);
  const bool small_too_large = small.status == ParseStatus::malformed && small.reason == Reason::too_large;
  if ((!small_too_large && !same(small, result)) ||
      (small_too_large && result.status == ParseStatus::found && result.head_length <= kSmallLimits.max_head)) {
    __builtin_trap();
  }
  return 0;
}
