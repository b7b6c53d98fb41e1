#include "parsers/dns_message.h"

#include <algorithm>

#include "parsers/byte_reader.h"

namespace portcullis::parsers {
namespace {

using Reason = DnsReason;

constexpr size_t kHeaderSize = 12;
constexpr size_t kTcpLengthPrefix = 2;
constexpr size_t kMaxNameWireLength = 255;
constexpr uint8_t kLabelTypeMask = 0xc0;
constexpr uint8_t kLabelTypePointer = 0xc0;
constexpr uint8_t kLabelTypeNormal = 0x00;
constexpr uint16_t kPointerOffsetMask = 0x3fff;
constexpr uint16_t kClassIn = 1;
constexpr size_t kIpv4Length = 4;
constexpr size_t kIpv6Length = 16;
constexpr uint16_t kSvcParamIpv4Hint = 4;
constexpr uint16_t kSvcParamIpv6Hint = 6;

// Header flag bits (RFC 1035 4.1.1, RFC 4035 3.2), by byte: flags_high is byte 2, flags_low byte 3.
constexpr uint8_t kFlagResponse = 0x80;
constexpr uint8_t kFlagTruncated = 0x02;
constexpr uint8_t kFlagRecursionDesired = 0x01;
constexpr uint8_t kFlagRecursionAvailable = 0x80;
constexpr uint8_t kFlagCheckingDisabled = 0x10;
constexpr uint8_t kOpcodeShift = 3;
constexpr uint8_t kOpcodeMask = 0x0f;
constexpr uint8_t kRcodeMask = 0x0f;
constexpr uint8_t kRcodeNxdomain = 3;
constexpr size_t kFlagsHighOffset = 2;
constexpr size_t kFlagsLowOffset = 3;
constexpr size_t kCountsOffset = 6;  // ANCOUNT, NSCOUNT and ARCOUNT, after ID, flags and QDCOUNT

DnsMessage refuse(DnsMessage& message, Reason reason) {
  message.status = ParseStatus::malformed;
  message.reason = reason;
  message.question = {};
  message.addresses.clear();
  message.cnames.clear();
  message.question_end = 0;
  return std::move(message);
}

// ---- names -------------------------------------------------------------------------------

// Presentation form (RFC 1035 5.1), see the header: letters lower-cased, visible ASCII kept,
// every other byte and the two that would change how the text splits ('.', '\') as \DDD.
void append_label(std::span<const uint8_t> label, std::string& text) {
  if (!text.empty()) {
    text += '.';
  }
  for (const uint8_t byte : label) {
    if (byte >= 'A' && byte <= 'Z') {
      text += static_cast<char>(byte - 'A' + 'a');
    } else if (byte > ' ' && byte < 0x7f && byte != '.' && byte != '\\') {
      text += static_cast<char>(byte);
    } else {
      text += '\\';
      text += static_cast<char>('0' + byte / 100);
      text += static_cast<char>('0' + byte / 10 % 10);
      text += static_cast<char>('0' + byte % 10);
    }
  }
}

struct NameEnd {
  Reason reason = Reason::none;
  size_t end = 0;  // offset just past the name where it is written: its root label or first pointer
};

// Reads the name written at `start`, whose own bytes must end by `limit` (the end of the RDATA
// that holds it, else of the message); `truncated` is the reason when they do not. A pointer must
// lead strictly before the run of labels it ends (the name's start, or the previous pointer's
// target), so every jump goes further back and no message can make the reading loop; the jump
// bound only caps the time a long chain of pointers can cost. `text` may be null when only the
// bounds matter.
NameEnd read_name(std::span<const uint8_t> message, size_t start, size_t limit, Reason truncated, std::string* text) {
  if (text != nullptr) {
    text->clear();
  }
  std::optional<size_t> end;
  size_t position = start;
  size_t run_start = start;
  size_t wire_length = 0;
  size_t jumps = 0;
  for (;;) {
    const size_t bound = end ? message.size() : limit;
    if (position >= bound) {
      return {truncated};
    }
    const uint8_t length = message[position];
    if ((length & kLabelTypeMask) == kLabelTypePointer) {
      if (position + 1 >= bound) {
        return {truncated};
      }
      const size_t target = ((size_t{length} << 8) | message[position + 1]) & kPointerOffsetMask;
      if (target < kHeaderSize || target >= message.size()) {
        return {Reason::pointer_out_of_bounds};
      }
      if (target > position) {
        return {Reason::pointer_forward};
      }
      if (target >= run_start) {
        return {Reason::pointer_loop};
      }
      if (++jumps > kMaxDnsPointerJumps) {
        return {Reason::too_many_pointers};
      }
      if (!end) {
        end = position + 2;
      }
      position = run_start = target;
      continue;
    }
    if ((length & kLabelTypeMask) != kLabelTypeNormal) {
      return {Reason::bad_label_type};
    }
    // The root label's byte counts too, so a name is at most 255 bytes however it ends.
    wire_length += size_t{1} + length;
    if (wire_length > kMaxNameWireLength) {
      return {Reason::name_too_long};
    }
    if (length == 0) {
      return {Reason::none, end.value_or(position + 1)};
    }
    if (length >= bound - position) {
      return {truncated};
    }
    if (text != nullptr) {
      append_label(message.subspan(position + 1, length), *text);
    }
    position += size_t{1} + length;
  }
}

// Reads a name at the reader's position and moves the reader past it.
Reason read_name_at(std::span<const uint8_t> message, ByteReader& reader, Reason truncated, std::string* text) {
  const NameEnd name = read_name(message, reader.consumed(), message.size(), truncated, text);
  if (name.reason == Reason::none && !reader.skip(name.end - reader.consumed())) {
    return truncated;
  }
  return name.reason;
}

// ---- records -----------------------------------------------------------------------------

struct Record {
  std::string owner;  // left empty when the caller does not want names
  uint16_t type = 0;
  uint16_t rclass = 0;
  uint32_t ttl = 0;
  size_t rdata_offset = 0;
  std::span<const uint8_t> rdata;
};

Reason read_record(std::span<const uint8_t> message, ByteReader& reader, bool with_owner, Record& record) {
  const Reason name = read_name_at(message, reader, Reason::record_truncated, with_owner ? &record.owner : nullptr);
  if (name != Reason::none) {
    return name;
  }
  const auto type = reader.u16();
  const auto rclass = reader.u16();
  const auto ttl = reader.u32();
  const auto rdlength = reader.u16();
  if (!type || !rclass || !ttl || !rdlength) {
    return Reason::record_truncated;
  }
  record.rdata_offset = reader.consumed();
  const auto rdata = reader.bytes(*rdlength);
  if (!rdata) {
    return Reason::record_truncated;
  }
  record.type = *type;
  record.rclass = *rclass;
  record.ttl = *ttl;
  record.rdata = *rdata;
  return Reason::none;
}

void add_address(const Record& record, std::span<const uint8_t> address, DnsMessage& out) {
  DnsAddressRecord entry;
  entry.name = record.owner;
  entry.v6 = address.size() == kIpv6Length;
  entry.ttl = record.ttl;
  std::ranges::copy(address, entry.address.begin());
  out.addresses.push_back(std::move(entry));
}

Reason read_cname(std::span<const uint8_t> message, const Record& record, DnsMessage& out) {
  const size_t rdata_end = record.rdata_offset + record.rdata.size();
  DnsCnameRecord cname;
  const NameEnd target = read_name(message, record.rdata_offset, rdata_end, Reason::rdata_length, &cname.target);
  if (target.reason != Reason::none) {
    return target.reason;
  }
  if (target.end != rdata_end) {
    return Reason::rdata_length;
  }
  cname.name = record.owner;
  cname.ttl = record.ttl;
  out.cnames.push_back(std::move(cname));
  return Reason::none;
}

// RFC 9460 2.2: SvcPriority, TargetName, then SvcParams in strictly increasing key order (2.2
// makes a record with keys out of order or repeated malformed, so it is refused, not read in part).
Reason read_service_binding(std::span<const uint8_t> message, const Record& record, DnsMessage& out) {
  ByteReader rdata(record.rdata);
  const auto priority = rdata.u16();
  if (!priority) {
    return Reason::rdata_length;
  }
  // RFC 9460 forbids compressing TargetName; read as any name, since refusing a pointer guards
  // nothing the name rules do not already.
  const size_t target_start = record.rdata_offset + rdata.consumed();
  const NameEnd target =
      read_name(message, target_start, record.rdata_offset + record.rdata.size(), Reason::rdata_length, nullptr);
  if (target.reason != Reason::none) {
    return target.reason;
  }
  if (!rdata.skip(target.end - target_start)) {
    return Reason::rdata_length;
  }
  std::optional<uint16_t> previous_key;
  while (!rdata.empty()) {
    const auto key = rdata.u16();
    auto value = rdata.prefixed(2);
    if (!key || !value || (previous_key && *key <= *previous_key)) {
      return Reason::rdata_length;
    }
    previous_key = key;
    if (*key != kSvcParamIpv4Hint && *key != kSvcParamIpv6Hint) {
      continue;
    }
    const size_t address_length = *key == kSvcParamIpv4Hint ? kIpv4Length : kIpv6Length;
    if (value->empty() || value->remaining() % address_length != 0) {
      return Reason::rdata_length;
    }
    if (*priority == 0) {
      continue;
    }
    while (const auto address = value->bytes(address_length)) {
      add_address(record, *address, out);
    }
  }
  return Reason::none;
}

Reason read_answer(std::span<const uint8_t> message, const Record& record, DnsMessage& out) {
  if (record.rclass != kClassIn) {
    return Reason::none;
  }
  switch (static_cast<DnsType>(record.type)) {
    case DnsType::a:
    case DnsType::aaaa: {
      const size_t expected = record.type == static_cast<uint16_t>(DnsType::a) ? kIpv4Length : kIpv6Length;
      if (record.rdata.size() != expected) {
        return Reason::rdata_length;
      }
      add_address(record, record.rdata, out);
      return Reason::none;
    }
    case DnsType::cname:
      return read_cname(message, record, out);
    case DnsType::svcb:
    case DnsType::https:
      return read_service_binding(message, record, out);
  }
  return Reason::none;
}

}  // namespace

std::string_view to_string(DnsReason reason) noexcept {
  switch (reason) {
    case Reason::none:
      return "none";
    case Reason::header_truncated:
      return "header-truncated";
    case Reason::question_truncated:
      return "question-truncated";
    case Reason::name_too_long:
      return "name-too-long";
    case Reason::pointer_loop:
      return "pointer-loop";
    case Reason::pointer_out_of_bounds:
      return "pointer-out-of-bounds";
    case Reason::pointer_forward:
      return "pointer-forward";
    case Reason::too_many_pointers:
      return "too-many-pointers";
    case Reason::bad_label_type:
      return "bad-label-type";
    case Reason::record_truncated:
      return "record-truncated";
    case Reason::rdata_length:
      return "rdata-length";
    case Reason::too_many_records:
      return "too-many-records";
    case Reason::trailing_data:
      return "trailing-data";
    case Reason::not_a_query:
      return "not-a-query";
    case Reason::not_a_response:
      return "not-a-response";
    case Reason::opcode:
      return "opcode";
    case Reason::question_count:
      return "question-count";
  }
  return "unknown";
}

DnsMessage parse_dns_message(std::span<const uint8_t> message, DnsDirection direction) {
  DnsMessage result;
  ByteReader reader(message);
  const auto id = reader.u16();
  const auto flags_high = reader.u8();
  const auto flags_low = reader.u8();
  const auto question_count = reader.u16();
  const auto answer_count = reader.u16();
  const auto authority_count = reader.u16();
  const auto additional_count = reader.u16();
  if (!additional_count) {
    return refuse(result, Reason::header_truncated);
  }
  result.id = *id;
  result.response = (*flags_high & kFlagResponse) != 0;
  result.opcode = (*flags_high >> kOpcodeShift) & kOpcodeMask;
  result.truncated_flag = (*flags_high & kFlagTruncated) != 0;
  result.recursion_desired = (*flags_high & kFlagRecursionDesired) != 0;
  result.rcode = *flags_low & kRcodeMask;

  if (direction == DnsDirection::query && result.response) {
    return refuse(result, Reason::not_a_query);
  }
  if (direction == DnsDirection::response && !result.response) {
    return refuse(result, Reason::not_a_response);
  }
  if (result.opcode != 0) {
    return refuse(result, Reason::opcode);
  }
  if (*question_count != 1) {
    return refuse(result, Reason::question_count);
  }
  if (std::max({*answer_count, *authority_count, *additional_count}) > kMaxDnsRecordsPerSection) {
    return refuse(result, Reason::too_many_records);
  }

  Reason reason = read_name_at(message, reader, Reason::question_truncated, &result.question.name);
  if (reason != Reason::none) {
    return refuse(result, reason);
  }
  const auto qtype = reader.u16();
  const auto qclass = reader.u16();
  if (!qclass) {
    return refuse(result, Reason::question_truncated);
  }
  result.question.type = *qtype;
  result.question.qclass = *qclass;
  result.question_end = static_cast<uint32_t>(reader.consumed());

  Record record;
  for (size_t i = 0; i < *answer_count; ++i) {
    reason = read_record(message, reader, true, record);
    if (reason == Reason::none) {
      reason = read_answer(message, record, result);
    }
    if (reason != Reason::none) {
      return refuse(result, reason);
    }
  }
  // Walked only so a message's end is where its counts say: nothing in them is read.
  for (size_t i = 0; i < size_t{*authority_count} + *additional_count; ++i) {
    reason = read_record(message, reader, false, record);
    if (reason != Reason::none) {
      return refuse(result, reason);
    }
  }
  if (!reader.empty()) {
    return refuse(result, Reason::trailing_data);
  }
  result.status = ParseStatus::found;
  return result;
}

DnsMessage parse_dns_tcp_stream(std::span<const uint8_t> stream, DnsDirection direction) {
  DnsMessage result;
  if (stream.size() < kTcpLengthPrefix) {
    return result;
  }
  const size_t length = (size_t{stream[0]} << 8) | stream[1];
  // Decided from the prefix alone: no bytes that follow can make so short a message whole.
  if (length < kHeaderSize) {
    return refuse(result, Reason::header_truncated);
  }
  if (stream.size() - kTcpLengthPrefix < length) {
    return result;
  }
  return parse_dns_message(stream.subspan(kTcpLengthPrefix, length), direction);
}

std::optional<std::vector<uint8_t>> synthesize_nxdomain(std::span<const uint8_t> query) {
  const DnsMessage parsed = parse_dns_message(query, DnsDirection::query);
  if (parsed.status != ParseStatus::found) {
    return std::nullopt;
  }
  // The header and question as sent (QDCOUNT is already 1), then the flags and the other counts.
  std::vector<uint8_t> reply(query.begin(), query.begin() + parsed.question_end);
  reply[kFlagsHighOffset] = kFlagResponse | (query[kFlagsHighOffset] & kFlagRecursionDesired);
  reply[kFlagsLowOffset] = kFlagRecursionAvailable | (query[kFlagsLowOffset] & kFlagCheckingDisabled) | kRcodeNxdomain;
  std::fill(reply.begin() + kCountsOffset, reply.begin() + kHeaderSize, uint8_t{0});
  return reply;
}

std::vector<std::string> cname_chain(const DnsMessage& message, const std::string& start) {
  std::vector<std::string> chain{start};
  while (chain.size() < kMaxDnsCnameChain) {
    const auto next = std::ranges::find(message.cnames, chain.back(), &DnsCnameRecord::name);
    if (next == message.cnames.end() || std::ranges::find(chain, next->target) != chain.end()) {
      break;
    }
    chain.push_back(next->target);
  }
  return chain;
}

}  // namespace portcullis::parsers
