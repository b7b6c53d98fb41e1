// The CRYPTO stream of a QUIC client's Initial packets: the frame walk over a decrypted Initial
// payload (RFC 9000 sections 12.4 and 19) and the reassembly of CRYPTO frames into the
// contiguous stream prefix that carries the TLS ClientHello.
//
// Also home of QuicReason, the refusal reasons shared by the QUIC parsers in this folder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"

namespace portcullis::parsers {

enum class QuicReason : uint8_t {
  none,
  header_truncated,        // a long header ends before its fields do
  connection_id_too_long,  // a connection ID over 20 bytes in a version that caps them
  packet_length_overrun,   // the Length field runs past the end of the datagram
  packet_too_short,        // too short to hold the header protection sample
  aead_failed,             // the payload did not authenticate under any candidate key
  reserved_bits_set,       // reserved header bits non-zero once protection is removed
  no_frames,               // an Initial payload without a single frame
  frame_truncated,         // a frame runs past the end of the payload
  frame_not_allowed,       // a frame type that Initial packets may not carry
  crypto_offset_overflow,  // CRYPTO offset + length beyond 2^62 - 1
  crypto_conflict,         // CRYPTO data differs from bytes already received at that offset
  crypto_too_fragmented,   // more disjoint CRYPTO ranges than the assembler tracks
  client_hello_invalid,    // the TLS parser refused the ClientHello; its own reason says why
};

[[nodiscard]] std::string_view to_string(QuicReason reason) noexcept;

struct CryptoFrame {
  uint64_t offset = 0;
  std::span<const uint8_t> data;
};

struct FrameWalkResult {
  ParseStatus status = ParseStatus::found;  // found or malformed: a payload is always whole
  QuicReason reason = QuicReason::none;
};

// Walks every frame of a decrypted Initial payload. PADDING, PING, ACK, ACK_ECN and
// CONNECTION_CLOSE (transport) are skipped; CRYPTO frames are appended to `crypto`, their data
// pointing into `payload`. Any other frame type is malformed (RFC 9000 section 12.4, table 3).
[[nodiscard]] FrameWalkResult walk_initial_frames(std::span<const uint8_t> payload, std::vector<CryptoFrame>& crypto);

// Reassembles CRYPTO frames, arriving in any order, duplicated or overlapping, into one buffer
// and exposes the contiguous prefix from offset 0. Bytes past the capacity are dropped: only the
// prefix matters and a ClientHello that does not fit is refused by its length anyway.
class CryptoStreamAssembler {
 public:
  static constexpr size_t kMinCapacity = 4096;
  static constexpr size_t kDefaultCapacity = size_t{16} * 1024;
  // Disjoint ranges tracked at once; Chromium scatters a ClientHello over a few dozen frames.
  static constexpr size_t kMaxRanges = 256;

  enum class AddResult : uint8_t { stored, conflict, too_fragmented };

  // `capacity` is raised to kMinCapacity when smaller. The buffer is allocated once, here, and
  // left uninitialised: only ranges already written are ever read.
  explicit CryptoStreamAssembler(size_t capacity = kDefaultCapacity);

  // Leaves the assembler unchanged unless the result is `stored`.
  [[nodiscard]] AddResult add(uint64_t offset, std::span<const uint8_t> data);

  [[nodiscard]] std::span<const uint8_t> contiguous_prefix() const noexcept;
  [[nodiscard]] size_t capacity() const noexcept { return capacity_; }

  void reset() noexcept { ranges_.clear(); }

 private:
  struct Range {
    size_t begin = 0;
    size_t end = 0;  // exclusive
  };

  [[nodiscard]] bool matches_stored_bytes(size_t begin, std::span<const uint8_t> data) const;
  void merge_range(size_t begin, size_t end);

  size_t capacity_;
  std::unique_ptr<uint8_t[]> bytes_;
  std::vector<Range> ranges_;  // sorted, disjoint and never touching each other
};

}  // namespace portcullis::parsers
