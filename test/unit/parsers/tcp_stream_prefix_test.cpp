#include "parsers/tcp_stream_prefix.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace portcullis::parsers {
namespace {

using Bytes = std::vector<uint8_t>;

// Bytes 0, 1, 2, ... so any misplaced byte shows.
Bytes stream_bytes(size_t length) {
  Bytes bytes(length);
  std::iota(bytes.begin(), bytes.end(), uint8_t{0});
  return bytes;
}

Bytes slice(const Bytes& bytes, size_t begin, size_t end) {
  return {bytes.begin() + begin, bytes.begin() + end};
}

Bytes contiguous(const TcpStreamPrefix& prefix) {
  return {prefix.contiguous().begin(), prefix.contiguous().end()};
}

constexpr uint32_t kFirstSeq = 1000;

TEST(TcpStreamPrefix, IsEmptyBeforeAnyData) {
  const TcpStreamPrefix prefix(kFirstSeq);
  EXPECT_TRUE(prefix.contiguous().empty());
  EXPECT_FALSE(prefix.conflict());
  EXPECT_FALSE(prefix.limit_exceeded());
  EXPECT_EQ(prefix.memory_bytes(), 0u);
}

TEST(TcpStreamPrefix, CollectsInOrderSegments) {
  const Bytes data = stream_bytes(300);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  prefix.add_segment(kFirstSeq + 100, slice(data, 100, 300));
  EXPECT_EQ(contiguous(prefix), data);
}

TEST(TcpStreamPrefix, ReordersOutOfOrderSegmentsAndStopsAtTheFirstHole) {
  const Bytes data = stream_bytes(300);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq + 200, slice(data, 200, 300));
  EXPECT_TRUE(prefix.contiguous().empty());
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  EXPECT_EQ(contiguous(prefix), slice(data, 0, 100));
  prefix.add_segment(kFirstSeq + 100, slice(data, 100, 200));
  EXPECT_EQ(contiguous(prefix), data);
}

TEST(TcpStreamPrefix, IgnoresIdenticalRetransmissions) {
  const Bytes data = stream_bytes(200);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  prefix.add_segment(kFirstSeq + 100, slice(data, 100, 200));
  prefix.add_segment(kFirstSeq + 50, slice(data, 50, 150));
  EXPECT_EQ(contiguous(prefix), data);
  EXPECT_FALSE(prefix.conflict());
}

TEST(TcpStreamPrefix, AcceptsSegmentSpanningSeveralReceivedRangesWithSameBytes) {
  const Bytes data = stream_bytes(400);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq + 50, slice(data, 50, 100));
  prefix.add_segment(kFirstSeq + 200, slice(data, 200, 250));
  prefix.add_segment(kFirstSeq, data);
  EXPECT_EQ(contiguous(prefix), data);
  EXPECT_FALSE(prefix.conflict());
}

TEST(TcpStreamPrefix, FlagsConflictWhenOverlappingBytesDiffer) {
  const Bytes data = stream_bytes(200);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  Bytes rewritten = slice(data, 50, 150);
  rewritten[10] ^= 0xff;  // stream offset 60, already received
  prefix.add_segment(kFirstSeq + 50, rewritten);
  EXPECT_TRUE(prefix.conflict());
}

TEST(TcpStreamPrefix, FlagsConflictAgainstOutOfOrderDataToo) {
  const Bytes data = stream_bytes(300);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq + 200, slice(data, 200, 300));
  Bytes rewritten = slice(data, 150, 250);
  rewritten.back() ^= 0x01;
  prefix.add_segment(kFirstSeq + 150, rewritten);
  EXPECT_TRUE(prefix.conflict());
}

TEST(TcpStreamPrefix, ConflictIsStickyAndFreezesThePrefix) {
  const Bytes data = stream_bytes(200);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  prefix.add_segment(kFirstSeq, Bytes(100, 0xee));
  ASSERT_TRUE(prefix.conflict());
  prefix.add_segment(kFirstSeq + 100, slice(data, 100, 200));
  EXPECT_TRUE(prefix.conflict());
  EXPECT_EQ(contiguous(prefix), slice(data, 0, 100));
}

TEST(TcpStreamPrefix, FollowsSequenceNumbersAcrossWrapAround) {
  const Bytes data = stream_bytes(64);
  const uint32_t first_seq = 0xffffffe0;  // 32 bytes before the wrap
  TcpStreamPrefix prefix(first_seq);
  prefix.add_segment(first_seq + 40, slice(data, 40, 64));  // seq 8, after the wrap
  prefix.add_segment(first_seq, slice(data, 0, 40));        // crosses the wrap
  EXPECT_EQ(contiguous(prefix), data);
}

TEST(TcpStreamPrefix, SynPayloadStartsAtIsnPlusOne) {
  const Bytes data = stream_bytes(150);
  const uint32_t isn = 0x12345678;
  TcpStreamPrefix prefix(isn + 1);
  prefix.add_segment(isn, slice(data, 0, 100), true);  // TCP Fast Open data on the SYN
  prefix.add_segment(isn + 101, slice(data, 100, 150));
  EXPECT_EQ(contiguous(prefix), data);
}

TEST(TcpStreamPrefix, IgnoresBytesBeforeTheStreamStart) {
  const Bytes data = stream_bytes(100);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq - 20, Bytes(10, 0xaa));  // wholly before the start
  EXPECT_TRUE(prefix.contiguous().empty());
  Bytes straddling(10 + data.size(), 0xbb);  // 10 bytes before the start, then the stream itself
  std::ranges::copy(data, straddling.begin() + 10);
  prefix.add_segment(kFirstSeq - 10, straddling);
  EXPECT_EQ(contiguous(prefix), data);
  EXPECT_FALSE(prefix.conflict());
}

TEST(TcpStreamPrefix, KeepsBytesUpToTheLimitAndReportsTheExcess) {
  const Bytes data = stream_bytes(150);
  TcpStreamPrefix prefix(kFirstSeq, 100);
  prefix.add_segment(kFirstSeq, slice(data, 0, 100));
  EXPECT_FALSE(prefix.limit_exceeded());
  prefix.add_segment(kFirstSeq + 90, slice(data, 90, 150));
  EXPECT_TRUE(prefix.limit_exceeded());
  EXPECT_EQ(contiguous(prefix), slice(data, 0, 100));
}

TEST(TcpStreamPrefix, SegmentWhollyBeyondTheLimitIsDroppedAndReported) {
  TcpStreamPrefix prefix(kFirstSeq, 100);
  prefix.add_segment(kFirstSeq + 100, stream_bytes(10));
  EXPECT_TRUE(prefix.limit_exceeded());
  EXPECT_EQ(prefix.memory_bytes(), 0u);
}

TEST(TcpStreamPrefix, DefaultLimitIs64KiB) {
  const Bytes data = stream_bytes(TcpStreamPrefix::kDefaultLimit + 1);
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq, data);
  EXPECT_TRUE(prefix.limit_exceeded());
  EXPECT_EQ(prefix.contiguous().size(), 64u * 1024);
}

TEST(TcpStreamPrefix, MemoryUseStaysWithinTheLimit) {
  const uint32_t limit = 10000;
  TcpStreamPrefix prefix(kFirstSeq, limit);
  const Bytes segment(100, 0x42);
  for (uint32_t offset = 0; offset < limit; offset += 300) {  // every third segment, out of order
    prefix.add_segment(kFirstSeq + limit - 100 - offset, segment);
  }
  EXPECT_GT(prefix.memory_bytes(), 0u);
  EXPECT_LE(prefix.memory_bytes(), limit + TcpStreamPrefix::kMaxRanges * 8);
}

TEST(TcpStreamPrefix, DropsSegmentsThatWouldExceedTheRangeCountUntilHolesFill) {
  const Bytes data = stream_bytes(2 * TcpStreamPrefix::kMaxRanges + 2);
  TcpStreamPrefix prefix(kFirstSeq);
  for (size_t range = 0; range <= TcpStreamPrefix::kMaxRanges; ++range) {  // one byte, then a hole
    const size_t offset = 2 * range + 1;
    prefix.add_segment(kFirstSeq + static_cast<uint32_t>(offset), slice(data, offset, offset + 1));
  }
  EXPECT_EQ(prefix.segments_dropped(), 1u);
  prefix.add_segment(kFirstSeq, data);  // the retransmission fills every hole
  EXPECT_EQ(contiguous(prefix), data);
  EXPECT_FALSE(prefix.conflict());
}

TEST(TcpStreamPrefix, IgnoresEmptySegments) {
  TcpStreamPrefix prefix(kFirstSeq);
  prefix.add_segment(kFirstSeq, {});
  prefix.add_segment(kFirstSeq, {}, true);
  EXPECT_TRUE(prefix.contiguous().empty());
  EXPECT_EQ(prefix.memory_bytes(), 0u);
}

}  // namespace
}  // namespace portcullis::parsers
