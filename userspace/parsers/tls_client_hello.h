// TLS ClientHello parser: finds the server name (SNI) a client asks for, from the first bytes
// of a TCP stream (TLS record layer) or from a bare handshake message (a QUIC CRYPTO stream).
//
// Strict on purpose: a firewall that decides by SNI must see the same single name the server
// will, so anything a server could read differently (several names, duplicate extensions,
// records interleaved with other content) is refused as malformed rather than guessed at.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"

namespace portcullis::parsers {

enum class ClientHelloReason : uint8_t {
  none,
  sslv2,                        // SSLv2-compatible ClientHello (first byte has the high bit set)
  record_not_handshake,         // a record before the ClientHello's end is not content type 22
  record_version,               // record version outside SSL 3.0 .. TLS 1.3
  record_empty,                 // zero-length handshake record (RFC 8446 5.1 forbids them)
  record_too_long,              // record longer than 2^14 bytes
  record_trailing_data,         // the record completing the ClientHello carries more bytes
  not_client_hello,             // the first handshake message is not a ClientHello
  too_large,                    // ClientHello longer than ClientHelloLimits::max_length
  client_version,               // legacy_version outside SSL 3.0 .. TLS 1.3
  field_overrun,                // a length inside the ClientHello runs past its end
  session_id_too_long,          // legacy_session_id longer than 32 bytes
  cipher_suites_invalid,        // cipher suite list empty or of odd length
  compression_methods_invalid,  // compression method list empty
  extensions_length,            // extension block or an extension inconsistent with its length
  too_many_extensions,          // more extensions than kMaxClientHelloExtensions
  extension_duplicate,          // an extension type appears twice
  sni_malformed,                // server_name extension structure broken or not host_name
  sni_ambiguous,                // several server_name extensions or several names in one
  sni_invalid,                  // the host name is empty, too long or has forbidden characters
  alpn_malformed,               // ALPN extension structure broken or an empty protocol name
};

[[nodiscard]] std::string_view to_string(ClientHelloReason reason) noexcept;

// Real clients send about twenty extensions; the cap bounds the duplicate check's work.
inline constexpr size_t kMaxClientHelloExtensions = 128;

struct ClientHelloLimits {
  // Largest accepted ClientHello body (the handshake length field). Post-quantum key shares
  // make real ones about 1.8 KB; anything near 16 KiB is padding or an attack.
  uint32_t max_length = 16 * 1024;
};

struct ClientHelloResult {
  ParseStatus status = ParseStatus::need_more;
  ClientHelloReason reason = ClientHelloReason::none;
  // The fields below are set only when status is found.
  std::optional<std::string> sni;  // lower-case, one trailing dot stripped
  bool sni_is_ip_literal = false;  // dotted IPv4, or a name containing ':' (IPv6, host:port)
  bool has_ech = false;            // encrypted_client_hello (0xfe0d): sni is the outer name
  uint16_t legacy_version = 0;
  uint16_t record_version = 0;  // of the first record; 0 when parsed without the record layer
  std::vector<std::string> alpn;
  uint32_t handshake_length = 0;  // handshake header (4 bytes) plus body
  uint32_t stream_length = 0;     // record-layer bytes up to the end of the ClientHello
};

// `stream` is the start of one direction of a TCP stream: TLS records carrying the ClientHello,
// possibly fragmented across several records.
[[nodiscard]] ClientHelloResult parse_client_hello(std::span<const uint8_t> stream,
                                                   const ClientHelloLimits& limits = {});

// `message` starts with a bare handshake message: type (1), 24-bit length, body. Bytes after
// the message are ignored; handshake_length says where it ended.
[[nodiscard]] ClientHelloResult parse_client_hello_message(std::span<const uint8_t> message,
                                                           const ClientHelloLimits& limits = {});

}  // namespace portcullis::parsers
