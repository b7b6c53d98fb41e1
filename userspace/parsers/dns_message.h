// DNS message parser (RFC 1035, RFC 3596, RFC 9460): reads the question of a query, and the
// question, CNAMEs and addresses of a response, so name rules can bind a flow's destination
// address to the names that resolved to it.
//
// Strict on purpose: the answers become bindings, so a message whose reading needs a guess is
// refused as malformed rather than read one way here and another way by the client. Exactly one
// question and opcode QUERY; compression pointers only backwards, never into the header or into
// the name being read (so no message can loop the parser); labels of type 00 or 11 only (the
// extended types 01 and 10 are obsolete); every section walked to its end and no bytes after it.
//
// Names are text in presentation form (RFC 1035 5.1): ASCII letters lower-cased (queries may mix
// case, RFC 5452 "0x20"), no trailing dot, the root is "". A label byte that is not visible ASCII,
// and '.' and '\' inside a label, are written as \DDD (three decimal digits), so a label holding
// a dot never reads as two labels and no such name can equal a policy's host name. Escaping,
// rather than refusing, keeps lookups of odd names (DNS-SD service instances) working without
// binding them to anything.
//
// Records are read from the answer section only, and only of class IN; the authority and
// additional sections are walked for bounds and otherwise skipped. A query's answer section is
// read the same way (RFC 1035 does not forbid one): only a response's addresses mean anything.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"

namespace portcullis::parsers {

enum class DnsReason : uint8_t {
  none,
  header_truncated,       // fewer than the 12 header bytes (a TCP length prefix below 12 too)
  question_truncated,     // the message ends inside the question
  name_too_long,          // a name longer than 255 bytes on the wire, counting the labels pointers lead to
  pointer_loop,           // a compression pointer back into the name being read: it would never end
  pointer_out_of_bounds,  // a compression pointer into the header or past the end of the message
  pointer_forward,        // a compression pointer to a later offset (compressors only point back)
  too_many_pointers,      // more pointers in one name than it could have labels (kMaxDnsPointerJumps)
  bad_label_type,         // a label length byte with type bits 01 (extended, obsolete) or 10 (reserved)
  record_truncated,       // the message ends inside a resource record, or an RDLENGTH passes its end
  rdata_length,           // RDATA that does not fit its type: A not 4 bytes, AAAA not 16, a CNAME or
                          // HTTPS/SVCB target not ending at RDLENGTH, a malformed SvcParam
  too_many_records,       // a section count above kMaxDnsRecordsPerSection
  trailing_data,          // bytes after the last record the counts announce
  not_a_query,            // QR is set where a query was expected
  not_a_response,         // QR is clear where a response was expected
  opcode,                 // an opcode other than QUERY (0): NOTIFY, UPDATE, IQUERY, ...
  question_count,         // QDCOUNT is not 1
};

[[nodiscard]] std::string_view to_string(DnsReason reason) noexcept;

// RR types the parser reads; every other type is skipped.
enum class DnsType : uint16_t {
  a = 1,
  cname = 5,
  aaaa = 28,
  svcb = 64,
  https = 65,
};

// Which side sent the message, when the caller knows it (from the port it is going to or coming
// from): a message with the other QR bit is refused as not_a_query or not_a_response.
enum class DnsDirection : uint8_t {
  any,
  query,
  response,
};

// Records in the answer section beyond this are refused (too_many_records), and so are
// authority and additional sections as long: real answers hold a handful, and the bound caps the
// work one message can cost.
inline constexpr size_t kMaxDnsRecordsPerSection = 256;
// One pointer per label of the longest name (127 one-byte labels): no chain a compressor writes
// is longer.
inline constexpr size_t kMaxDnsPointerJumps = 127;
// cname_chain stops after this many names.
inline constexpr size_t kMaxDnsCnameChain = 16;

struct DnsQuestion {
  std::string name;
  uint16_t type = 0;
  uint16_t qclass = 0;
};

struct DnsAddressRecord {
  std::string name;                   // the record's owner
  std::array<uint8_t, 16> address{};  // network order; IPv4 in the first 4 bytes, the rest zero
  bool v6 = false;
  uint32_t ttl = 0;
};

struct DnsCnameRecord {
  std::string name;
  std::string target;
  uint32_t ttl = 0;
};

struct DnsMessage {
  ParseStatus status = ParseStatus::need_more;
  DnsReason reason = DnsReason::none;
  // The header fields are set once the 12 header bytes are read, also when the message is then
  // refused (a caller may still want to answer its ID); everything below them only on found.
  uint16_t id = 0;
  bool response = false;  // QR
  uint8_t opcode = 0;
  uint8_t rcode = 0;            // the header's 4 bits; an EDNS extended RCODE is not combined in
  bool truncated_flag = false;  // TC
  bool recursion_desired = false;
  DnsQuestion question;
  // A and AAAA of the answer section, and the ipv4hint and ipv6hint of its HTTPS and SVCB records
  // in ServiceMode (priority above 0; AliasMode parameters are to be ignored, RFC 9460 2.4.2),
  // named by the record's owner.
  std::vector<DnsAddressRecord> addresses;
  std::vector<DnsCnameRecord> cnames;  // CNAMEs of the answer section, in message order
  uint32_t question_end = 0;           // offset just past the question, within the message
};

// `message` is one DNS message: a UDP payload, or a TCP message without its 2-byte length prefix.
// Never need_more: a message that ends early is malformed.
[[nodiscard]] DnsMessage parse_dns_message(std::span<const uint8_t> message,
                                           DnsDirection direction = DnsDirection::any);

// The first message of a TCP stream, which starts with its 2-byte length prefix: need_more until
// the whole message is there. question_end counts from the message, after the prefix.
[[nodiscard]] DnsMessage parse_dns_tcp_stream(std::span<const uint8_t> stream,
                                              DnsDirection direction = DnsDirection::any);

// A reply that refuses `query` (a message without a TCP length prefix): the same ID and question
// bytes (so a client's 0x20 case pattern comes back as sent), QR=1, opcode QUERY, RD and CD
// copied, RA=1, RCODE NXDOMAIN (3), no records. nullopt when `query` does not parse as a query.
[[nodiscard]] std::optional<std::vector<uint8_t>> synthesize_nxdomain(std::span<const uint8_t> query);

// `start`, then each CNAME target reached from it through the message's CNAMEs in order: every
// name of the chain is bound to the chain's final addresses. `start` is compared as parsed names
// are (lower-case, no trailing dot). Where a name has several CNAMEs (RFC 2181 10.1 forbids it)
// the first is followed; the chain stops before a name it already holds and at kMaxDnsCnameChain
// names.
[[nodiscard]] std::vector<std::string> cname_chain(const DnsMessage& message, const std::string& start);

}  // namespace portcullis::parsers
