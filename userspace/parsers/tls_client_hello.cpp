#include "parsers/tls_client_hello.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstddef>

#include "parsers/byte_reader.h"

#include "parsers/host_name.h"

namespace portcullis::parsers {
namespace {

using Reason = ClientHelloReason;

constexpr uint8_t kContentTypeHandshake = 22;
constexpr uint8_t kHandshakeTypeClientHello = 1;
constexpr uint8_t kSslv2HeaderBit = 0x80;
constexpr size_t kRecordHeaderLength = 5;
constexpr size_t kHandshakeHeaderLength = 4;
constexpr size_t kMaxRecordLength = size_t{1} << 14;  // RFC 8446 5.1, TLSPlaintext.length
constexpr size_t kRandomLength = 32;
constexpr size_t kMaxSessionIdLength = 32;
constexpr uint16_t kExtensionServerName = 0;
constexpr uint16_t kExtensionAlpn = 16;
constexpr uint16_t kExtensionEncryptedClientHello = 0xfe0d;
constexpr uint8_t kNameTypeHostName = 0;

constexpr bool is_tls_version(uint16_t version) {
  return version >= 0x0300 && version <= 0x0304;
}

ClientHelloResult make_result(ParseStatus status, Reason reason = Reason::none) {
  ClientHelloResult result;
  result.status = status;
  result.reason = reason;
  return result;
}

// ---- server_name -------------------------------------------------------------------------

// An address literal with a colon: IPv6 ("2001:db8::1", "::ffff:192.0.2.1", "[::1]") or host:port
// ("server4:443"). Only the characters those use, and the dots in it separate something.
constexpr bool is_colon_literal(std::string_view name) {
  const bool characters_ok = std::ranges::all_of(
      name, [](char c) { return is_host_name_char(c) || c == '.' || c == ':' || c == '[' || c == ']'; });
  return characters_ok && !name.ends_with('.') && !name.starts_with('.') && name.find("..") == std::string_view::npos;
}

Reason set_host_name(std::span<const uint8_t> raw, ClientHelloResult& out) {
  std::string_view name(reinterpret_cast<const char*>(raw.data()), raw.size());
  if (name.ends_with('.')) {
    name.remove_suffix(1);
  }
  if (name.empty() || name.size() > kMaxHostNameLength) {
    return Reason::sni_invalid;
  }
  std::string normalized(name.size(), '\0');
  std::ranges::transform(name, normalized.begin(), ascii_lower);
  // No DNS name contains ':', so such a name is an address literal (IPv6, or host:port as
  // some QUIC stacks send). It is kept and flagged so policy can treat it as an address.
  const bool colon_literal = normalized.find(':') != std::string::npos;
  if (colon_literal ? !is_colon_literal(normalized) : !is_dns_name(normalized)) {
    return Reason::sni_invalid;
  }
  out.sni_is_ip_literal = colon_literal || is_ipv4_literal(normalized);
  out.sni = std::move(normalized);
  return Reason::none;
}

// RFC 6066 3: a list of (name_type, name); this parser accepts exactly one host_name entry,
// since servers disagree on which of several names wins.
Reason parse_server_name(ByteReader extension, ClientHelloResult& out) {
  auto list = extension.prefixed(2);
  if (!list || !extension.empty() || list->empty()) {
    return Reason::sni_malformed;
  }
  uint8_t name_type = 0;
  std::span<const uint8_t> host_name;
  size_t entries = 0;
  while (!list->empty()) {
    const auto type = list->u8();
    const auto name = type ? list->prefixed(2) : std::nullopt;
    if (!name) {
      return Reason::sni_malformed;
    }
    name_type = *type;
    host_name = name->rest();
    ++entries;
  }
  if (entries > 1) {
    return Reason::sni_ambiguous;
  }
  if (name_type != kNameTypeHostName) {
    return Reason::sni_malformed;
  }
  return set_host_name(host_name, out);
}

// ---- other extensions --------------------------------------------------------------------

Reason parse_alpn(ByteReader extension, ClientHelloResult& out) {
  const auto list = extension.prefixed(2);
  if (!list || !extension.empty() || list->empty()) {
    return Reason::alpn_malformed;
  }
  // Validate and count first, so the names are stored with a single allocation.
  size_t count = 0;
  for (ByteReader names = *list; !names.empty(); ++count) {
    const auto name = names.prefixed(1);
    if (!name || name->empty()) {
      return Reason::alpn_malformed;
    }
  }
  out.alpn.reserve(count);
  for (ByteReader names = *list; !names.empty();) {
    const auto name = names.prefixed(1);
    if (name) {
      const auto bytes = name->rest();
      out.alpn.emplace_back(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
  }
  return Reason::none;
}

Reason parse_extension(uint16_t type, ByteReader data, ClientHelloResult& out) {
  switch (type) {
    case kExtensionServerName:
      return parse_server_name(data, out);
    case kExtensionAlpn:
      return parse_alpn(data, out);
    case kExtensionEncryptedClientHello:
      out.has_ech = true;
      return Reason::none;
    default:
      return Reason::none;
  }
}

// Extension types seen so far. A real client sends about twenty, so a list beats a hash set;
// a 64-bit filter in front of it skips the scan for nearly every type not yet seen.
class ExtensionTypes {
 public:
  [[nodiscard]] bool contains(uint16_t type) const {
    const auto end = types_.begin() + count_;
    return (filter_ & filter_bit(type)) != 0 && std::find(types_.begin(), end, type) != end;
  }
  [[nodiscard]] bool full() const { return count_ == types_.size(); }
  void add(uint16_t type) {
    filter_ |= filter_bit(type);
    types_[count_++] = type;
  }

 private:
  // Fibonacci hashing: the top 6 bits of the type times 2^16 / golden ratio.
  static constexpr uint64_t filter_bit(uint16_t type) {
    return uint64_t{1} << (static_cast<uint16_t>(type * 40503u) >> 10);
  }

  std::array<uint16_t, kMaxClientHelloExtensions> types_{};
  size_t count_ = 0;
  uint64_t filter_ = 0;
};

Reason parse_extensions(ByteReader extensions, ClientHelloResult& out) {
  ExtensionTypes seen;
  while (!extensions.empty()) {
    const auto type = extensions.u16();
    const auto data = type ? extensions.prefixed(2) : std::nullopt;
    if (!data) {
      return Reason::extensions_length;
    }
    if (seen.contains(*type)) {
      return *type == kExtensionServerName ? Reason::sni_ambiguous : Reason::extension_duplicate;
    }
    if (seen.full()) {
      return Reason::too_many_extensions;
    }
    seen.add(*type);
    if (const Reason reason = parse_extension(*type, *data, out); reason != Reason::none) {
      return reason;
    }
  }
  return Reason::none;
}

// ---- ClientHello body --------------------------------------------------------------------

// RFC 8446 4.1.2 (and RFC 5246 7.4.1.2 before it): version, random, session id, cipher
// suites, compression methods, then an optional extension block that must fill the rest.
Reason parse_body(ByteReader body, ClientHelloResult& out) {
  const auto version = body.u16();
  if (!version) {
    return Reason::field_overrun;
  }
  if (!is_tls_version(*version)) {
    return Reason::client_version;
  }
  out.legacy_version = *version;
  const auto session_id = body.skip(kRandomLength) ? body.prefixed(1) : std::nullopt;
  if (!session_id) {
    return Reason::field_overrun;
  }
  if (session_id->remaining() > kMaxSessionIdLength) {
    return Reason::session_id_too_long;
  }
  const auto cipher_suites = body.prefixed(2);
  if (!cipher_suites) {
    return Reason::field_overrun;
  }
  if (cipher_suites->empty() || cipher_suites->remaining() % 2 != 0) {
    return Reason::cipher_suites_invalid;
  }
  const auto compression_methods = body.prefixed(1);
  if (!compression_methods) {
    return Reason::field_overrun;
  }
  if (compression_methods->empty()) {
    return Reason::compression_methods_invalid;
  }
  if (body.empty()) {
    return Reason::none;  // SSL 3.0 era hellos have no extension block at all
  }
  const auto extensions = body.prefixed(2);
  if (!extensions || !body.empty()) {
    return Reason::extensions_length;
  }
  return parse_extensions(*extensions, out);
}

// ---- record layer ------------------------------------------------------------------------

// Where the ClientHello lies in the record layer, established without copying anything.
struct RecordWalk {
  ParseStatus status = ParseStatus::need_more;
  Reason reason = Reason::none;
  uint16_t record_version = 0;
  size_t records = 0;         // records carrying the ClientHello
  size_t message_length = 0;  // handshake header plus body
  size_t stream_length = 0;   // through the end of the last of those records
};

RecordWalk walk_failed(Reason reason) {
  RecordWalk walk;
  walk.status = ParseStatus::malformed;
  walk.reason = reason;
  return walk;
}

Reason check_handshake_header(uint8_t type, uint32_t length, const ClientHelloLimits& limits) {
  if (type != kHandshakeTypeClientHello) {
    return Reason::not_client_hello;
  }
  return length > limits.max_length ? Reason::too_large : Reason::none;
}

Reason check_record_header(uint8_t type, uint16_t version, uint16_t length) {
  if (type != kContentTypeHandshake) {
    return Reason::record_not_handshake;
  }
  if (!is_tls_version(version)) {
    return Reason::record_version;
  }
  if (length == 0) {
    return Reason::record_empty;
  }
  return length > kMaxRecordLength ? Reason::record_too_long : Reason::none;
}

// Collects the 4-byte handshake header, which 1-byte records may spread over four records.
class HandshakeHeader {
 public:
  // Takes what it still lacks from the front of `fragment`.
  void take(std::span<const uint8_t> fragment) {
    const size_t count = std::min(fragment.size(), bytes_.size() - length_);
    std::copy_n(fragment.begin(), count, bytes_.begin() + length_);
    length_ += count;
  }
  [[nodiscard]] bool complete() const { return length_ == bytes_.size(); }
  [[nodiscard]] uint8_t type() const { return bytes_[0]; }
  [[nodiscard]] uint32_t body_length() const {
    return (uint32_t{bytes_[1]} << 16) | (uint32_t{bytes_[2]} << 8) | bytes_[3];
  }

 private:
  std::array<uint8_t, kHandshakeHeaderLength> bytes_{};
  size_t length_ = 0;
};

// Walks the records from the start of the stream until the ClientHello is complete, handing
// each record's available fragment bytes to `sink`. A fragment can only hold ClientHello
// bytes: the record that completes the message must end with it.
template <typename FragmentSink>
RecordWalk walk_records(std::span<const uint8_t> stream, const ClientHelloLimits& limits, FragmentSink&& sink) {
  if (stream.empty()) {
    return {};
  }
  if ((stream[0] & kSslv2HeaderBit) != 0) {
    return walk_failed(Reason::sslv2);
  }
  if (stream[0] != kContentTypeHandshake) {
    return walk_failed(Reason::record_not_handshake);
  }
  ByteReader reader(stream);
  RecordWalk walk;
  HandshakeHeader header;
  size_t collected = 0;
  while (true) {
    const auto record_header = reader.bytes(kRecordHeaderLength);
    if (!record_header) {
      return walk;
    }
    ByteReader fields(*record_header);
    const uint8_t type = *fields.u8();
    const uint16_t version = *fields.u16();
    const uint16_t length = *fields.u16();
    if (const Reason reason = check_record_header(type, version, length); reason != Reason::none) {
      return walk_failed(reason);
    }
    if (walk.records++ == 0) {
      walk.record_version = version;
    }
    const auto fragment = reader.rest().first(std::min<size_t>(length, reader.remaining()));
    const bool header_was_complete = header.complete();
    header.take(fragment);
    if (!header_was_complete && header.complete()) {
      const Reason reason = check_handshake_header(header.type(), header.body_length(), limits);
      if (reason != Reason::none) {
        return walk_failed(reason);
      }
      walk.message_length = kHandshakeHeaderLength + header.body_length();
    }
    sink(fragment);
    collected += length;
    if (header.complete() && collected > walk.message_length) {
      return walk_failed(Reason::record_trailing_data);
    }
    if (!reader.skip(length)) {
      return walk;
    }
    if (header.complete() && collected == walk.message_length) {
      walk.status = ParseStatus::found;
      walk.stream_length = reader.consumed();
      return walk;
    }
  }
}

}  // namespace

std::string_view to_string(ClientHelloReason reason) noexcept {
  switch (reason) {
    case Reason::none:
      return "none";
    case Reason::sslv2:
      return "sslv2";
    case Reason::record_not_handshake:
      return "record-not-handshake";
    case Reason::record_version:
      return "record-version";
    case Reason::record_empty:
      return "record-empty";
    case Reason::record_too_long:
      return "record-too-long";
    case Reason::record_trailing_data:
      return "record-trailing-data";
    case Reason::not_client_hello:
      return "not-client-hello";
    case Reason::too_large:
      return "too-large";
    case Reason::client_version:
      return "client-version";
    case Reason::field_overrun:
      return "field-overrun";
    case Reason::session_id_too_long:
      return "session-id-too-long";
    case Reason::cipher_suites_invalid:
      return "cipher-suites-invalid";
    case Reason::compression_methods_invalid:
      return "compression-methods-invalid";
    case Reason::extensions_length:
      return "extensions-length";
    case Reason::too_many_extensions:
      return "too-many-extensions";
    case Reason::extension_duplicate:
      return "extension-duplicate";
    case Reason::sni_malformed:
      return "sni-malformed";
    case Reason::sni_ambiguous:
      return "sni-ambiguous";
    case Reason::sni_invalid:
      return "sni-invalid";
    case Reason::alpn_malformed:
      return "alpn-malformed";
  }
  return "unknown";
}

ClientHelloResult parse_client_hello_message(std::span<const uint8_t> message, const ClientHelloLimits& limits) {
  ByteReader reader(message);
  const auto type = reader.u8();
  const auto length = type ? reader.u24() : std::nullopt;
  if (type && *type != kHandshakeTypeClientHello) {
    return make_result(ParseStatus::malformed, Reason::not_client_hello);
  }
  if (!length) {
    return make_result(ParseStatus::need_more);
  }
  if (const Reason reason = check_handshake_header(*type, *length, limits); reason != Reason::none) {
    return make_result(ParseStatus::malformed, reason);
  }
  const auto body = reader.bytes(*length);
  if (!body) {
    return make_result(ParseStatus::need_more);
  }
  ClientHelloResult result = make_result(ParseStatus::found);
  if (const Reason reason = parse_body(ByteReader(*body), result); reason != Reason::none) {
    return make_result(ParseStatus::malformed, reason);
  }
  result.handshake_length = static_cast<uint32_t>(reader.consumed());
  return result;
}

ClientHelloResult parse_client_hello(std::span<const uint8_t> stream, const ClientHelloLimits& limits) {
  const RecordWalk walk = walk_records(stream, limits, [](std::span<const uint8_t>) {});
  if (walk.status != ParseStatus::found) {
    return make_result(walk.status, walk.reason);
  }
  ClientHelloResult result;
  if (walk.records == 1) {
    result = parse_client_hello_message(stream.subspan(kRecordHeaderLength, walk.message_length), limits);
  } else {
    // The only copy: a message split over records is joined once it is known to be whole.
    std::vector<uint8_t> joined;
    joined.reserve(walk.message_length);
    (void)walk_records(stream, limits, [&joined](std::span<const uint8_t> fragment) {
      joined.insert(joined.end(), fragment.begin(), fragment.end());
    });
    result = parse_client_hello_message(joined, limits);
  }
  if (result.status == ParseStatus::found) {
    result.record_version = walk.record_version;
    result.stream_length = static_cast<uint32_t>(walk.stream_length);
  }
  return result;
}

}  // namespace portcullis::parsers
