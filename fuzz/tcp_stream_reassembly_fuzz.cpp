// libFuzzer target: TcpStreamPrefix fed segments decoded from the input, checked after every
// segment against a byte-per-offset reference model, with the stream parsers run on what it has
// put together so far, the way the daemon runs them as a flow's segments are punted.
//
// Input layout (big-endian):
//   u32 first_seq     the stream's first data sequence number (wraps around like any other)
//   u16 limit         TcpStreamPrefix limit, taken as 1 + limit % kMaxLimit
//   u8  count         segments that follow
//   count times:  u8 flags (bit 0: SYN; bit 1: bytes shifted by one, a retransmission that differs),
//                 i16 offset (of the segment's first data byte from the stream start), u16 length
//   the rest: stream content S; the byte at stream offset k is S[k mod |S|]
//
// Besides memory errors it traps on broken promises: the prefix agrees with the model on every
// byte and every flag; contiguous() never exceeds the limit and never changes bytes it showed
// before; memory stays within the limit; and a parser's verdict, once given, stands as the
// prefix grows.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "parsers/byte_reader.h"
#include "parsers/http_request.h"
#include "parsers/ssh_banner.h"
#include "parsers/tcp_stream_prefix.h"
#include "parsers/tls_client_hello.h"

namespace {

using portcullis::parsers::ByteReader;
using portcullis::parsers::ParseStatus;
using portcullis::parsers::TcpStreamPrefix;

constexpr uint32_t kMaxLimit = 16 * 1024;  // past the HTTP head limit, so too_large is reachable
constexpr uint16_t kMaxSegmentLength = 4096;
constexpr uint8_t kFlagSyn = 1;
constexpr uint8_t kFlagShifted = 2;
constexpr size_t kRangeBytes = 2 * sizeof(uint32_t);  // TcpStreamPrefix::Range

struct Segment {
  uint8_t flags;
  int16_t offset;
  uint16_t length;
};

// The model's and the payload builder's byte loops are left out of coverage (and not inlined into
// code that has it): they would cost most of each run and only echo the code under test.
#define NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))

// What TcpStreamPrefix promises, kept the plainest way: one slot per stream offset.
class ReferencePrefix {
 public:
  explicit ReferencePrefix(uint32_t limit) : bytes_(limit) {}

  NO_COVERAGE void add(int64_t begin, std::vector<uint8_t> payload) {
    if (conflict_ || payload.empty()) {
      return;
    }
    if (begin < 0) {
      const auto before_start = static_cast<size_t>(-begin);
      if (before_start >= payload.size()) {
        return;
      }
      payload.erase(payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(before_start));
      begin = 0;
    }
    const auto first = static_cast<size_t>(begin);
    if (first >= bytes_.size()) {
      limit_exceeded_ = true;
      return;
    }
    if (payload.size() > bytes_.size() - first) {
      limit_exceeded_ = true;
      payload.resize(bytes_.size() - first);
    }
    const size_t end = first + payload.size();
    for (size_t i = first; i < end; ++i) {
      if (bytes_[i] && *bytes_[i] != payload[i - first]) {
        conflict_ = true;
        return;
      }
    }
    // A segment that touches no byte received so far opens a range of its own.
    const size_t touched = ranges_within(first == 0 ? 0 : first - 1, std::min(end + 1, bytes_.size()));
    if (touched == 0 && ranges_ == TcpStreamPrefix::kMaxRanges) {
      ++dropped_;
      return;
    }
    ranges_ = ranges_ + 1 - touched;
    for (size_t i = first; i < end; ++i) {
      bytes_[i] = payload[i - first];
    }
  }

  // Received bytes from the stream start up to the first hole.
  [[nodiscard]] NO_COVERAGE size_t contiguous_length() {
    while (contiguous_end_ < bytes_.size() && bytes_[contiguous_end_]) {
      ++contiguous_end_;
    }
    return contiguous_end_;
  }

  // Whether `bytes` hold the received bytes at stream offsets [from, from + bytes.size()).
  [[nodiscard]] NO_COVERAGE bool holds(size_t from, std::span<const uint8_t> bytes) const {
    return std::ranges::equal(bytes, std::span(bytes_).subspan(from, bytes.size()), {}, {},
                              [](const std::optional<uint8_t>& byte) { return byte.value_or(0); });
  }

  [[nodiscard]] bool conflict() const { return conflict_; }
  [[nodiscard]] bool limit_exceeded() const { return limit_exceeded_; }
  [[nodiscard]] uint32_t dropped() const { return dropped_; }

 private:
  // Runs of received bytes that meet [from, to).
  [[nodiscard]] NO_COVERAGE size_t ranges_within(size_t from, size_t to) const {
    size_t count = 0;
    for (size_t i = from; i < to; ++i) {
      count += bytes_[i] && (i == from || !bytes_[i - 1]) ? 1 : 0;
    }
    return count;
  }

  std::vector<std::optional<uint8_t>> bytes_;
  size_t contiguous_end_ = 0;  // received bytes never go away, so the scan resumes here
  size_t ranges_ = 0;
  uint32_t dropped_ = 0;
  bool conflict_ = false;
  bool limit_exceeded_ = false;
};

NO_COVERAGE std::vector<uint8_t> payload_of(const Segment& segment, std::span<const uint8_t> content) {
  if (content.empty()) {
    return {};
  }
  std::vector<uint8_t> payload(segment.length);
  const auto size = static_cast<int64_t>(content.size());
  const int64_t shift = (segment.flags & kFlagShifted) != 0 ? 1 : 0;
  auto index = static_cast<size_t>((((segment.offset + shift) % size) + size) % size);
  for (uint8_t& byte : payload) {
    byte = content[index];
    index = index + 1 == content.size() ? 0 : index + 1;
  }
  return payload;
}

// The verdict each parser gave on the prefix so far; once given it must not change.
struct Verdicts {
  std::optional<portcullis::parsers::ClientHelloResult> client_hello;
  std::optional<portcullis::parsers::HttpRequestResult> http_request;
  std::optional<portcullis::parsers::SshBannerResult> ssh_banner;
};

template <typename Result>
void check_verdict(std::optional<Result>& given, const Result& now, size_t length, uint32_t Result::*consumed) {
  if (now.status == ParseStatus::found && now.*consumed > length) {
    __builtin_trap();
  }
  if (!given) {
    if (now.status != ParseStatus::need_more) {
      given = now;
    }
    return;
  }
  if (now.status != given->status || now.reason != given->reason || now.*consumed != (*given).*consumed) {
    __builtin_trap();
  }
}

void run_parsers(std::span<const uint8_t> stream, Verdicts& verdicts) {
  check_verdict(verdicts.client_hello, portcullis::parsers::parse_client_hello(stream), stream.size(),
                &portcullis::parsers::ClientHelloResult::stream_length);
  check_verdict(verdicts.http_request, portcullis::parsers::parse_http_request(stream), stream.size(),
                &portcullis::parsers::HttpRequestResult::head_length);
  check_verdict(verdicts.ssh_banner, portcullis::parsers::parse_ssh_banner(stream), stream.size(),
                &portcullis::parsers::SshBannerResult::banner_length);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteReader reader({data, size});
  const auto first_seq = reader.u32();
  const auto limit_field = first_seq ? reader.u16() : std::nullopt;
  const auto count = limit_field ? reader.u8() : std::nullopt;
  if (!count) {
    return 0;
  }
  std::vector<Segment> segments;
  for (uint8_t i = 0; i < *count; ++i) {
    const auto flags = reader.u8();
    const auto offset = flags ? reader.u16() : std::nullopt;
    const auto length = offset ? reader.u16() : std::nullopt;
    if (!length) {
      return 0;
    }
    segments.push_back({*flags, static_cast<int16_t>(*offset), static_cast<uint16_t>(*length % kMaxSegmentLength)});
  }
  const std::span<const uint8_t> content = reader.rest();
  const uint32_t limit = 1 + *limit_field % kMaxLimit;

  TcpStreamPrefix prefix(*first_seq, limit);
  ReferencePrefix reference(limit);
  Verdicts verdicts;
  size_t shown = 0;  // contiguous bytes after the previous segment
  for (const Segment& segment : segments) {
    const std::vector<uint8_t> payload = payload_of(segment, content);
    // A SYN takes the sequence number before its data.
    const bool syn = (segment.flags & kFlagSyn) != 0;
    const uint32_t seq = *first_seq + static_cast<uint32_t>(static_cast<int32_t>(segment.offset)) - (syn ? 1 : 0);
    prefix.add_segment(seq, payload, syn);
    reference.add(segment.offset, payload);

    // Only the bytes new to contiguous() are compared here, to keep long inputs fast; the
    // comparison of all of them after the last segment catches a byte changed once shown.
    const std::span<const uint8_t> contiguous = prefix.contiguous();
    if (contiguous.size() > limit || contiguous.size() < shown || contiguous.size() != reference.contiguous_length() ||
        !reference.holds(shown, contiguous.subspan(shown)) ||
        prefix.memory_bytes() > limit + TcpStreamPrefix::kMaxRanges * kRangeBytes) {
      __builtin_trap();
    }
    if (prefix.conflict() != reference.conflict() || prefix.limit_exceeded() != reference.limit_exceeded() ||
        prefix.segments_dropped() != reference.dropped()) {
      __builtin_trap();
    }
    if (contiguous.size() != shown) {
      shown = contiguous.size();
      run_parsers(contiguous, verdicts);
    }
  }
  if (!reference.holds(0, prefix.contiguous())) {
    __builtin_trap();
  }
  return 0;
}
