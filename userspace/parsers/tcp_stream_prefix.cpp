#include "parsers/tcp_stream_prefix.h"

#include <algorithm>

namespace portcullis::parsers {

TcpStreamPrefix::TcpStreamPrefix(uint32_t first_seq, uint32_t limit) : first_seq_(first_seq), limit_(limit) {}

void TcpStreamPrefix::add_segment(uint32_t seq, std::span<const uint8_t> payload, bool syn) {
  if (conflict_ || payload.empty()) {
    return;
  }
  const uint32_t data_seq = syn ? seq + 1 : seq;
  // Serial number arithmetic (RFC 1982): the signed distance survives sequence wrap-around,
  // and a negative one is data from before the stream start (a retransmission across it).
  const auto distance = static_cast<int32_t>(data_seq - first_seq_);
  const uint64_t before_start = distance < 0 ? static_cast<uint64_t>(-static_cast<int64_t>(distance)) : 0;
  if (before_start >= payload.size()) {
    return;
  }
  payload = payload.subspan(static_cast<size_t>(before_start));
  const uint32_t begin = distance < 0 ? 0 : static_cast<uint32_t>(distance);
  if (begin >= limit_) {
    limit_exceeded_ = true;
    return;
  }
  if (payload.size() > limit_ - begin) {
    limit_exceeded_ = true;
    payload = payload.first(limit_ - begin);
  }
  const auto end = static_cast<uint32_t>(begin + payload.size());
  if (!matches_received(begin, payload)) {
    conflict_ = true;
    return;
  }
  if (!cover(begin, end)) {
    ++segments_dropped_;
    return;
  }
  if (buffer_.size() < end) {
    // Grow geometrically like vector would, but never past the limit, so memory_bytes()
    // stays within what the limit promises.
    buffer_.reserve(std::min<size_t>(std::max<size_t>(end, 2 * buffer_.capacity()), limit_));
    buffer_.resize(end);
  }
  std::ranges::copy(payload, buffer_.begin() + begin);
}

std::span<const uint8_t> TcpStreamPrefix::contiguous() const noexcept {
  if (ranges_.empty() || ranges_.front().begin != 0) {
    return {};
  }
  return {buffer_.data(), ranges_.front().end};
}

size_t TcpStreamPrefix::memory_bytes() const noexcept {
  return buffer_.capacity() + ranges_.capacity() * sizeof(Range);
}

bool TcpStreamPrefix::matches_received(uint32_t begin, std::span<const uint8_t> bytes) const {
  const auto end = static_cast<uint32_t>(begin + bytes.size());
  auto range = std::ranges::lower_bound(ranges_, begin, std::less<>{}, &Range::end);
  for (; range != ranges_.end() && range->begin < end; ++range) {
    const uint32_t from = std::max(begin, range->begin);
    const uint32_t to = std::min(end, range->end);
    if (from < to &&
        !std::equal(bytes.begin() + (from - begin), bytes.begin() + (to - begin), buffer_.begin() + from)) {
      return false;
    }
  }
  return true;
}

// Adds [begin, end) to the received ranges, merging it with every range it overlaps or
// touches. Returns false, changing nothing, when it would need a range beyond kMaxRanges.
bool TcpStreamPrefix::cover(uint32_t begin, uint32_t end) {
  const auto first = std::ranges::lower_bound(ranges_, begin, std::less<>{}, &Range::end);
  auto last = first;
  while (last != ranges_.end() && last->begin <= end) {
    ++last;
  }
  if (first == last) {
    if (ranges_.size() == kMaxRanges) {
      return false;
    }
    ranges_.insert(first, Range{begin, end});
    return true;
  }
  first->begin = std::min(first->begin, begin);
  first->end = std::max(std::prev(last)->end, end);
  ranges_.erase(std::next(first), last);
  return true;
}

}  // namespace portcullis::parsers
