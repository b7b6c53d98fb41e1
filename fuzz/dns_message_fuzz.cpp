// libFuzzer target: the DNS message parser on arbitrary bytes, as a UDP message and as the start of
// a TCP stream (length prefix included).
// Besides memory errors it traps on broken promises: a found message has names in presentation
// form (lower-case, no empty label, escapes well formed, at most 255 bytes on the wire) and IPv4
// addresses zero-padded; a UDP message is never need_more; the same bytes behind a TCP length
// prefix read the same, and every shorter prefix of that stream is need_more; a verdict on a
// stream prefix stands for the whole stream; the direction argument only ever refuses the other
// QR bit; the NXDOMAIN reply to a found query reads back with its ID and question; and a CNAME
// chain is bounded and repeats no name.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "parsers/dns_message.h"

namespace {

using portcullis::parsers::DnsAddressRecord;
using portcullis::parsers::DnsCnameRecord;
using portcullis::parsers::DnsDirection;
using portcullis::parsers::DnsMessage;
using portcullis::parsers::DnsReason;
using portcullis::parsers::ParseStatus;

constexpr size_t kMaxNameWireLength = 255;
constexpr size_t kMaxTcpMessage = 65535;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The name's length on the wire, or 0 when the text is not in the parser's presentation form.
size_t wire_length(const std::string& name) {
  if (name.empty()) {
    return 1;
  }
  size_t wire = 1;
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '.') {
      if (label == 0) {
        return 0;
      }
      wire += 1 + label;
      label = 0;
      continue;
    }
    if (c <= ' ' || c >= 0x7f || (c >= 'A' && c <= 'Z')) {
      return 0;
    }
    if (c == '\\') {
      if (i + 3 >= name.size() || !is_digit(name[i + 1]) || !is_digit(name[i + 2]) || !is_digit(name[i + 3]) ||
          std::stoi(name.substr(i + 1, 3)) > 255) {
        return 0;
      }
      i += 3;
    }
    ++label;
  }
  return label == 0 ? 0 : wire + 1 + label;
}

void check_name(const std::string& name) {
  const size_t wire = wire_length(name);
  if (wire == 0 || wire > kMaxNameWireLength) {
    __builtin_trap();
  }
}

bool same(const DnsAddressRecord& a, const DnsAddressRecord& b) {
  return a.name == b.name && a.address == b.address && a.v6 == b.v6 && a.ttl == b.ttl;
}

bool same(const DnsCnameRecord& a, const DnsCnameRecord& b) {
  return a.name == b.name && a.target == b.target && a.ttl == b.ttl;
}

bool same(const DnsMessage& a, const DnsMessage& b) {
  return a.status == b.status && a.reason == b.reason && a.id == b.id && a.response == b.response &&
         a.opcode == b.opcode && a.rcode == b.rcode && a.truncated_flag == b.truncated_flag &&
         a.recursion_desired == b.recursion_desired && a.question.name == b.question.name &&
         a.question.type == b.question.type && a.question.qclass == b.question.qclass &&
         a.question_end == b.question_end &&
         std::ranges::equal(a.addresses, b.addresses, [](const auto& x, const auto& y) { return same(x, y); }) &&
         std::ranges::equal(a.cnames, b.cnames, [](const auto& x, const auto& y) { return same(x, y); });
}

void check_found(const DnsMessage& message, size_t size) {
  if (message.question_end > size || message.opcode != 0) {
    __builtin_trap();
  }
  check_name(message.question.name);
  for (const DnsAddressRecord& address : message.addresses) {
    check_name(address.name);
    if (!address.v6 && std::any_of(address.address.begin() + 4, address.address.end(), [](uint8_t b) { return b; })) {
      __builtin_trap();
    }
  }
  for (const DnsCnameRecord& cname : message.cnames) {
    check_name(cname.name);
    check_name(cname.target);
  }
  const std::vector<std::string> chain = portcullis::parsers::cname_chain(message, message.question.name);
  if (chain.empty() || chain.size() > portcullis::parsers::kMaxDnsCnameChain ||
      chain.front() != message.question.name) {
    __builtin_trap();
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    if (std::find(chain.begin() + static_cast<std::ptrdiff_t>(i) + 1, chain.end(), chain[i]) != chain.end()) {
      __builtin_trap();
    }
  }
}

void check_nxdomain(std::span<const uint8_t> input, const DnsMessage& message) {
  const auto reply = portcullis::parsers::synthesize_nxdomain(input);
  const bool query = message.status == ParseStatus::found && !message.response;
  if (reply.has_value() != query) {
    __builtin_trap();
  }
  if (!reply) {
    return;
  }
  const DnsMessage back = portcullis::parsers::parse_dns_message(*reply, DnsDirection::response);
  if (back.status != ParseStatus::found || back.id != message.id || back.rcode != 3 ||
      back.question.name != message.question.name || back.question.type != message.question.type ||
      back.question.qclass != message.question.qclass || back.recursion_desired != message.recursion_desired ||
      !back.addresses.empty() || !back.cnames.empty() || back.question_end != reply->size()) {
    __builtin_trap();
  }
}

void check_directions(std::span<const uint8_t> input, const DnsMessage& message) {
  const DnsMessage as_query = portcullis::parsers::parse_dns_message(input, DnsDirection::query);
  const DnsMessage as_response = portcullis::parsers::parse_dns_message(input, DnsDirection::response);
  const bool header = message.reason != DnsReason::header_truncated;
  const DnsMessage& matching = message.response ? as_response : as_query;
  const DnsMessage& other = message.response ? as_query : as_response;
  if (!same(matching, message) ||
      (header && (other.reason != (message.response ? DnsReason::not_a_query : DnsReason::not_a_response)))) {
    __builtin_trap();
  }
}

// `longer` starts with `shorter`: a verdict on the shorter stream must stand.
void check_stable(const DnsMessage& shorter, const DnsMessage& longer) {
  if (shorter.status != ParseStatus::need_more && !same(shorter, longer)) {
    __builtin_trap();
  }
}

void check_as_tcp(std::span<const uint8_t> input, const DnsMessage& message) {
  if (input.size() > kMaxTcpMessage) {
    return;
  }
  std::vector<uint8_t> stream{static_cast<uint8_t>(input.size() >> 8), static_cast<uint8_t>(input.size())};
  stream.insert(stream.end(), input.begin(), input.end());
  stream.push_back(0);  // the next message's first byte, which must not matter
  const DnsMessage whole = portcullis::parsers::parse_dns_tcp_stream(stream);
  if (!same(whole, message)) {
    __builtin_trap();
  }
  const auto complete = std::span<const uint8_t>(stream).first(stream.size() - 1);
  for (const size_t cut : {size_t{0}, size_t{1}, size_t{2}, complete.size() / 2, complete.size() - 1}) {
    // A prefix below a header's length is refused from the prefix alone.
    if (cut < complete.size() && input.size() >= 12 &&
        portcullis::parsers::parse_dns_tcp_stream(complete.first(cut)).status != ParseStatus::need_more) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  const DnsMessage message = portcullis::parsers::parse_dns_message(input);
  if (message.status == ParseStatus::need_more) {
    __builtin_trap();
  }
  if (message.status == ParseStatus::found) {
    check_found(message, size);
  }
  check_directions(input, message);
  check_nxdomain(input, message);
  check_as_tcp(input, message);

  // The input as a stream that starts with its own length prefix.
  const DnsMessage stream = portcullis::parsers::parse_dns_tcp_stream(input);
  if (stream.status == ParseStatus::found) {
    check_found(stream, size - 2);
  }
  const size_t cut = size == 0 ? 0 : data[0] % size;
  check_stable(portcullis::parsers::parse_dns_tcp_stream(input.first(cut)), stream);
  check_stable(portcullis::parsers::parse_dns_tcp_stream(input.first(size / 2)), stream);
  return 0;
}
