#include "parsers/quic_initial.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "parsers/byte_reader.h"

namespace portcullis::parsers {
namespace {

constexpr size_t kMaxConnectionIdLength = 20;  // RFC 9000 section 17.2, also draft-29 and v2
constexpr size_t kMaxPacketNumberLength = 4;
constexpr size_t kSampleLength = 16;  // RFC 9001 section 5.4.2, AES-based header protection
constexpr size_t kTagLength = 16;
constexpr size_t kSha256Length = 32;

constexpr uint8_t kLongHeaderBit = 0x80;
constexpr uint8_t kReservedBits = 0x0c;
constexpr uint8_t kPacketNumberLengthBits = 0x03;
constexpr uint8_t kLongHeaderProtectedBits = 0x0f;

enum class LongPacketType : uint8_t { initial, zero_rtt, handshake, retry };

struct VersionParams {
  uint32_t version;
  std::array<uint8_t, 20> salt;
  std::string_view key_label;
  std::string_view iv_label;
  std::string_view hp_label;
  std::array<LongPacketType, 4> types;  // indexed by the header's two packet type bits
};

constexpr std::array<LongPacketType, 4> kV1Types = {LongPacketType::initial, LongPacketType::zero_rtt,
                                                    LongPacketType::handshake, LongPacketType::retry};

// Salts: RFC 9001 section 5.2, RFC 9369 section 3.3.1, draft-ietf-quic-v2-08 section 3.3.1 (its salt changed
// when RFC 9369 took its number), draft-ietf-quic-tls-29 section 5.2.
// RFC 9369 section 3.2 also renumbers the long-header packet types.
constexpr std::array<LongPacketType, 4> kV2Types = {LongPacketType::retry, LongPacketType::initial,
                                                    LongPacketType::zero_rtt, LongPacketType::handshake};
constexpr std::array<uint8_t, 20> kV2Salt = {0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
                                             0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9};

constexpr std::array<VersionParams, 4> kVersions = {{
    {kQuicVersion1,
     {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
      0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a},
     "quic key",
     "quic iv",
     "quic hp",
     kV1Types},
    {kQuicVersion2, kV2Salt, "quicv2 key", "quicv2 iv", "quicv2 hp", kV2Types},
    {kQuicVersion2Draft,
     {0xa7, 0x07, 0xc2, 0x03, 0xa5, 0x9b, 0x47, 0x18, 0x4a, 0x1d,
      0x62, 0xca, 0x57, 0x04, 0x06, 0xea, 0x7a, 0xe3, 0xe5, 0xd3},
     "quicv2 key",
     "quicv2 iv",
     "quicv2 hp",
     kV2Types},
    {kQuicDraft29,
     {0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97,
      0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99},
     "quic key",
     "quic iv",
     "quic hp",
     kV1Types},
}};

[[nodiscard]] const VersionParams* find_version(uint32_t version) noexcept {
  const auto found = std::find_if(kVersions.begin(), kVersions.end(),
                                  [version](const VersionParams& params) { return params.version == version; });
  return found == kVersions.end() ? nullptr : &*found;
}

[[nodiscard]] bool same_bytes(std::span<const uint8_t> a, std::span<const uint8_t> b) noexcept {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

struct MacFree {
  void operator()(EVP_MAC* mac) const noexcept { EVP_MAC_free(mac); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
};
struct CipherFree {
  void operator()(EVP_CIPHER* cipher) const noexcept { EVP_CIPHER_free(cipher); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const noexcept { EVP_CIPHER_CTX_free(ctx); }
};
using Mac = std::unique_ptr<EVP_MAC, MacFree>;
using MacCtx = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;
using Cipher = std::unique_ptr<EVP_CIPHER, CipherFree>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

template <typename T>
[[nodiscard]] T require(T object, const char* what) {
  if (!object) {
    throw std::runtime_error(std::string("QuicInitialDecryptor: OpenSSL cannot provide ") + what);
  }
  return object;
}

[[nodiscard]] MacCtx new_hmac_sha256(EVP_MAC* hmac) {
  MacCtx ctx = require(MacCtx(EVP_MAC_CTX_new(hmac)), "an HMAC context");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(ctx.get(), params) != 1) {
    throw std::runtime_error("QuicInitialDecryptor: OpenSSL cannot provide HMAC-SHA256");
  }
  return ctx;
}

// HMAC-SHA256 of `data`. A null `key` reuses the context's last key, which skips rehashing it:
// HMAC through EVP_MAC costs more in setup than in hashing these few bytes.
[[nodiscard]] bool hmac(EVP_MAC_CTX* ctx, std::span<const uint8_t> key, std::span<const uint8_t> data,
                        std::array<uint8_t, kSha256Length>& out) noexcept {
  size_t length = 0;
  return EVP_MAC_init(ctx, key.empty() ? nullptr : key.data(), key.size(), nullptr) == 1 &&
         EVP_MAC_update(ctx, data.data(), data.size()) == 1 &&
         EVP_MAC_final(ctx, out.data(), &length, out.size()) == 1 && length == out.size();
}

// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context, for outputs of at most one
// SHA-256 block, which is all Initial keys need: T(1) = HMAC(secret, HkdfLabel || 0x01).
[[nodiscard]] bool expand_label(EVP_MAC_CTX* ctx, std::span<const uint8_t> secret, std::string_view label,
                                std::span<uint8_t> out) noexcept {
  constexpr std::string_view kPrefix = "tls13 ";
  std::array<uint8_t, 32> info{};
  size_t length = 0;
  info[length++] = 0;
  info[length++] = static_cast<uint8_t>(out.size());
  info[length++] = static_cast<uint8_t>(kPrefix.size() + label.size());
  length = std::copy(kPrefix.begin(), kPrefix.end(), info.begin() + length) - info.begin();
  length = std::copy(label.begin(), label.end(), info.begin() + length) - info.begin();
  info[length++] = 0;  // context length
  info[length++] = 1;  // HKDF-Expand block counter
  std::array<uint8_t, kSha256Length> block{};
  if (!hmac(ctx, secret, std::span<const uint8_t>(info).first(length), block)) {
    return false;
  }
  std::copy_n(block.begin(), out.size(), out.begin());
  return true;
}

}  // namespace

QuicVersionKind classify_quic_version(uint32_t version) noexcept {
  if (version == 0) {
    return QuicVersionKind::negotiation;
  }
  if ((version & 0x0f0f0f0fU) == 0x0a0a0a0aU) {
    return QuicVersionKind::reserved;
  }
  return find_version(version) ? QuicVersionKind::supported : QuicVersionKind::unknown;
}

// Derives client Initial keys and keeps them, with OpenSSL contexts already keyed, for the last
// few (version, DCID) pairs; the oldest entry makes room.
class QuicInitialKeyCache {
 public:
  struct Entry {
    uint32_t version = 0;
    std::array<uint8_t, kMaxConnectionIdLength> dcid{};
    size_t dcid_length = 0;
    bool valid = false;
    QuicInitialKeys keys;
    CipherCtx aead;               // keyed; only the nonce changes per packet
    CipherCtx header_protection;  // AES-128-ECB, keyed
  };

  explicit QuicInitialKeyCache(size_t size)
      : hmac_(require(Mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr)), "HMAC")),
        gcm_(require(Cipher(EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr)), "AES-128-GCM")),
        ecb_(require(Cipher(EVP_CIPHER_fetch(nullptr, "AES-128-ECB", nullptr)), "AES-128-ECB")),
        expand_(new_hmac_sha256(hmac_.get())),
        entries_(std::max<size_t>(size, 1)),
        size_(size) {
    for (size_t i = 0; i < kVersions.size(); ++i) {
      extract_[i] = new_hmac_sha256(hmac_.get());
      if (EVP_MAC_init(extract_[i].get(), kVersions[i].salt.data(), kVersions[i].salt.size(), nullptr) != 1) {
        throw std::runtime_error("QuicInitialDecryptor: OpenSSL cannot key HMAC-SHA256");
      }
    }
    // Bound to their ciphers now, so that keying them later skips the cipher setup.
    for (Entry& entry : entries_) {
      entry.aead = require(CipherCtx(EVP_CIPHER_CTX_new()), "a cipher context");
      entry.header_protection = require(CipherCtx(EVP_CIPHER_CTX_new()), "a cipher context");
      if (EVP_DecryptInit_ex2(entry.aead.get(), gcm_.get(), nullptr, nullptr, nullptr) != 1 ||
          EVP_EncryptInit_ex2(entry.header_protection.get(), ecb_.get(), nullptr, nullptr, nullptr) != 1 ||
          EVP_CIPHER_CTX_set_padding(entry.header_protection.get(), 0) != 1) {
        throw std::runtime_error("QuicInitialDecryptor: OpenSSL cannot set up AES-128");
      }
    }
  }

  // `dcid` is at most kMaxConnectionIdLength bytes. nullptr only when OpenSSL fails, which it
  // does on memory exhaustion alone.
  [[nodiscard]] Entry* find_or_derive(const VersionParams& params, std::span<const uint8_t> dcid) {
    for (size_t i = 0; i < size_; ++i) {
      Entry& entry = entries_[i];
      if (entry.valid && entry.version == params.version &&
          same_bytes(std::span(entry.dcid).first(entry.dcid_length), dcid)) {
        return &entry;
      }
    }
    Entry& entry = entries_[next_victim_];
    next_victim_ = (next_victim_ + 1) % entries_.size();
    ++derivations_;
    entry.valid = derive(params, dcid, entry.keys) && key_contexts(entry);
    if (!entry.valid) {
      return nullptr;
    }
    entry.version = params.version;
    entry.dcid_length = dcid.size();
    std::copy(dcid.begin(), dcid.end(), entry.dcid.begin());
    return &entry;
  }

  [[nodiscard]] uint64_t derivations() const noexcept { return derivations_; }

 private:
  // RFC 9001 section 5.2: initial_secret = HKDF-Extract(salt, dcid), then "client in", then the
  // version's key, iv and hp labels.
  [[nodiscard]] bool derive(const VersionParams& params, std::span<const uint8_t> dcid, QuicInitialKeys& keys) {
    EVP_MAC_CTX* extract = extract_[static_cast<size_t>(&params - kVersions.data())].get();
    std::array<uint8_t, kSha256Length> initial_secret{};
    std::array<uint8_t, kSha256Length> client_secret{};
    // The last two expansions reuse client_secret, the key the one before them set.
    return hmac(extract, {}, dcid, initial_secret) &&
           expand_label(expand_.get(), initial_secret, "client in", client_secret) &&
           expand_label(expand_.get(), client_secret, params.key_label, keys.key) &&
           expand_label(expand_.get(), {}, params.iv_label, keys.iv) &&
           expand_label(expand_.get(), {}, params.hp_label, keys.hp);
  }

  [[nodiscard]] static bool key_contexts(Entry& entry) noexcept {
    return EVP_DecryptInit_ex2(entry.aead.get(), nullptr, entry.keys.key.data(), nullptr, nullptr) == 1 &&
           EVP_EncryptInit_ex2(entry.header_protection.get(), nullptr, entry.keys.hp.data(), nullptr, nullptr) == 1;
  }

  Mac hmac_;
  Cipher gcm_;
  Cipher ecb_;
  std::array<MacCtx, kVersions.size()> extract_;  // each keyed with its version's salt
  MacCtx expand_;
  std::vector<Entry> entries_;
  size_t size_;
  size_t next_victim_ = 0;
  uint64_t derivations_ = 0;
};

namespace {

// One long-header packet of a supported version, located but not yet opened.
struct Packet {
  const VersionParams* params = nullptr;
  LongPacketType type = LongPacketType::initial;
  std::span<const uint8_t> dcid;
  std::span<const uint8_t> bytes;  // first byte through the end of the payload
  size_t packet_number_offset = 0;
};

struct Opened {
  bool ok = false;
  uint8_t first_byte = 0;  // header protection removed
  size_t plaintext_length = 0;
};

// RFC 9001 section 5.4: the mask comes from a sample taken as if the packet number were four
// bytes long, and reveals its real length. The packet must hold that sample.
[[nodiscard]] Opened open_packet(const Packet& packet, QuicInitialKeyCache::Entry& keys, uint8_t* plaintext) noexcept {
  const size_t pn_offset = packet.packet_number_offset;
  std::array<uint8_t, kSampleLength> mask{};
  int length = 0;
  if (EVP_EncryptUpdate(keys.header_protection.get(), mask.data(), &length,
                        packet.bytes.data() + pn_offset + kMaxPacketNumberLength, kSampleLength) != 1) {
    return {};
  }
  const auto first_byte = static_cast<uint8_t>(packet.bytes[0] ^ (mask[0] & kLongHeaderProtectedBits));
  const size_t pn_length = (first_byte & kPacketNumberLengthBits) + 1U;
  std::array<uint8_t, kMaxPacketNumberLength> pn_bytes{};
  uint64_t packet_number = 0;
  for (size_t i = 0; i < pn_length; ++i) {
    pn_bytes[i] = static_cast<uint8_t>(packet.bytes[pn_offset + i] ^ mask[1 + i]);
    packet_number = (packet_number << 8) | pn_bytes[i];
  }
  // The truncated number serves as the full one: a client numbers its Initials from 0, and a
  // middlebox has no acknowledged number to decode against (RFC 9000 appendix A.3).
  std::array<uint8_t, 12> nonce = keys.keys.iv;
  for (size_t i = 0; i < sizeof(packet_number); ++i) {
    nonce[nonce.size() - 1 - i] ^= static_cast<uint8_t>(packet_number >> (8 * i));
  }
  const size_t payload_offset = pn_offset + pn_length;
  const size_t ciphertext_length = packet.bytes.size() - payload_offset - kTagLength;
  std::array<uint8_t, kTagLength> tag{};
  std::copy_n(packet.bytes.end() - kTagLength, kTagLength, tag.begin());
  EVP_CIPHER_CTX* aead = keys.aead.get();
  // The associated data is the unprotected header, fed in pieces so the token is not copied.
  const bool ok =
      EVP_DecryptInit_ex2(aead, nullptr, nullptr, nonce.data(), nullptr) == 1 &&
      EVP_DecryptUpdate(aead, nullptr, &length, &first_byte, 1) == 1 &&
      EVP_DecryptUpdate(aead, nullptr, &length, packet.bytes.data() + 1, static_cast<int>(pn_offset - 1)) == 1 &&
      EVP_DecryptUpdate(aead, nullptr, &length, pn_bytes.data(), static_cast<int>(pn_length)) == 1 &&
      EVP_DecryptUpdate(aead, plaintext, &length, packet.bytes.data() + payload_offset,
                        static_cast<int>(ciphertext_length)) == 1 &&
      EVP_CIPHER_CTX_ctrl(aead, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagLength), tag.data()) == 1 &&
      EVP_DecryptFinal_ex(aead, plaintext + length, &length) == 1;
  return {ok, first_byte, ciphertext_length};
}

// The version-independent long header (RFC 8999 section 5.1).
struct InvariantHeader {
  uint8_t first_byte = 0;
  uint32_t version = 0;
  std::span<const uint8_t> dcid;
  std::span<const uint8_t> scid;
};

[[nodiscard]] std::optional<InvariantHeader> read_invariant_header(ByteReader& reader) noexcept {
  const auto first_byte = reader.u8();
  const auto version = first_byte ? reader.u32() : std::nullopt;
  const auto dcid = version ? reader.prefixed(1) : std::nullopt;
  const auto scid = dcid ? reader.prefixed(1) : std::nullopt;
  if (!scid) {
    return std::nullopt;
  }
  return InvariantHeader{*first_byte, *version, dcid->rest(), scid->rest()};
}

// Reads the rest of a supported version's long header: an Initial's token, then the Length that
// bounds the packet. A Retry has no Length and fills the datagram.
[[nodiscard]] QuicReason read_packet_bounds(ByteReader& reader, std::span<const uint8_t> datagram_rest,
                                            Packet& packet) noexcept {
  if (packet.type == LongPacketType::retry) {
    packet.bytes = datagram_rest;
    return QuicReason::none;
  }
  if (packet.type == LongPacketType::initial) {
    const auto token_length = reader.varint();
    if (!token_length || *token_length > reader.remaining() || !reader.skip(static_cast<size_t>(*token_length))) {
      return QuicReason::header_truncated;
    }
  }
  const auto length = reader.varint();
  if (!length) {
    return QuicReason::header_truncated;
  }
  if (*length > reader.remaining()) {
    return QuicReason::packet_length_overrun;
  }
  packet.packet_number_offset = reader.consumed();
  packet.bytes = datagram_rest.first(reader.consumed() + static_cast<size_t>(*length));
  return QuicReason::none;
}

// The walk over one datagram's coalesced packets, filling `result`.
class DatagramWalk {
 public:
  DatagramWalk(QuicInitialKeyCache& keys, std::span<uint8_t> plaintext, std::vector<CryptoFrame>& frames,
               std::span<const uint8_t> key_dcid, QuicDatagram& result) noexcept
      : keys_(keys), plaintext_(plaintext), frames_(frames), key_dcid_(key_dcid), result_(result) {
    // A connection ID no supported version allows cannot have keyed anything.
    if (key_dcid_.size() > kMaxConnectionIdLength) {
      key_dcid_ = {};
    }
  }

  // Bytes the packet at the start of `rest` takes; 0 when nothing after it can be read.
  [[nodiscard]] size_t read_packet(std::span<const uint8_t> rest) {
    ByteReader reader(rest);
    const auto header = read_invariant_header(reader);
    if (!header) {
      fail(QuicReason::header_truncated);
      return 0;
    }
    const bool first_packet = result_.version_kind == QuicVersionKind::none;
    if (first_packet) {
      result_.version = header->version;
      result_.version_kind = classify_quic_version(header->version);
      result_.dcid = header->dcid;
      result_.scid = header->scid;
    }
    const VersionParams* params = find_version(header->version);
    if (!params) {
      return 0;
    }
    if (header->dcid.size() > kMaxConnectionIdLength || header->scid.size() > kMaxConnectionIdLength) {
      fail(QuicReason::connection_id_too_long);
      return 0;
    }
    Packet packet{params, params->types[(header->first_byte >> 4) & 0x03], header->dcid, {}, 0};
    if (const QuicReason error = read_packet_bounds(reader, rest, packet); error != QuicReason::none) {
      fail(error);
      return 0;
    }
    if (packet.type == LongPacketType::retry) {
      result_.retry = first_packet;
      return 0;
    }
    // RFC 9000 section 12.2: a coalesced packet for another connection ID is ignored.
    if (packet.type == LongPacketType::initial && same_bytes(packet.dcid, result_.dcid)) {
      read_initial(packet);
    }
    return packet.bytes.size();
  }

 private:
  void read_initial(const Packet& packet) {
    if (packet.bytes.size() < packet.packet_number_offset + kMaxPacketNumberLength + kSampleLength) {
      fail(QuicReason::packet_too_short);
      return;
    }
    const std::array<std::span<const uint8_t>, 2> candidates = {key_dcid_, packet.dcid};
    const bool try_key_dcid = !key_dcid_.empty() && !same_bytes(key_dcid_, packet.dcid);
    for (size_t i = try_key_dcid ? 0 : 1; i < candidates.size(); ++i) {
      QuicInitialKeyCache::Entry* keys = keys_.find_or_derive(*packet.params, candidates[i]);
      if (!keys) {
        continue;
      }
      const Opened opened = open_packet(packet, *keys, plaintext_.data() + plaintext_used_);
      if (opened.ok) {
        take_payload(opened, candidates[i]);
        return;
      }
    }
    fail(QuicReason::aead_failed);
  }

  void take_payload(const Opened& opened, std::span<const uint8_t> key_dcid) {
    if ((opened.first_byte & kReservedBits) != 0) {
      fail(QuicReason::reserved_bits_set);
      return;
    }
    const auto payload = plaintext_.subspan(plaintext_used_, opened.plaintext_length);
    plaintext_used_ += opened.plaintext_length;
    if (const FrameWalkResult walk = walk_initial_frames(payload, frames_); walk.status != ParseStatus::found) {
      fail(walk.reason);
      return;
    }
    result_.key_dcid = key_dcid;
    ++result_.initial_packets;
    result_.status = ParseStatus::found;
  }

  void fail(QuicReason reason) noexcept {
    result_.status = ParseStatus::malformed;
    result_.reason = reason;
  }

  QuicInitialKeyCache& keys_;
  std::span<uint8_t> plaintext_;
  size_t plaintext_used_ = 0;
  std::vector<CryptoFrame>& frames_;
  std::span<const uint8_t> key_dcid_;
  QuicDatagram& result_;
};

}  // namespace

QuicInitialDecryptor::QuicInitialDecryptor(size_t cached_keys)
    : keys_(std::make_unique<QuicInitialKeyCache>(cached_keys)) {}

QuicInitialDecryptor::~QuicInitialDecryptor() = default;

uint64_t QuicInitialDecryptor::key_derivations() const noexcept {
  return keys_->derivations();
}

std::optional<QuicInitialKeys> QuicInitialDecryptor::client_initial_keys(uint32_t version,
                                                                         std::span<const uint8_t> dcid) {
  const VersionParams* params = find_version(version);
  if (!params || dcid.size() > kMaxConnectionIdLength) {
    return std::nullopt;
  }
  const QuicInitialKeyCache::Entry* entry = keys_->find_or_derive(*params, dcid);
  return entry ? std::optional(entry->keys) : std::nullopt;
}

QuicDatagram QuicInitialDecryptor::decrypt(std::span<const uint8_t> datagram, std::span<const uint8_t> key_dcid) {
  QuicDatagram result;
  frames_.clear();
  // Plaintext is never longer than the datagram holding it; the buffer grows to the largest seen.
  if (plaintext_.size() < datagram.size()) {
    plaintext_.resize(datagram.size());
  }
  DatagramWalk walk(*keys_, plaintext_, frames_, key_dcid, result);
  std::span<const uint8_t> rest = datagram;
  // A short header (1-RTT) runs to the datagram's end, and so do zero bytes padding a datagram
  // after its last packet: either ends the walk.
  while (!rest.empty() && (rest[0] & kLongHeaderBit) != 0 && result.status != ParseStatus::malformed) {
    const size_t length = walk.read_packet(rest);
    if (length == 0) {
      break;
    }
    rest = rest.subspan(length);
  }
  result.crypto = frames_;
  return result;
}

QuicClientHelloReader::QuicClientHelloReader(QuicInitialDecryptor& decryptor, size_t capacity)
    : decryptor_(decryptor), assembler_(capacity) {
  // A ClientHello the assembler cannot hold whole is refused by its length at once.
  limits_.max_length = static_cast<uint32_t>(assembler_.capacity() - 4);
}

const QuicClientHelloResult& QuicClientHelloReader::add_datagram(std::span<const uint8_t> datagram) {
  if (result_.status == ParseStatus::need_more) {
    take_datagram(decryptor_.decrypt(datagram, std::span(key_dcid_).first(key_dcid_length_)));
  }
  return result_;
}

void QuicClientHelloReader::take_datagram(const QuicDatagram& datagram) {
  if (result_.version_kind == QuicVersionKind::none) {
    result_.version = datagram.version;
    result_.version_kind = datagram.version_kind;
  }
  if (datagram.status == ParseStatus::malformed) {
    fail(datagram.reason);
    return;
  }
  if (datagram.status != ParseStatus::found) {
    return;
  }
  key_dcid_length_ = datagram.key_dcid.size();
  std::copy(datagram.key_dcid.begin(), datagram.key_dcid.end(), key_dcid_.begin());
  for (const CryptoFrame& frame : datagram.crypto) {
    switch (assembler_.add(frame.offset, frame.data)) {
      case CryptoStreamAssembler::AddResult::stored:
        break;
      case CryptoStreamAssembler::AddResult::conflict:
        fail(QuicReason::crypto_conflict);
        return;
      case CryptoStreamAssembler::AddResult::too_fragmented:
        fail(QuicReason::crypto_too_fragmented);
        return;
    }
  }
  const std::span<const uint8_t> prefix = assembler_.contiguous_prefix();
  if (prefix.empty()) {
    return;
  }
  ClientHelloResult client_hello = parse_client_hello_message(prefix, limits_);
  if (client_hello.status == ParseStatus::need_more) {
    return;
  }
  result_.status = client_hello.status;
  result_.reason = client_hello.status == ParseStatus::malformed ? QuicReason::client_hello_invalid : QuicReason::none;
  result_.client_hello = std::move(client_hello);
}

void QuicClientHelloReader::fail(QuicReason reason) {
  result_.status = ParseStatus::malformed;
  result_.reason = reason;
}

}  // namespace portcullis::parsers
