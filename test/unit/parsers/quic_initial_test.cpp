#include "parsers/quic_initial.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"
#include "parsers/quic_crypto_stream.h"
#include "parsers/tls_client_hello.h"
#include "support/pcap_flows.h"
#include "support/sni_corpus.h"

namespace portcullis::parsers {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes from_hex(std::string_view hex) {
  Bytes bytes;
  int high = -1;
  for (const char c : hex) {
    if (std::isxdigit(static_cast<unsigned char>(c)) == 0) {
      continue;
    }
    const int nibble = std::isdigit(static_cast<unsigned char>(c)) != 0 ? c - '0' : (std::tolower(c) - 'a' + 10);
    if (high < 0) {
      high = nibble;
    } else {
      bytes.push_back(static_cast<uint8_t>(high << 4 | nibble));
      high = -1;
    }
  }
  return bytes;
}

Bytes be32(uint32_t value) {
  return {static_cast<uint8_t>(value >> 24), static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 8),
          static_cast<uint8_t>(value)};
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

using test::corpus_dir;

Bytes read_hex_file(const std::string& name) {
  std::ifstream file(corpus_dir() / name);
  std::stringstream text;
  text << file.rdbuf();
  return from_hex(text.str());
}

// ---- RFC 9001 / RFC 9369 appendix A -------------------------------------------------------

const Bytes kRfcDcid = from_hex("8394c8f03e515708");

// The CRYPTO frame of RFC 9001 A.2, which RFC 9369 A.2 reuses: a 241-byte ClientHello for
// example.com behind the frame's 4-byte header (type 06, offset 00, length 40f1).
const Bytes kRfcCryptoFrame = from_hex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff");

const Bytes kRfcClientHello(kRfcCryptoFrame.begin() + 4, kRfcCryptoFrame.end());

QuicInitialKeys keys_from_hex(std::string_view key, std::string_view iv, std::string_view hp) {
  QuicInitialKeys keys;
  const Bytes k = from_hex(key);
  const Bytes i = from_hex(iv);
  const Bytes h = from_hex(hp);
  std::copy(k.begin(), k.end(), keys.key.begin());
  std::copy(i.begin(), i.end(), keys.iv.begin());
  std::copy(h.begin(), h.end(), keys.hp.begin());
  return keys;
}

void expect_rfc_client_initial(const Bytes& datagram, uint32_t version) {
  ASSERT_EQ(datagram.size(), 1200U);
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(datagram);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.version, version);
  EXPECT_EQ(result.version_kind, QuicVersionKind::supported);
  EXPECT_TRUE(std::ranges::equal(result.dcid, kRfcDcid));
  EXPECT_TRUE(result.scid.empty());
  EXPECT_TRUE(std::ranges::equal(result.key_dcid, kRfcDcid));
  EXPECT_EQ(result.initial_packets, 1U);
  ASSERT_EQ(result.crypto.size(), 1U);
  EXPECT_EQ(result.crypto[0].offset, 0U);
  EXPECT_TRUE(std::ranges::equal(result.crypto[0].data, kRfcClientHello));

  const ClientHelloResult hello = parse_client_hello_message(result.crypto[0].data);
  ASSERT_EQ(hello.status, ParseStatus::found);
  EXPECT_EQ(hello.sni, "example.com");
}

TEST(QuicInitialRfc, V1KeysMatchRfc9001AppendixA1) {
  QuicInitialDecryptor decryptor;
  EXPECT_EQ(decryptor.client_initial_keys(kQuicVersion1, kRfcDcid),
            keys_from_hex("1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c",
                          "9f50449e04a0e810283a1e9933adedd2"));
}

TEST(QuicInitialRfc, V1ClientInitialDecryptsToTheClientHelloOfRfc9001AppendixA2) {
  expect_rfc_client_initial(read_hex_file("rfc_v1_client_initial.hex"), kQuicVersion1);
}

TEST(QuicInitialRfc, V2KeysMatchRfc9369AppendixA1) {
  QuicInitialDecryptor decryptor;
  EXPECT_EQ(decryptor.client_initial_keys(kQuicVersion2, kRfcDcid),
            keys_from_hex("8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f",
                          "45b95e15235d6f45a6b19cbcb0294ba9"));
}

TEST(QuicInitialRfc, V2ClientInitialDecryptsToTheClientHelloOfRfc9369AppendixA2) {
  expect_rfc_client_initial(read_hex_file("rfc_v2_client_initial.hex"), kQuicVersion2);
}

TEST(QuicInitialRfc, Draft29KeysMatchDraftIetfQuicTls29AppendixA1) {
  QuicInitialDecryptor decryptor;
  EXPECT_EQ(decryptor.client_initial_keys(kQuicDraft29, kRfcDcid),
            keys_from_hex("175257a31eb09dea9366d8bb79ad80ba", "6b26114b9cba2b63a9e8dd4f",
                          "9ddd12c994c0698b89374a9c077a3077"));
}

TEST(QuicInitialRfc, NoKeysForAnUnsupportedVersion) {
  QuicInitialDecryptor decryptor;
  EXPECT_FALSE(decryptor.client_initial_keys(0xff000020, kRfcDcid).has_value());
}

// ---- building protected packets -----------------------------------------------------------

Bytes varint(uint64_t value) {
  if (value < 0x40) {
    return {static_cast<uint8_t>(value)};
  }
  if (value < 0x4000) {
    return {static_cast<uint8_t>(0x40 | value >> 8), static_cast<uint8_t>(value)};
  }
  return be32(static_cast<uint32_t>(0x80000000U | value));
}

// Length fields in the two-byte form whatever their value, as clients write them.
Bytes two_byte_varint(size_t value) {
  return {static_cast<uint8_t>(0x40 | value >> 8), static_cast<uint8_t>(value)};
}

Bytes crypto_frame(uint64_t offset, std::span<const uint8_t> data) {
  return concat({{0x06}, varint(offset), varint(data.size()), Bytes(data.begin(), data.end())});
}

Bytes padding(size_t count) {
  return Bytes(count, 0x00);
}

struct InitialSpec {
  uint32_t version = kQuicVersion1;
  Bytes dcid = from_hex("0001020304050607");
  Bytes key_dcid;  // the DCID the keys come from; `dcid` when empty
  Bytes scid = from_hex("c0ffee");
  Bytes token;
  uint32_t packet_number = 0;
  size_t packet_number_length = 2;
  uint8_t reserved_bits = 0;
  Bytes payload;
};

uint8_t long_header_type_bits(uint32_t version, std::string_view type) {
  // RFC 9369 section 3.2 rotates the v1 numbering by one.
  static const std::map<std::string_view, uint8_t> v1 = {{"initial", 0}, {"0rtt", 1}, {"handshake", 2}, {"retry", 3}};
  const uint8_t bits = v1.at(type);
  return version == kQuicVersion2 ? static_cast<uint8_t>((bits + 1) & 0x03) : bits;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};

// Protects an Initial as a client would (RFC 9001 section 5), to build cases the RFC lacks.
Bytes protect_initial(const InitialSpec& spec) {
  QuicInitialDecryptor key_source(0);
  const auto keys = key_source.client_initial_keys(spec.version, spec.key_dcid.empty() ? spec.dcid : spec.key_dcid);
  EXPECT_TRUE(keys.has_value());
  const size_t pn_length = spec.packet_number_length;
  const auto first_byte = static_cast<uint8_t>(0xc0 | long_header_type_bits(spec.version, "initial") << 4 |
                                               spec.reserved_bits << 2 | (pn_length - 1));
  Bytes header = concat({{first_byte},
                         be32(spec.version),
                         {static_cast<uint8_t>(spec.dcid.size())},
                         spec.dcid,
                         {static_cast<uint8_t>(spec.scid.size())},
                         spec.scid,
                         varint(spec.token.size()),
                         spec.token,
                         two_byte_varint(pn_length + spec.payload.size() + 16)});
  const size_t pn_offset = header.size();
  for (size_t i = 0; i < pn_length; ++i) {
    header.push_back(static_cast<uint8_t>(spec.packet_number >> (8 * (pn_length - 1 - i))));
  }
  std::array<uint8_t, 12> nonce = keys->iv;
  for (size_t i = 0; i < 4; ++i) {
    nonce[11 - i] ^= static_cast<uint8_t>(spec.packet_number >> (8 * i));
  }
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> gcm(EVP_CIPHER_CTX_new());
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ecb(EVP_CIPHER_CTX_new());
  Bytes sealed(spec.payload.size() + 16);
  int length = 0;
  EXPECT_EQ(EVP_EncryptInit_ex2(gcm.get(), EVP_aes_128_gcm(), keys->key.data(), nonce.data(), nullptr), 1);
  EXPECT_EQ(EVP_EncryptUpdate(gcm.get(), nullptr, &length, header.data(), static_cast<int>(header.size())), 1);
  EXPECT_EQ(
      EVP_EncryptUpdate(gcm.get(), sealed.data(), &length, spec.payload.data(), static_cast<int>(spec.payload.size())),
      1);
  EXPECT_EQ(EVP_EncryptFinal_ex(gcm.get(), sealed.data() + length, &length), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(gcm.get(), EVP_CTRL_AEAD_GET_TAG, 16, sealed.data() + spec.payload.size()), 1);
  Bytes packet = concat({header, sealed});
  std::array<uint8_t, 16> mask{};
  EXPECT_EQ(EVP_EncryptInit_ex2(ecb.get(), EVP_aes_128_ecb(), keys->hp.data(), nullptr, nullptr), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ecb.get(), mask.data(), &length, packet.data() + pn_offset + 4, 16), 1);
  packet[0] ^= mask[0] & 0x0f;
  for (size_t i = 0; i < pn_length; ++i) {
    packet[pn_offset + i] ^= mask[1 + i];
  }
  return packet;
}

// A long-header packet this decryptor does not open (0-RTT, Handshake), with a Length.
Bytes unopened_packet(uint32_t version, std::string_view type, const Bytes& dcid, size_t payload_length) {
  return concat({{static_cast<uint8_t>(0xc1 | long_header_type_bits(version, type) << 4)},
                 be32(version),
                 {static_cast<uint8_t>(dcid.size())},
                 dcid,
                 {0x00},
                 varint(payload_length),
                 Bytes(payload_length, 0x5a)});
}

InitialSpec initial_carrying(Bytes payload) {
  InitialSpec spec;
  spec.payload = std::move(payload);
  return spec;
}

// ---- the decryptor on built packets -------------------------------------------------------

TEST(QuicInitialDecryptor, OpensABuiltInitialOfEverySupportedVersion) {
  for (const uint32_t version : {kQuicVersion1, kQuicVersion2, kQuicDraft29}) {
    SCOPED_TRACE(version);
    InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, padding(900)}));
    spec.version = version;
    spec.token = from_hex("aabbccdd");
    const Bytes datagram = protect_initial(spec);
    QuicInitialDecryptor decryptor;
    const QuicDatagram result = decryptor.decrypt(datagram);
    ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
    EXPECT_EQ(result.version, version);
    EXPECT_TRUE(std::ranges::equal(result.scid, spec.scid));
    ASSERT_EQ(result.crypto.size(), 1U);
    EXPECT_TRUE(std::ranges::equal(result.crypto[0].data, kRfcClientHello));
  }
}

TEST(QuicInitialDecryptor, EveryTruncationOfTheRfcInitialIsMalformed) {
  const Bytes datagram = read_hex_file("rfc_v1_client_initial.hex");
  QuicInitialDecryptor decryptor;
  for (size_t length = 1; length < datagram.size(); ++length) {
    const QuicDatagram result = decryptor.decrypt(std::span(datagram).first(length));
    ASSERT_EQ(result.status, ParseStatus::malformed) << length;
    // Header fields end at byte 18 (Length 449e); the Length then overruns.
    EXPECT_EQ(result.reason, length < 18 ? QuicReason::header_truncated : QuicReason::packet_length_overrun) << length;
  }
}

TEST(QuicInitialDecryptor, AFlippedByteAnywhereAfterTheVersionFailsTheAead) {
  const Bytes datagram = read_hex_file("rfc_v1_client_initial.hex");
  QuicInitialDecryptor decryptor;
  // The DCID (derives other keys), the packet number, the ciphertext and the tag.
  for (const size_t at : {size_t{6}, size_t{18}, size_t{500}, datagram.size() - 1}) {
    Bytes damaged = datagram;
    damaged[at] ^= 0x01;
    const QuicDatagram result = decryptor.decrypt(damaged);
    EXPECT_EQ(result.status, ParseStatus::malformed) << at;
    EXPECT_EQ(result.reason, QuicReason::aead_failed) << at;
    EXPECT_TRUE(result.crypto.empty());
  }
  // The cached contexts that refused the damaged copies still open the intact one.
  EXPECT_EQ(decryptor.decrypt(datagram).status, ParseStatus::found);
  EXPECT_EQ(decryptor.key_derivations(), 2U);
}

TEST(QuicInitialDecryptor, ReportsUnsupportedVersionsWithoutRefusingThem) {
  const std::vector<std::pair<uint32_t, QuicVersionKind>> cases = {
      {0x1a2a3a4a, QuicVersionKind::reserved},    {0xfafafafa, QuicVersionKind::reserved},
      {0xff000020, QuicVersionKind::unknown},     {0x51303530, QuicVersionKind::unknown},  // gQUIC Q050
      {0x00000000, QuicVersionKind::negotiation},
  };
  for (const auto& [version, kind] : cases) {
    Bytes datagram = read_hex_file("rfc_v1_client_initial.hex");
    const Bytes version_bytes = be32(version);
    std::copy(version_bytes.begin(), version_bytes.end(), datagram.begin() + 1);
    QuicInitialDecryptor decryptor;
    const QuicDatagram result = decryptor.decrypt(datagram);
    EXPECT_EQ(result.status, ParseStatus::need_more) << version;
    EXPECT_EQ(result.version, version);
    EXPECT_EQ(result.version_kind, kind) << version;
    EXPECT_TRUE(std::ranges::equal(result.dcid, kRfcDcid));
    EXPECT_EQ(classify_quic_version(version), kind);
  }
}

TEST(QuicInitialDecryptor, UnknownVersionsMayCarryConnectionIdsOver20Bytes) {
  const Bytes long_cid(40, 0x11);
  const Bytes datagram = concat({{0xc0, 0x12, 0x34, 0x56, 0x78, 40}, long_cid, {0x00}, padding(1100)});
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(datagram);
  EXPECT_EQ(result.status, ParseStatus::need_more);
  EXPECT_EQ(result.version_kind, QuicVersionKind::unknown);
  EXPECT_EQ(result.dcid.size(), 40U);
}

TEST(QuicInitialDecryptor, RefusesConnectionIdsOver20BytesInV1) {
  const Bytes datagram = concat({{0xc0, 0x00, 0x00, 0x00, 0x01, 21}, Bytes(21, 0x11), {0x00}, padding(1100)});
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(datagram);
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, QuicReason::connection_id_too_long);
}

TEST(QuicInitialDecryptor, ReadsCoalescedInitialsAndSkipsOtherPackets) {
  InitialSpec first = initial_carrying(crypto_frame(0, std::span(kRfcClientHello).first(100)));
  InitialSpec second = initial_carrying(concat({crypto_frame(100, std::span(kRfcClientHello).subspan(100)), {0x01}}));
  second.packet_number = 1;
  const Bytes datagram =
      concat({protect_initial(first), unopened_packet(kQuicVersion1, "0rtt", first.dcid, 40), protect_initial(second),
              unopened_packet(kQuicVersion1, "handshake", first.dcid, 30), padding(200)});
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(datagram);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.initial_packets, 2U);
  ASSERT_EQ(result.crypto.size(), 2U);
  EXPECT_EQ(result.crypto[0].offset, 0U);
  EXPECT_EQ(result.crypto[1].offset, 100U);
  EXPECT_EQ(result.crypto[1].data.size(), kRfcClientHello.size() - 100);
}

TEST(QuicInitialDecryptor, StopsAtAShortHeaderPacket) {
  const InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, padding(20)}));
  const Bytes datagram = concat({protect_initial(spec), {0x40}, spec.dcid, Bytes(60, 0xee)});
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(datagram);
  EXPECT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.initial_packets, 1U);
}

TEST(QuicInitialDecryptor, IgnoresACoalescedInitialForAnotherConnectionId) {
  const InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, padding(20)}));
  InitialSpec other = spec;
  other.dcid = from_hex("ffffffffffffffff");
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(concat({protect_initial(spec), protect_initial(other)}));
  EXPECT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.initial_packets, 1U);
}

TEST(QuicInitialDecryptor, DatagramsWithoutAnInitialNeedMore) {
  const Bytes dcid = from_hex("0001020304050607");
  QuicInitialDecryptor decryptor;
  EXPECT_EQ(decryptor.decrypt(unopened_packet(kQuicVersion1, "0rtt", dcid, 1100)).status, ParseStatus::need_more);
  EXPECT_EQ(decryptor.decrypt(unopened_packet(kQuicVersion2, "handshake", dcid, 50)).status, ParseStatus::need_more);
  EXPECT_EQ(decryptor.decrypt(concat({{0x41}, dcid, padding(50)})).status, ParseStatus::need_more);
  EXPECT_EQ(decryptor.decrypt(Bytes{}).status, ParseStatus::need_more);
}

TEST(QuicInitialDecryptor, RecognisesRetryInBothVersions) {
  for (const uint32_t version : {kQuicVersion1, kQuicVersion2}) {
    const Bytes new_cid = from_hex("5ae3cd5ae3cd5ae3");
    // DCID c0ffee, the new SCID, then a token and the 16-byte integrity tag.
    const Bytes retry = concat({{static_cast<uint8_t>(0xc0 | long_header_type_bits(version, "retry") << 4)},
                                be32(version),
                                {0x03, 0xc0, 0xff, 0xee, static_cast<uint8_t>(new_cid.size())},
                                new_cid,
                                Bytes(40, 0x77)});
    QuicInitialDecryptor decryptor;
    const QuicDatagram result = decryptor.decrypt(retry);
    EXPECT_EQ(result.status, ParseStatus::need_more) << version;
    EXPECT_TRUE(result.retry) << version;
    EXPECT_TRUE(std::ranges::equal(result.scid, new_cid));
  }
}

TEST(QuicInitialDecryptor, RefusesAnInitialTooShortForTheHeaderProtectionSample) {
  InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, padding(20)}));
  Bytes datagram = protect_initial(spec);
  // Rewrite Length (two bytes before the packet number) to leave 2 + 16 bytes.
  const size_t length_at = 1 + 4 + 1 + spec.dcid.size() + 1 + spec.scid.size() + 1;
  datagram[length_at] = 0x40;
  datagram[length_at + 1] = 18;
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(datagram);
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, QuicReason::packet_too_short);
}

TEST(QuicInitialDecryptor, RefusesReservedBitsOnceProtectionIsRemoved) {
  InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, padding(20)}));
  spec.reserved_bits = 0x02;
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(protect_initial(spec));
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, QuicReason::reserved_bits_set);
}

TEST(QuicInitialDecryptor, RefusesFramesInitialsMayNotCarry) {
  // STREAM (0x08) after a valid CRYPTO frame.
  const InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, {0x08, 0x00, 0x01, 0x02}, padding(20)}));
  QuicInitialDecryptor decryptor;
  const QuicDatagram result = decryptor.decrypt(protect_initial(spec));
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, QuicReason::frame_not_allowed);
}

TEST(QuicInitialDecryptor, OpensWithTheFlowsKeyDcidAfterTheClientSwitchedConnectionId) {
  InitialSpec spec = initial_carrying(concat({kRfcCryptoFrame, padding(20)}));
  spec.key_dcid = spec.dcid;
  spec.dcid = from_hex("ff6d2fa7a8d40742");  // the server's connection ID
  const Bytes datagram = protect_initial(spec);
  QuicInitialDecryptor decryptor;
  EXPECT_EQ(decryptor.decrypt(datagram).reason, QuicReason::aead_failed);
  const QuicDatagram result = decryptor.decrypt(datagram, spec.key_dcid);
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_TRUE(std::ranges::equal(result.key_dcid, spec.key_dcid));
  // After a Retry the packet's own DCID keys it; the stale key DCID is tried first, in vain.
  const Bytes after_retry_datagram = protect_initial(initial_carrying(kRfcCryptoFrame));
  const QuicDatagram after_retry = decryptor.decrypt(after_retry_datagram, spec.dcid);
  ASSERT_EQ(after_retry.status, ParseStatus::found);
  EXPECT_TRUE(std::ranges::equal(after_retry.key_dcid, after_retry.dcid));
}

TEST(QuicInitialDecryptor, CachesKeysPerConnectionId) {
  const Bytes datagram = read_hex_file("rfc_v1_client_initial.hex");
  QuicInitialDecryptor cached;
  QuicInitialDecryptor uncached(0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(cached.decrypt(datagram).status, ParseStatus::found);
    EXPECT_EQ(uncached.decrypt(datagram).status, ParseStatus::found);
  }
  EXPECT_EQ(cached.key_derivations(), 1U);
  EXPECT_EQ(uncached.key_derivations(), 3U);
}

TEST(QuicInitialDecryptor, EvictsTheOldestKeysWhenTheCacheIsFull) {
  QuicInitialDecryptor decryptor(2);
  for (const uint8_t id : {1, 2, 1, 3, 2, 1}) {
    EXPECT_TRUE(decryptor.client_initial_keys(kQuicVersion1, Bytes(8, id)).has_value());
  }
  // 1 and 2 derived, 1 hit, 3 evicts 1, 2 hit, 1 evicts 2.
  EXPECT_EQ(decryptor.key_derivations(), 4U);
}

// ---- the CRYPTO frame walk and the assembler ---------------------------------------------

TEST(InitialFrameWalk, SkipsEveryFrameInitialsMayCarryAndCollectsCrypto) {
  const Bytes payload = concat({
      {0x01},                                            // PING
      {0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x00},        // ACK: largest 5, one extra range
      {0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03},  // ACK_ECN with its three counts
      crypto_frame(7, from_hex("aabb")),
      {0x1c, 0x0a, 0x06, 0x02, 'n', 'o'},  // CONNECTION_CLOSE with a reason phrase
      padding(5),
  });
  std::vector<CryptoFrame> crypto;
  const FrameWalkResult result = walk_initial_frames(payload, crypto);
  EXPECT_EQ(result.status, ParseStatus::found);
  ASSERT_EQ(crypto.size(), 1U);
  EXPECT_EQ(crypto[0].offset, 7U);
  EXPECT_TRUE(std::ranges::equal(crypto[0].data, from_hex("aabb")));
}

TEST(InitialFrameWalk, RefusesFrameTypesOutsideTheInitialList) {
  // STREAM, NEW_TOKEN, HANDSHAKE_DONE, application CONNECTION_CLOSE, DATAGRAM, an unknown type.
  for (const uint8_t type : {0x08, 0x07, 0x1e, 0x1d, 0x30, 0x21}) {
    std::vector<CryptoFrame> crypto;
    const Bytes payload = concat({{0x00, type}, padding(8)});
    const FrameWalkResult result = walk_initial_frames(payload, crypto);
    EXPECT_EQ(result.status, ParseStatus::malformed) << int{type};
    EXPECT_EQ(result.reason, QuicReason::frame_not_allowed) << int{type};
  }
}

TEST(InitialFrameWalk, RefusesTruncatedFramesAndEmptyPayloads) {
  const std::vector<Bytes> truncated = {
      {0x06, 0x00, 0x05, 0xaa},              // CRYPTO shorter than its length
      {0x06, 0x40},                          // CRYPTO offset cut inside its varint
      {0x02, 0x05, 0x00, 0x03, 0x00, 0x01},  // ACK claiming three more ranges
      {0x03, 0x05, 0x00, 0x00, 0x00, 0x01},  // ACK_ECN without counts
      {0x1c, 0x0a, 0x06, 0x09, 'n', 'o'},    // CONNECTION_CLOSE reason past the end
  };
  for (const Bytes& payload : truncated) {
    std::vector<CryptoFrame> crypto;
    EXPECT_EQ(walk_initial_frames(payload, crypto).reason, QuicReason::frame_truncated);
  }
  std::vector<CryptoFrame> crypto;
  EXPECT_EQ(walk_initial_frames({}, crypto).reason, QuicReason::no_frames);
}

TEST(InitialFrameWalk, RefusesCryptoDataBeyondTheLargestStreamOffset) {
  const Bytes payload = concat({{0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {0xaa}});
  std::vector<CryptoFrame> crypto;
  EXPECT_EQ(walk_initial_frames(payload, crypto).reason, QuicReason::crypto_offset_overflow);
}

TEST(CryptoStreamAssembler, ExposesTheContiguousPrefixOnceGapsFill) {
  CryptoStreamAssembler assembler;
  const Bytes data = from_hex("00112233445566778899");
  ASSERT_EQ(assembler.add(6, std::span(data).subspan(6)), CryptoStreamAssembler::AddResult::stored);
  ASSERT_EQ(assembler.add(2, std::span(data).subspan(2, 2)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_TRUE(assembler.contiguous_prefix().empty());
  ASSERT_EQ(assembler.add(0, std::span(data).first(3)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_TRUE(std::ranges::equal(assembler.contiguous_prefix(), std::span(data).first(4)));
  ASSERT_EQ(assembler.add(3, std::span(data).subspan(3, 4)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_TRUE(std::ranges::equal(assembler.contiguous_prefix(), data));
}

TEST(CryptoStreamAssembler, AcceptsIdenticalOverlapAndRefusesDifferingOverlap) {
  CryptoStreamAssembler assembler;
  const Bytes data = from_hex("00112233445566778899");
  ASSERT_EQ(assembler.add(0, data), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.add(3, std::span(data).subspan(3, 5)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.add(8, concat({{0x88, 0x99}, from_hex("aabb")})), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.add(4, from_hex("44ff")), CryptoStreamAssembler::AddResult::conflict);
  EXPECT_EQ(assembler.contiguous_prefix().size(), 12U);
  EXPECT_EQ(assembler.contiguous_prefix()[5], 0x55);
}

TEST(CryptoStreamAssembler, DropsBytesPastItsCapacityWhichIsAtLeast4096) {
  CryptoStreamAssembler assembler(100);
  EXPECT_EQ(assembler.capacity(), CryptoStreamAssembler::kMinCapacity);
  EXPECT_EQ(assembler.add(4090, Bytes(20, 0xab)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.add(uint64_t{1} << 61, Bytes(20, 0xab)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.add(0, Bytes(4090, 0xab)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.contiguous_prefix().size(), 4096U);
  EXPECT_EQ(CryptoStreamAssembler().capacity(), 16U * 1024);
}

TEST(CryptoStreamAssembler, BoundsTheNumberOfGaps) {
  CryptoStreamAssembler assembler;
  const Bytes byte{0x01};
  for (size_t i = 0; i < CryptoStreamAssembler::kMaxRanges; ++i) {
    ASSERT_EQ(assembler.add(2 * i + 1, byte), CryptoStreamAssembler::AddResult::stored);
  }
  EXPECT_EQ(assembler.add(4000, byte), CryptoStreamAssembler::AddResult::too_fragmented);
  // Filling a gap merges ranges, and makes room again.
  EXPECT_EQ(assembler.add(0, Bytes(3, 0x01)), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.add(4000, byte), CryptoStreamAssembler::AddResult::stored);
  EXPECT_EQ(assembler.contiguous_prefix().size(), 4U);
}

// ---- datagrams to SNI ---------------------------------------------------------------------

TEST(QuicClientHelloReader, FindsTheSniOfTheRfcInitials) {
  for (const char* name : {"rfc_v1_client_initial.hex", "rfc_v2_client_initial.hex"}) {
    QuicInitialDecryptor decryptor;
    QuicClientHelloReader reader(decryptor);
    const QuicClientHelloResult& result = reader.add_datagram(read_hex_file(name));
    ASSERT_EQ(result.status, ParseStatus::found) << name;
    EXPECT_EQ(result.client_hello.sni, "example.com");
    EXPECT_EQ(result.version_kind, QuicVersionKind::supported);
  }
}

TEST(QuicClientHelloReader, AssemblesCryptoFramesOutOfOrderAndDuplicatedAcrossDatagrams) {
  const std::span<const uint8_t> hello = kRfcClientHello;
  InitialSpec middle = initial_carrying(concat({crypto_frame(100, hello.subspan(100, 100)), padding(30)}));
  InitialSpec tail = initial_carrying(
      concat({crypto_frame(200, hello.subspan(200)), {0x01}, crypto_frame(100, hello.subspan(100, 100))}));
  tail.packet_number = 1;
  InitialSpec head =
      initial_carrying(concat({{0x02, 0x00, 0x00, 0x00, 0x00}, crypto_frame(0, hello.first(120)), padding(10)}));
  head.packet_number = 2;

  QuicInitialDecryptor decryptor;
  QuicClientHelloReader reader(decryptor);
  EXPECT_EQ(reader.add_datagram(protect_initial(middle)).status, ParseStatus::need_more);
  EXPECT_EQ(reader.add_datagram(protect_initial(tail)).status, ParseStatus::need_more);
  const QuicClientHelloResult& result = reader.add_datagram(protect_initial(head));
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.client_hello.sni, "example.com");
  EXPECT_EQ(decryptor.key_derivations(), 1U);
}

TEST(QuicClientHelloReader, RefusesCryptoDataThatDiffersFromWhatItOverlaps) {
  const std::span<const uint8_t> hello = kRfcClientHello;
  Bytes forged(hello.begin() + 50, hello.begin() + 150);
  forged[40] ^= 0xff;
  QuicInitialDecryptor decryptor;
  QuicClientHelloReader reader(decryptor);
  EXPECT_EQ(reader
                .add_datagram(protect_initial(
                    initial_carrying(concat({crypto_frame(150, hello.subspan(150)), crypto_frame(50, forged)}))))
                .status,
            ParseStatus::need_more);
  const QuicClientHelloResult& result =
      reader.add_datagram(protect_initial(initial_carrying(crypto_frame(0, hello.first(100)))));
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, QuicReason::crypto_conflict);
}

TEST(QuicClientHelloReader, FollowsTheFlowsKeysWhenTheClientMovesToTheServersConnectionId) {
  const std::span<const uint8_t> hello = kRfcClientHello;
  InitialSpec first = initial_carrying(concat({crypto_frame(0, hello.first(90)), padding(30)}));
  InitialSpec second = initial_carrying(crypto_frame(90, hello.subspan(90)));
  second.key_dcid = first.dcid;
  second.dcid = from_hex("ff6d2fa7a8d40742");
  second.packet_number = 1;
  QuicInitialDecryptor decryptor;
  QuicClientHelloReader reader(decryptor);
  EXPECT_EQ(reader.add_datagram(protect_initial(first)).status, ParseStatus::need_more);
  const QuicClientHelloResult& result = reader.add_datagram(protect_initial(second));
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.client_hello.sni, "example.com");
}

TEST(QuicClientHelloReader, RefusesAClientHelloLongerThanItsCapacity) {
  const Bytes header{0x01, 0x00, 0x20, 0x00};  // a ClientHello of 8 KiB
  QuicInitialDecryptor decryptor;
  QuicClientHelloReader reader(decryptor, 4096);
  const QuicClientHelloResult& result =
      reader.add_datagram(protect_initial(initial_carrying(concat({crypto_frame(0, header), padding(30)}))));
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, QuicReason::client_hello_invalid);
  EXPECT_EQ(result.client_hello.reason, ClientHelloReason::too_large);
}

TEST(QuicClientHelloReader, KeepsTheFirstVerdict) {
  Bytes damaged = read_hex_file("rfc_v1_client_initial.hex");
  damaged.back() ^= 0x01;
  QuicInitialDecryptor decryptor;
  QuicClientHelloReader reader(decryptor);
  EXPECT_EQ(reader.add_datagram(damaged).reason, QuicReason::aead_failed);
  EXPECT_EQ(reader.add_datagram(read_hex_file("rfc_v1_client_initial.hex")).status, ParseStatus::malformed);
}

TEST(QuicClientHelloReader, LeavesAnUnknownVersionToTheCaller) {
  Bytes datagram = read_hex_file("rfc_v1_client_initial.hex");
  datagram[4] = 0x02;
  QuicInitialDecryptor decryptor;
  QuicClientHelloReader reader(decryptor);
  const QuicClientHelloResult& result = reader.add_datagram(datagram);
  EXPECT_EQ(result.status, ParseStatus::need_more);
  EXPECT_EQ(result.version, 0x00000002U);
  EXPECT_EQ(result.version_kind, QuicVersionKind::unknown);
}

// ---- corpus: real captures ---------------------------------------------------------------

using QuicRow = test::SniRow;

std::vector<QuicRow> read_quic_rows() {
  std::vector<QuicRow> rows = test::read_sni_rows();
  std::erase_if(rows, [](const QuicRow& row) { return row.l4 != "UDP"; });
  return rows;
}

const test::CaptureFlows& capture_flows(const std::string& capture) {
  return test::corpus_capture_flows(capture);
}

QuicClientHelloResult client_hello_of(const test::CapturedFlow& flow, QuicInitialDecryptor& decryptor) {
  QuicClientHelloReader reader(decryptor);
  for (const std::vector<uint8_t>& datagram : flow.client_datagrams) {
    if (reader.add_datagram(datagram).status != ParseStatus::need_more) {
      break;
    }
  }
  return reader.result();
}

// Every row must match: none is excepted. Retry, QUIC v2, 0-RTT before the Initial, CRYPTO frames
// scattered over several Initials and Initials sent to the server's connection ID all resolve.
TEST(QuicCorpus, EveryUdpRowYieldsTheSniTsharkDecoded) {
  const std::vector<QuicRow> rows = read_quic_rows();
  ASSERT_FALSE(rows.empty()) << "no UDP rows in " << (corpus_dir() / "expected-sni.tsv");
  QuicInitialDecryptor decryptor;
  for (const QuicRow& row : rows) {
    SCOPED_TRACE(row.capture + " " + row.client + " -> " + row.server);
    const test::CaptureFlows& capture = capture_flows(row.capture);
    const test::CapturedFlow* flow = test::find_flow(capture, test::Transport::udp, row.client, row.server);
    ASSERT_NE(flow, nullptr);
    const QuicClientHelloResult result = client_hello_of(*flow, decryptor);
    ASSERT_EQ(result.status, ParseStatus::found)
        << to_string(result.reason) << " / " << to_string(result.client_hello.reason);
    EXPECT_EQ(result.client_hello.sni.value_or("-"), row.expected_sni);
  }
}

// Past the ClientHello too: a client datagram the decryptor refuses would deny a real flow.
TEST(QuicCorpus, EveryClientDatagramOfTheQuicFlowsReadsWithoutError) {
  QuicInitialDecryptor decryptor;
  for (const QuicRow& row : read_quic_rows()) {
    SCOPED_TRACE(row.capture + " " + row.client + " -> " + row.server);
    const test::CapturedFlow* flow =
        test::find_flow(capture_flows(row.capture), test::Transport::udp, row.client, row.server);
    ASSERT_NE(flow, nullptr);
    Bytes key_dcid;
    size_t opened = 0;
    for (size_t i = 0; i < flow->client_datagrams.size(); ++i) {
      const QuicDatagram result = decryptor.decrypt(flow->client_datagrams[i], key_dcid);
      EXPECT_NE(result.status, ParseStatus::malformed) << "datagram " << i << ": " << to_string(result.reason);
      if (result.status == ParseStatus::found) {
        key_dcid.assign(result.key_dcid.begin(), result.key_dcid.end());
        opened += result.initial_packets;
      }
    }
    EXPECT_GT(opened, 0U);
  }
}

TEST(QuicCorpus, AfterARetryTheClientsInitialsOpenWithKeysFromTheRetrysConnectionId) {
  for (const char* capture : {"suricata-verify/quic-retry__input.pcap", "zeek/interop__quic-go_quic-go__retry.pcap"}) {
    SCOPED_TRACE(capture);
    const test::CaptureFlows& flows = capture_flows(capture);
    const auto flow = std::ranges::find(flows.flows, test::Transport::udp, &test::CapturedFlow::transport);
    ASSERT_NE(flow, flows.flows.end());
    QuicInitialDecryptor decryptor;
    Bytes retry_scid;
    for (const std::vector<uint8_t>& datagram : flow->server_datagrams) {
      const QuicDatagram result = decryptor.decrypt(datagram);
      if (result.retry) {
        retry_scid.assign(result.scid.begin(), result.scid.end());
        break;
      }
    }
    ASSERT_FALSE(retry_scid.empty());
    size_t opened_after_retry = 0;
    for (const std::vector<uint8_t>& datagram : flow->client_datagrams) {
      const QuicDatagram result = decryptor.decrypt(datagram);
      if (std::ranges::equal(result.dcid, retry_scid) && result.status == ParseStatus::found) {
        EXPECT_TRUE(std::ranges::equal(result.key_dcid, retry_scid));
        ++opened_after_retry;
      }
    }
    EXPECT_GT(opened_after_retry, 0U);
  }
}

}  // namespace
}  // namespace portcullis::parsers
