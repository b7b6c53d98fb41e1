// DNS queries over TCP, read message by message whatever segments carry them: split, pipelined, retransmitted,
// overlapping, out of order, and within bounds.
#include "punt/dns_tcp_queries.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/dns_message.h"
#include "parsers/parse_result.h"

namespace portcullis::punt {
namespace {

using Bytes = std::vector<uint8_t>;
using Status = DnsTcpQueryStream::Status;

// Real queries: dig 9.18 (test/unit/parsers/dns_message_test.cpp has them with dnsmasq's answers).
// `dig cdn.allowed.test A`, with EDNS and a cookie.
constexpr std::string_view kQueryAEdns =
    "f6de012000010000000000010363646e07616c6c6f7765640474657374000001000100002904d000000000000c000a0008edb80aa48e27a8"
    "d5";
// `dig WWW.Allowed.Test A +noedns`.
constexpr std::string_view kQueryMixedCase = "2f1d012000010000000000000357575707416c6c6f77656404546573740000010001";

constexpr uint32_t kIsn = 0x10000;  // the first payload byte's sequence number, in most tests

Bytes from_hex(std::string_view hex) {
  Bytes bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return bytes;
}

// A query as a client writes it on TCP: its 2-byte length, then the message.
Bytes framed(std::string_view hex) {
  const Bytes message = from_hex(hex);
  Bytes bytes{static_cast<uint8_t>(message.size() >> 8), static_cast<uint8_t>(message.size())};
  bytes.insert(bytes.end(), message.begin(), message.end());
  return bytes;
}

Bytes concat(const Bytes& a, const Bytes& b) {
  Bytes bytes = a;
  bytes.insert(bytes.end(), b.begin(), b.end());
  return bytes;
}

std::span<const uint8_t> slice(const Bytes& bytes, size_t from, size_t to) {
  return std::span<const uint8_t>(bytes).subspan(from, to - from);
}

std::string name_of(const Bytes& message) {
  const parsers::DnsMessage query = parsers::parse_dns_message(message, parsers::DnsDirection::query);
  EXPECT_EQ(query.status, parsers::ParseStatus::found);
  return query.question.name;
}

// What one segment does for a caller that allows every message: add(), then release().
struct Added : DnsTcpQueryStream::Added {
  std::vector<uint64_t> released;
};

Added add(DnsTcpQueryStream& stream, uint32_t seq, std::span<const uint8_t> payload) {
  Added added{stream.add(seq, payload), {}};
  if (added.status == Status::read || added.status == Status::out_of_order) added.released = stream.release();
  return added;
}

TEST(DnsTcpQueryStream, AQueryInOneSegmentIsReadAndGoesOnAtOnce) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  const Added added = add(stream, kIsn, query);
  EXPECT_EQ(added.status, Status::read);
  ASSERT_EQ(added.messages.size(), 1u);
  EXPECT_EQ(added.messages[0], from_hex(kQueryAEdns)) << "the message, without its length";
  EXPECT_EQ(name_of(added.messages[0]), "cdn.allowed.test");
  EXPECT_EQ(added.released, std::vector<uint64_t>{added.segment});
  EXPECT_FALSE(stream.holds());
  EXPECT_EQ(stream.unjudged_bytes(), 0u);
}

TEST(DnsTcpQueryStream, AQuerySplitInTwoIsReadOnceWholeAndBothSegmentsGoTogether) {
  const Bytes query = framed(kQueryAEdns);
  const size_t cut = 20;
  DnsTcpQueryStream stream(kIsn);
  const Added first = add(stream, kIsn, slice(query, 0, cut));
  EXPECT_EQ(first.status, Status::read);
  EXPECT_TRUE(first.messages.empty());
  EXPECT_TRUE(first.released.empty()) << "its bytes are not judged yet";
  EXPECT_TRUE(stream.holds());
  EXPECT_EQ(stream.unjudged_bytes(), cut);

  const Added rest = add(stream, kIsn + cut, slice(query, cut, query.size()));
  ASSERT_EQ(rest.messages.size(), 1u);
  EXPECT_EQ(name_of(rest.messages[0]), "cdn.allowed.test");
  EXPECT_EQ(rest.released, (std::vector<uint64_t>{first.segment, rest.segment}));
  EXPECT_FALSE(stream.holds());
}

TEST(DnsTcpQueryStream, AQuerySplitInThreeIsReadOnlyWithItsLastByte) {
  // As a client writing the length on its own, then the message in two parts.
  const Bytes query = framed(kQueryMixedCase);
  DnsTcpQueryStream stream(kIsn);
  const Added length = add(stream, kIsn, slice(query, 0, 2));
  const Added head = add(stream, kIsn + 2, slice(query, 2, 30));
  EXPECT_TRUE(length.messages.empty());
  EXPECT_TRUE(head.messages.empty());
  EXPECT_TRUE(length.released.empty());
  EXPECT_TRUE(head.released.empty());
  EXPECT_EQ(stream.held(), (std::vector<uint64_t>{length.segment, head.segment}));

  const Added tail = add(stream, kIsn + 30, slice(query, 30, query.size()));
  ASSERT_EQ(tail.messages.size(), 1u);
  EXPECT_EQ(name_of(tail.messages[0]), "www.allowed.test");
  EXPECT_EQ(tail.released, (std::vector<uint64_t>{length.segment, head.segment, tail.segment}));
}

TEST(DnsTcpQueryStream, UntilReleasedTheSegmentsOfAWholeQueryAreHeldForACallerThatRefusesIt) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  const DnsTcpQueryStream::Added head = stream.add(kIsn, slice(query, 0, 20));
  EXPECT_TRUE(stream.release().empty());
  const DnsTcpQueryStream::Added tail = stream.add(kIsn + 20, slice(query, 20, query.size()));
  ASSERT_EQ(tail.messages.size(), 1u);
  // The query is refused: both segments meet the deny, the first in the stream first (its sequence number is the
  // one the server expects, for its reset).
  EXPECT_EQ(stream.held(), (std::vector<uint64_t>{head.segment, tail.segment}));
}

TEST(DnsTcpQueryStream, TwoPipelinedQueriesInOneSegmentAreBothRead) {
  const Bytes both = concat(framed(kQueryAEdns), framed(kQueryMixedCase));
  DnsTcpQueryStream stream(kIsn);
  const Added added = add(stream, kIsn, both);
  ASSERT_EQ(added.messages.size(), 2u);
  EXPECT_EQ(name_of(added.messages[0]), "cdn.allowed.test");
  EXPECT_EQ(name_of(added.messages[1]), "www.allowed.test");
  EXPECT_EQ(added.released, std::vector<uint64_t>{added.segment});
}

TEST(DnsTcpQueryStream, ASegmentEndingInsideTheNextQueryWaitsForIt) {
  const Bytes first = framed(kQueryAEdns);
  const Bytes both = concat(first, framed(kQueryMixedCase));
  const size_t cut = first.size() + 10;
  DnsTcpQueryStream stream(kIsn);
  const Added straddling = add(stream, kIsn, slice(both, 0, cut));
  ASSERT_EQ(straddling.messages.size(), 1u);
  EXPECT_EQ(name_of(straddling.messages[0]), "cdn.allowed.test");
  EXPECT_TRUE(straddling.released.empty()) << "it carries the start of a query not read yet";
  EXPECT_EQ(stream.unjudged_bytes(), 10u);

  const Added rest = add(stream, kIsn + cut, slice(both, cut, both.size()));
  ASSERT_EQ(rest.messages.size(), 1u);
  EXPECT_EQ(name_of(rest.messages[0]), "www.allowed.test");
  EXPECT_EQ(rest.released, (std::vector<uint64_t>{straddling.segment, rest.segment}));
}

TEST(DnsTcpQueryStream, ARetransmissionOfBytesReadGoesOnAgainWithoutBeingReadAgain) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  ASSERT_EQ(add(stream, kIsn, query).messages.size(), 1u);
  const Added again = add(stream, kIsn, query);
  EXPECT_EQ(again.status, Status::read);
  EXPECT_TRUE(again.messages.empty());
  EXPECT_EQ(again.released, std::vector<uint64_t>{again.segment});
  // The server keeps the bytes it received first: a copy that differs changes nothing it reads.
  Bytes altered = query;
  altered[20] ^= 0xff;
  const Added differing = add(stream, kIsn, altered);
  EXPECT_TRUE(differing.messages.empty());
  EXPECT_EQ(differing.released, std::vector<uint64_t>{differing.segment});
}

TEST(DnsTcpQueryStream, ARetransmissionOfBytesNotReadYetWaitsBehindTheFirstCopy) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  const Added head = add(stream, kIsn, slice(query, 0, 20));
  const Added again = add(stream, kIsn, slice(query, 0, 20));
  EXPECT_EQ(again.status, Status::read);
  EXPECT_TRUE(again.released.empty()) << "it would give the server part of a query not read";
  const Added tail = add(stream, kIsn + 20, slice(query, 20, query.size()));
  ASSERT_EQ(tail.messages.size(), 1u);
  EXPECT_EQ(tail.released, (std::vector<uint64_t>{head.segment, again.segment, tail.segment}));
}

TEST(DnsTcpQueryStream, ARetransmissionThatDiffersFromBytesNotReadYetIsAConflict) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  add(stream, kIsn, slice(query, 0, 30));
  Bytes altered(query.begin(), query.begin() + 30);
  altered[25] ^= 0x20;
  EXPECT_EQ(add(stream, kIsn + 10, slice(altered, 10, 30)).status, Status::conflict);
}

TEST(DnsTcpQueryStream, AnOverlapIsReadFromWhereTheStreamWasOnly) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  const Added head = add(stream, kIsn, slice(query, 0, 30));
  // Bytes 10 to the end: 10 to 30 again, then the rest.
  const Added overlapping = add(stream, kIsn + 10, slice(query, 10, query.size()));
  EXPECT_EQ(overlapping.status, Status::read);
  ASSERT_EQ(overlapping.messages.size(), 1u);
  EXPECT_EQ(overlapping.messages[0], from_hex(kQueryAEdns));
  EXPECT_EQ(overlapping.released, (std::vector<uint64_t>{head.segment, overlapping.segment}));
  EXPECT_EQ(stream.next_seq(), kIsn + query.size());
}

TEST(DnsTcpQueryStream, AnOverlapIntoBytesReadAddsOnlyItsNewBytes) {
  const Bytes both = concat(framed(kQueryAEdns), framed(kQueryMixedCase));
  const size_t first_end = framed(kQueryAEdns).size();
  DnsTcpQueryStream stream(kIsn);
  ASSERT_EQ(add(stream, kIsn, slice(both, 0, first_end)).messages.size(), 1u);
  // A segment repeating the first query's last 5 bytes and carrying the second.
  const Added overlapping = add(stream, kIsn + first_end - 5, slice(both, first_end - 5, both.size()));
  ASSERT_EQ(overlapping.messages.size(), 1u);
  EXPECT_EQ(name_of(overlapping.messages[0]), "www.allowed.test");
  EXPECT_EQ(overlapping.released, std::vector<uint64_t>{overlapping.segment});
}

TEST(DnsTcpQueryStream, ASegmentAfterAGapWaitsUntilTheGapFills) {
  const Bytes both = concat(framed(kQueryAEdns), framed(kQueryMixedCase));
  const size_t cut = 40;
  DnsTcpQueryStream stream(kIsn);
  const Added later = add(stream, kIsn + cut, slice(both, cut, both.size()));
  EXPECT_EQ(later.status, Status::out_of_order);
  EXPECT_TRUE(later.messages.empty());
  EXPECT_TRUE(later.released.empty());
  EXPECT_EQ(stream.unjudged_bytes(), both.size() - cut);

  const Added gap = add(stream, kIsn, slice(both, 0, cut));
  EXPECT_EQ(gap.status, Status::read);
  ASSERT_EQ(gap.messages.size(), 2u);
  EXPECT_EQ(name_of(gap.messages[0]), "cdn.allowed.test");
  EXPECT_EQ(name_of(gap.messages[1]), "www.allowed.test");
  EXPECT_EQ(gap.released, (std::vector<uint64_t>{later.segment, gap.segment})) << "in the order they came";
  EXPECT_EQ(stream.unjudged_bytes(), 0u);
}

TEST(DnsTcpQueryStream, SegmentsAfterAGapMustAgreeWhereTheyOverlap) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  EXPECT_EQ(add(stream, kIsn + 20, slice(query, 20, 40)).status, Status::out_of_order);
  Bytes altered = query;
  altered[35] ^= 0x01;
  EXPECT_EQ(add(stream, kIsn + 30, slice(altered, 30, query.size())).status, Status::conflict);
}

TEST(DnsTcpQueryStream, HeldSegmentsAreListedInStreamOrder) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn);
  const Added third = add(stream, kIsn + 30, slice(query, 30, 40));
  const Added first = add(stream, kIsn, slice(query, 0, 10));
  const Added again = add(stream, kIsn, slice(query, 0, 10));
  EXPECT_EQ(stream.held(), (std::vector<uint64_t>{first.segment, again.segment, third.segment}));
}

TEST(DnsTcpQueryStream, BytesFromBeforeTheFirstOneReadAreRefused) {
  const Bytes query = framed(kQueryAEdns);
  DnsTcpQueryStream stream(kIsn + 10);
  EXPECT_EQ(add(stream, kIsn, query).status, Status::before_start) << "the server would read them, nobody here did";
}

TEST(DnsTcpQueryStream, PastTheBoundsASegmentIsRefused) {
  {
    // After a gap: kMaxAheadBytes at most.
    DnsTcpQueryStream stream(kIsn);
    const Bytes chunk(DnsTcpQueryStream::kMaxAheadBytes / 4, 0);
    uint32_t seq = kIsn + 100;
    for (int i = 0; i < 4; ++i, seq += static_cast<uint32_t>(chunk.size())) {
      ASSERT_EQ(add(stream, seq, chunk).status, Status::out_of_order);
    }
    EXPECT_EQ(add(stream, seq, Bytes{0}).status, Status::over_bound);
  }
  {
    // kMaxHeldSegments at most: a long message sent a byte at a time would need more.
    Bytes long_message{0x01, 0x00};
    long_message.resize(2 + 256, 0x5a);
    DnsTcpQueryStream stream(kIsn);
    const size_t most = DnsTcpQueryStream::kMaxHeldSegments;
    for (size_t i = 0; i < most; ++i) {
      ASSERT_EQ(add(stream, kIsn + static_cast<uint32_t>(i), slice(long_message, i, i + 1)).status, Status::read);
    }
    EXPECT_EQ(add(stream, kIsn + static_cast<uint32_t>(most), slice(long_message, most, most + 1)).status,
              Status::over_bound);
  }
}

TEST(DnsTcpQueryStream, TheLongestMessageIsReadWithinTheBounds) {
  Bytes longest{0xff, 0xff};
  longest.resize(DnsTcpQueryStream::kMaxMessageBytes, 0x5a);
  DnsTcpQueryStream stream(kIsn);
  size_t at = 0;
  std::vector<std::vector<uint8_t>> messages;
  for (; at < longest.size(); at += 1448) {
    const size_t end = std::min(at + 1448, longest.size());
    const Added added = add(stream, kIsn + static_cast<uint32_t>(at), slice(longest, at, end));
    ASSERT_EQ(added.status, Status::read);
    messages.insert(messages.end(), added.messages.begin(), added.messages.end());
  }
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].size(), 65535u);
  EXPECT_FALSE(stream.holds());
}

TEST(DnsTcpQueryStream, ALongLivedConnectionIsNotBoundedAsAWhole) {
  // Far more than 64 KiB of queries, across the sequence numbers' wrap.
  const Bytes query = framed(kQueryMixedCase);
  const uint32_t isn = 0xffffffffU - 1000;
  DnsTcpQueryStream stream(isn);
  uint32_t seq = isn;
  size_t read = 0;
  for (int i = 0; i < 5000; ++i) {
    // Each query in two segments, the second sometimes before the first.
    const uint32_t cut = 7;
    const bool swapped = i % 3 == 0;
    const Added a =
        swapped ? add(stream, seq + cut, slice(query, cut, query.size())) : add(stream, seq, slice(query, 0, cut));
    const Added b =
        swapped ? add(stream, seq, slice(query, 0, cut)) : add(stream, seq + cut, slice(query, cut, query.size()));
    ASSERT_TRUE(a.messages.empty()) << i;
    ASSERT_EQ(b.messages.size(), 1u) << i;
    ASSERT_EQ(b.released.size(), 2u) << i;
    read += b.messages.size();
    seq += static_cast<uint32_t>(query.size());
  }
  EXPECT_EQ(read, 5000u);
  EXPECT_FALSE(stream.holds());
  // An old retransmission from before the wrap is still one of bytes read.
  EXPECT_EQ(add(stream, isn, query).status, Status::read);
}

}  // namespace
}  // namespace portcullis::punt
