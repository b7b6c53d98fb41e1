#include "punt/dns_tcp_queries.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "portcullis/drop_reasons.h"

namespace portcullis::punt {
namespace {

// How far back from the first byte not judged a retransmission may start and still be one of bytes read: sequence
// numbers compare modulo 2^32, and a long-lived connection carries more than that.
constexpr uint32_t kReadWindow = 1U << 30;

// Sequence numbers compare modulo 2^32.
bool seq_before(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}

auto at(const std::vector<uint8_t>& bytes, size_t offset) {
  return bytes.begin() + static_cast<std::ptrdiff_t>(offset);
}

}  // namespace

DnsTcpQueryStream::Refusal DnsTcpQueryStream::refusal_of(Status status) {
  switch (status) {
    case Status::conflict:
      return {PC_DROP_STREAM_CONFLICT, "overlapping segments differ"};
    case Status::over_bound:
      return {PC_DROP_HOLD_LIMIT, "queries past the hold bounds"};
    case Status::before_start:
    case Status::read:
    case Status::out_of_order:
      break;
  }
  return {PC_DROP_L7_MALFORMED, "bytes from before the stream's start"};
}

DnsTcpQueryStream::DnsTcpQueryStream(uint32_t first_seq)
    : first_seq_(first_seq), message_start_(first_seq), next_seq_(first_seq) {}

DnsTcpQueryStream::Added DnsTcpQueryStream::add(uint32_t seq, std::span<const uint8_t> payload) {
  Added added;
  if (payload.empty()) {
    // Nothing to read: it goes with the next release.
    added.segment = next_segment_++;
    held_.push_back(Held{added.segment, message_start_, message_start_});
    return added;
  }
  const bool after_gap = seq_before(next_seq_, seq);
  if (seq_before(seq, first_seq_)) {
    added.status = Status::before_start;
  } else if (held_.size() >= kMaxHeldSegments || (after_gap && ahead_bytes_ + payload.size() > kMaxAheadBytes)) {
    added.status = Status::over_bound;
  } else if (!matches_unjudged(seq, payload)) {
    added.status = Status::conflict;
  }
  if (added.status != Status::read) return added;
  added.segment = next_segment_++;
  held_.push_back(Held{added.segment, seq, static_cast<uint32_t>(seq + payload.size())});
  if (after_gap) {
    added.status = Status::out_of_order;
    ahead_.push_back(Ahead{seq, std::vector<uint8_t>(payload.begin(), payload.end())});
    ahead_bytes_ += payload.size();
    return added;
  }
  append(seq, payload);
  take_ahead();
  added.messages = take_messages();
  return added;
}

std::vector<uint64_t> DnsTcpQueryStream::held() const {
  std::vector<Held> ordered = held_;
  std::ranges::stable_sort(ordered, [](const Held& a, const Held& b) { return seq_before(a.begin, b.begin); });
  std::vector<uint64_t> segments;
  segments.reserve(ordered.size());
  for (const Held& held : ordered) segments.push_back(held.segment);
  return segments;
}

// Every byte received and not judged is compared with the new segment's when it comes, so the bytes kept agree with
// every copy of them that may go on.
bool DnsTcpQueryStream::matches_unjudged(uint32_t begin, std::span<const uint8_t> bytes) const {
  const auto end = static_cast<uint32_t>(begin + bytes.size());
  const auto agrees = [&](uint32_t other_begin, const std::vector<uint8_t>& other) {
    const auto other_end = static_cast<uint32_t>(other_begin + other.size());
    const uint32_t from = seq_before(begin, other_begin) ? other_begin : begin;
    const uint32_t to = seq_before(end, other_end) ? end : other_end;
    if (!seq_before(from, to)) return true;
    return std::equal(bytes.begin() + (from - begin), bytes.begin() + (to - begin), at(other, from - other_begin));
  };
  return agrees(message_start_, partial_) &&
         std::ranges::all_of(ahead_, [&](const Ahead& ahead) { return agrees(ahead.begin, ahead.bytes); });
}

// The bytes of a segment that starts at or before next_seq_ from next_seq_ on, if any.
void DnsTcpQueryStream::append(uint32_t begin, std::span<const uint8_t> bytes) {
  const auto end = static_cast<uint32_t>(begin + bytes.size());
  if (!seq_before(next_seq_, end)) return;
  const std::span<const uint8_t> fresh = bytes.subspan(next_seq_ - begin);
  partial_.insert(partial_.end(), fresh.begin(), fresh.end());
  next_seq_ = end;
}

// Segments after a gap the stream has now reached: their bytes follow, in order. They agreed with every other byte
// not judged when they came, and none has been judged since (judging stops at next_seq_).
void DnsTcpQueryStream::take_ahead() {
  for (auto reached = ahead_.begin(); reached != ahead_.end();) {
    if (seq_before(next_seq_, reached->begin)) {
      ++reached;
      continue;
    }
    append(reached->begin, reached->bytes);
    ahead_bytes_ -= reached->bytes.size();
    ahead_.erase(reached);
    reached = ahead_.begin();  // one that starts later may be reached now
  }
}

std::vector<std::vector<uint8_t>> DnsTcpQueryStream::take_messages() {
  std::vector<std::vector<uint8_t>> messages;
  size_t taken = 0;
  while (partial_.size() - taken >= 2) {
    const size_t length = size_t{partial_[taken]} << 8 | partial_[taken + 1];
    if (partial_.size() - taken - 2 < length) break;
    messages.emplace_back(at(partial_, taken + 2), at(partial_, taken + 2 + length));
    taken += 2 + length;
  }
  partial_.erase(partial_.begin(), at(partial_, taken));
  message_start_ += static_cast<uint32_t>(taken);
  if (message_start_ - first_seq_ > kReadWindow) first_seq_ = message_start_ - kReadWindow;
  return messages;
}

// A held segment goes when every byte of it is judged (and allowed), unless one that came before it and still waits
// overlaps it: that one's copy of the bytes is the one that was read, and must reach the server first.
std::vector<uint64_t> DnsTcpQueryStream::release() {
  std::vector<uint64_t> released;
  std::vector<Held> waiting;
  for (const Held& held : held_) {
    const bool judged = !seq_before(message_start_, held.end);
    const bool behind = std::ranges::any_of(waiting, [&](const Held& earlier) {
      return seq_before(held.begin, earlier.end) && seq_before(earlier.begin, held.end);
    });
    if (judged && !behind) {
      released.push_back(held.segment);
    } else {
      waiting.push_back(held);
    }
  }
  held_ = std::move(waiting);
  return released;
}

}  // namespace portcullis::punt
