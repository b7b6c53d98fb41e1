#include "parsers/quic_crypto_stream.h"

#include <algorithm>
#include <cstring>

#include "parsers/byte_reader.h"

namespace portcullis::parsers {
namespace {

// Frame types an Initial packet may carry (RFC 9000 section 12.4, table 3).
constexpr uint64_t kFramePadding = 0x00;
constexpr uint64_t kFramePing = 0x01;
constexpr uint64_t kFrameAck = 0x02;
constexpr uint64_t kFrameAckEcn = 0x03;
constexpr uint64_t kFrameCrypto = 0x06;
constexpr uint64_t kFrameConnectionClose = 0x1c;

constexpr uint64_t kMaxStreamOffset = (uint64_t{1} << 62) - 1;

// Clients pad Initials to 1200 bytes with PADDING frames, which often fill most of the packet;
// walking them a word at a time instead of a frame at a time makes the frame walk cheap.
[[nodiscard]] size_t zero_run_length(std::span<const uint8_t> bytes) noexcept {
  size_t length = 0;
  uint64_t word = 0;
  while (bytes.size() - length >= sizeof(word)) {
    std::memcpy(&word, bytes.data() + length, sizeof(word));
    if (word != 0) {
      break;
    }
    length += sizeof(word);
  }
  while (length < bytes.size() && bytes[length] == 0) {
    ++length;
  }
  return length;
}

[[nodiscard]] bool skip_varints(ByteReader& reader, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    if (!reader.varint()) {
      return false;
    }
  }
  return true;
}

[[nodiscard]] bool skip_ack(ByteReader& reader, bool with_ecn_counts) {
  // Largest Acknowledged, ACK Delay, then the range count and the First ACK Range.
  if (!skip_varints(reader, 2)) {
    return false;
  }
  const auto range_count = reader.varint();
  if (!range_count || !reader.varint()) {
    return false;
  }
  // Gap and length per further range. The count is the sender's word: a lie ends at the
  // payload's end, one byte per varint at least.
  for (uint64_t i = 0; i < *range_count; ++i) {
    if (!skip_varints(reader, 2)) {
      return false;
    }
  }
  return !with_ecn_counts || skip_varints(reader, 3);
}

[[nodiscard]] bool skip_connection_close(ByteReader& reader) {
  // Error Code and the offending Frame Type, then a length-prefixed Reason Phrase.
  if (!skip_varints(reader, 2)) {
    return false;
  }
  const auto length = reader.varint();
  return length && *length <= reader.remaining() && reader.skip(static_cast<size_t>(*length));
}

[[nodiscard]] FrameWalkResult read_crypto_frame(ByteReader& reader, std::vector<CryptoFrame>& crypto) {
  const auto offset = reader.varint();
  const auto length = offset ? reader.varint() : std::nullopt;
  if (!length || *length > reader.remaining()) {
    return {ParseStatus::malformed, QuicReason::frame_truncated};
  }
  // Both fit in 62 bits, so the sum cannot wrap.
  if (*offset + *length > kMaxStreamOffset) {
    return {ParseStatus::malformed, QuicReason::crypto_offset_overflow};
  }
  crypto.push_back({*offset, *reader.bytes(static_cast<size_t>(*length))});
  return {};
}

[[nodiscard]] FrameWalkResult read_frame(ByteReader& reader, std::vector<CryptoFrame>& crypto) {
  const auto type = reader.varint();
  if (!type) {
    return {ParseStatus::malformed, QuicReason::frame_truncated};
  }
  bool whole = true;
  switch (*type) {
    case kFramePadding:
      whole = reader.skip(zero_run_length(reader.rest()));
      break;
    case kFramePing:
      break;
    case kFrameAck:
    case kFrameAckEcn:
      whole = skip_ack(reader, *type == kFrameAckEcn);
      break;
    case kFrameConnectionClose:
      whole = skip_connection_close(reader);
      break;
    case kFrameCrypto:
      return read_crypto_frame(reader, crypto);
    default:
      return {ParseStatus::malformed, QuicReason::frame_not_allowed};
  }
  if (!whole) {
    return {ParseStatus::malformed, QuicReason::frame_truncated};
  }
  return {};
}

}  // namespace

std::string_view to_string(QuicReason reason) noexcept {
  switch (reason) {
    case QuicReason::none:
      return "none";
    case QuicReason::header_truncated:
      return "header-truncated";
    case QuicReason::connection_id_too_long:
      return "connection-id-too-long";
    case QuicReason::packet_length_overrun:
      return "packet-length-overrun";
    case QuicReason::packet_too_short:
      return "packet-too-short";
    case QuicReason::aead_failed:
      return "aead-failed";
    case QuicReason::reserved_bits_set:
      return "reserved-bits-set";
    case QuicReason::no_frames:
      return "no-frames";
    case QuicReason::frame_truncated:
      return "frame-truncated";
    case QuicReason::frame_not_allowed:
      return "frame-not-allowed";
    case QuicReason::crypto_offset_overflow:
      return "crypto-offset-overflow";
    case QuicReason::crypto_conflict:
      return "crypto-conflict";
    case QuicReason::crypto_too_fragmented:
      return "crypto-too-fragmented";
    case QuicReason::client_hello_invalid:
      return "client-hello-invalid";
  }
  return "unknown";
}

FrameWalkResult walk_initial_frames(std::span<const uint8_t> payload, std::vector<CryptoFrame>& crypto) {
  if (payload.empty()) {
    return {ParseStatus::malformed, QuicReason::no_frames};
  }
  ByteReader reader(payload);
  while (!reader.empty()) {
    if (const FrameWalkResult frame = read_frame(reader, crypto); frame.status != ParseStatus::found) {
      return frame;
    }
  }
  return {};
}

CryptoStreamAssembler::CryptoStreamAssembler(size_t capacity)
    : capacity_(std::max(capacity, kMinCapacity)), bytes_(std::make_unique_for_overwrite<uint8_t[]>(capacity_)) {}

CryptoStreamAssembler::AddResult CryptoStreamAssembler::add(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= capacity_) {
    return AddResult::stored;
  }
  const auto begin = static_cast<size_t>(offset);
  data = data.first(std::min(data.size(), capacity_ - begin));
  if (data.empty()) {
    return AddResult::stored;
  }
  const size_t end = begin + data.size();
  if (!matches_stored_bytes(begin, data)) {
    return AddResult::conflict;
  }
  const bool touches_a_range = std::any_of(ranges_.begin(), ranges_.end(), [begin, end](const Range& range) {
    return range.begin <= end && begin <= range.end;
  });
  if (!touches_a_range && ranges_.size() == kMaxRanges) {
    return AddResult::too_fragmented;
  }
  std::memcpy(bytes_.get() + begin, data.data(), data.size());
  merge_range(begin, end);
  return AddResult::stored;
}

std::span<const uint8_t> CryptoStreamAssembler::contiguous_prefix() const noexcept {
  if (ranges_.empty() || ranges_.front().begin != 0) {
    return {};
  }
  return {bytes_.get(), ranges_.front().end};
}

bool CryptoStreamAssembler::matches_stored_bytes(size_t begin, std::span<const uint8_t> data) const {
  const size_t end = begin + data.size();
  for (const Range& range : ranges_) {
    const size_t overlap_begin = std::max(begin, range.begin);
    const size_t overlap_end = std::min(end, range.end);
    if (overlap_begin < overlap_end && std::memcmp(bytes_.get() + overlap_begin, data.data() + (overlap_begin - begin),
                                                   overlap_end - overlap_begin) != 0) {
      return false;
    }
  }
  return true;
}

void CryptoStreamAssembler::merge_range(size_t begin, size_t end) {
  // Ranges that overlap or touch [begin, end) fold into one, keeping the list minimal.
  const auto first =
      std::find_if(ranges_.begin(), ranges_.end(), [begin](const Range& range) { return range.end >= begin; });
  const auto last = std::find_if(first, ranges_.end(), [end](const Range& range) { return range.begin > end; });
  if (first == last) {
    ranges_.insert(first, Range{begin, end});
    return;
  }
  first->begin = std::min(begin, first->begin);
  first->end = std::max(end, std::prev(last)->end);
  ranges_.erase(std::next(first), last);
}

}  // namespace portcullis::parsers
