// QUIC client Initial packets: walks the coalesced packets of one UDP datagram (RFC 9000 section
// 17.2), derives the client Initial keys from the Destination Connection ID, removes header
// protection and opens the AEAD (RFC 9001 section 5; RFC 9369 for QUIC v2; draft-29), and hands
// out the CRYPTO frames. QuicClientHelloReader drives it over a flow's datagrams up to the SNI.
//
// Initial packets are protected with keys anyone can derive from the packet itself; decrypting
// them reveals the ClientHello, not a secret.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "parsers/parse_result.h"
#include "parsers/quic_crypto_stream.h"
#include "parsers/tls_client_hello.h"

namespace portcullis::parsers {

inline constexpr uint32_t kQuicVersion1 = 0x00000001;
inline constexpr uint32_t kQuicVersion2 = 0x6b3343cf;
inline constexpr uint32_t kQuicDraft29 = 0xff00001d;
// QUIC v2 before RFC 9369 gave it its number (draft-ietf-quic-v2-05 to -08): the same labels and packet types,
// its own salt. ngtcp2 up to 0.12 (Debian 12's) speaks only this v2.
inline constexpr uint32_t kQuicVersion2Draft = 0x709a50c4;

enum class QuicVersionKind : uint8_t {
  none,         // no long-header packet seen
  supported,    // v1, v2 or draft-29: Initials can be opened
  negotiation,  // version 0: a server's Version Negotiation packet
  reserved,     // 0x?a?a?a?a, reserved to exercise version negotiation (RFC 9000 section 15)
  unknown,      // any other version: its Initials cannot be read
};

[[nodiscard]] QuicVersionKind classify_quic_version(uint32_t version) noexcept;

struct QuicInitialKeys {
  std::array<uint8_t, 16> key{};  // AEAD_AES_128_GCM
  std::array<uint8_t, 12> iv{};
  std::array<uint8_t, 16> hp{};  // AES-128 header protection

  bool operator==(const QuicInitialKeys&) const = default;
};

// What one datagram showed. Connection IDs point into the datagram; CRYPTO data points into the
// decryptor and stays valid until its next decrypt() call.
struct QuicDatagram {
  // found: at least one client Initial opened. need_more: nothing to open here (short header,
  // 0-RTT, Handshake, Retry, an unsupported version). malformed: a packet is broken; CRYPTO
  // frames of Initials opened before it are still listed.
  ParseStatus status = ParseStatus::need_more;
  QuicReason reason = QuicReason::none;
  // Of the first long-header packet.
  uint32_t version = 0;
  QuicVersionKind version_kind = QuicVersionKind::none;
  std::span<const uint8_t> dcid;
  std::span<const uint8_t> scid;
  // A server's Retry: the client's next Initials go to `scid`, and their keys derive from it.
  bool retry = false;
  // The connection ID the opened Initials' keys derived from.
  std::span<const uint8_t> key_dcid;
  uint32_t initial_packets = 0;
  std::span<const CryptoFrame> crypto;  // in packet order, then frame order
};

class QuicInitialKeyCache;  // OpenSSL state; defined in quic_initial.cpp

// Opens client Initial packets. Holds its OpenSSL contexts for its whole life and caches the keys
// of the last few connection IDs, since key derivation costs more than opening a packet. One
// instance per thread.
class QuicInitialDecryptor {
 public:
  static constexpr size_t kDefaultCachedKeys = 8;

  // `cached_keys` = 0 derives the keys for every packet. Throws std::runtime_error when OpenSSL
  // lacks an algorithm QUIC Initials need.
  explicit QuicInitialDecryptor(size_t cached_keys = kDefaultCachedKeys);
  ~QuicInitialDecryptor();
  QuicInitialDecryptor(const QuicInitialDecryptor&) = delete;
  QuicInitialDecryptor& operator=(const QuicInitialDecryptor&) = delete;

  // Reads one UDP datagram payload sent by a client. Each Initial is opened with keys from
  // `key_dcid` when given, then from its own DCID: a client keeps deriving Initial keys from
  // the DCID of its first Initial after it has switched to the server's connection ID.
  [[nodiscard]] QuicDatagram decrypt(std::span<const uint8_t> datagram, std::span<const uint8_t> key_dcid = {});

  // The client Initial keys for `dcid`; nullopt for an unsupported version.
  [[nodiscard]] std::optional<QuicInitialKeys> client_initial_keys(uint32_t version, std::span<const uint8_t> dcid);

  [[nodiscard]] uint64_t key_derivations() const noexcept;

 private:
  std::unique_ptr<QuicInitialKeyCache> keys_;
  std::vector<uint8_t> plaintext_;  // every opened payload of the current datagram, back to back
  std::vector<CryptoFrame> frames_;
};

struct QuicClientHelloResult {
  ParseStatus status = ParseStatus::need_more;
  QuicReason reason = QuicReason::none;  // client_hello_invalid: client_hello.reason says why
  // Of the flow's first long-header packet; an unsupported version stays need_more for ever,
  // so the caller decides by this.
  uint32_t version = 0;
  QuicVersionKind version_kind = QuicVersionKind::none;
  ClientHelloResult client_hello;  // the SNI and the rest, once status is found
};

// Follows the client side of one QUIC flow: datagram, Initial, CRYPTO stream, ClientHello. One per
// flow; the decryptor, shared by many flows, must outlive it.
class QuicClientHelloReader {
 public:
  explicit QuicClientHelloReader(QuicInitialDecryptor& decryptor,
                                 size_t capacity = CryptoStreamAssembler::kDefaultCapacity);

  // Feed the datagrams the client sent, in order. Once found or malformed, the result stays.
  const QuicClientHelloResult& add_datagram(std::span<const uint8_t> datagram);

  [[nodiscard]] const QuicClientHelloResult& result() const noexcept { return result_; }

 private:
  void take_datagram(const QuicDatagram& datagram);
  void fail(QuicReason reason);

  QuicInitialDecryptor& decryptor_;
  CryptoStreamAssembler assembler_;
  ClientHelloLimits limits_;
  // Where the flow's Initial keys come from: its first opened Initial's DCID, or a Retry's.
  std::array<uint8_t, 20> key_dcid_{};
  size_t key_dcid_length_ = 0;
  QuicClientHelloResult result_;
};

}  // namespace portcullis::parsers
