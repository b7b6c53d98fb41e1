// Reassembles the first bytes of one direction of a TCP stream, enough for the parsers to
// find a name (a ClientHello, an HTTP request head), from segments as they were punted: out of
// order, retransmitted, overlapping.
//
// Overlapping bytes that differ from those already received are an evasion attempt (the
// firewall and the server could each keep a different copy), so they put the prefix in a
// sticky conflict state; the caller must then refuse the flow instead of parsing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace portcullis::parsers {

class TcpStreamPrefix {
 public:
  static constexpr uint32_t kDefaultLimit = 64 * 1024;
  // Disjoint byte ranges kept at once; a segment that would need more is dropped (and
  // counted) rather than stored. Held segments never reach the receiver, so the sender
  // retransmits them and the hole fills in order.
  static constexpr size_t kMaxRanges = 64;

  // `first_seq` is the sequence number of the stream's first data byte: ISN + 1 when the SYN
  // was seen, otherwise the first data segment's sequence number.
  explicit TcpStreamPrefix(uint32_t first_seq, uint32_t limit = kDefaultLimit);

  // A SYN's payload (TCP Fast Open) starts at seq + 1, since the SYN itself takes one
  // sequence number. Bytes before the start of the stream are ignored, bytes at or past the
  // limit are dropped and set limit_exceeded().
  void add_segment(uint32_t seq, std::span<const uint8_t> payload, bool syn = false);

  // The bytes received without a hole from the start of the stream.
  [[nodiscard]] std::span<const uint8_t> contiguous() const noexcept;

  [[nodiscard]] bool conflict() const noexcept { return conflict_; }
  [[nodiscard]] bool limit_exceeded() const noexcept { return limit_exceeded_; }
  [[nodiscard]] uint32_t segments_dropped() const noexcept { return segments_dropped_; }
  // Heap bytes held, for per-flow memory accounting.
  [[nodiscard]] size_t memory_bytes() const noexcept;

 private:
  struct Range {
    uint32_t begin;  // offsets from the first byte of the stream, end exclusive
    uint32_t end;
  };

  [[nodiscard]] bool matches_received(uint32_t begin, std::span<const uint8_t> bytes) const;
  [[nodiscard]] bool cover(uint32_t begin, uint32_t end);

  uint32_t first_seq_;
  uint32_t limit_;
  std::vector<uint8_t> buffer_;  // indexed by stream offset, sized to the furthest byte seen
  std::vector<Range> ranges_;    // received bytes: sorted, disjoint, not adjacent
  uint32_t segments_dropped_ = 0;
  bool conflict_ = false;
  bool limit_exceeded_ = false;
};

}  // namespace portcullis::parsers
