// The DNS queries a client sends on one TCP connection whose queries the daemon reads (dns.filter_queries), message
// by message, each behind its 2-byte length (RFC 1035 4.2.2, RFC 7766 8), from the segments the data plane holds,
// in whatever order they come. Pure: it sees sequence numbers and payloads, never a frame or a policy, and says
// which messages each segment completes and which held segments may go on.
//
// The stream starts at the first payload byte seen. The caller judges every message add() returns; when all were
// allowed, release() says which segments may go on (a caller that refuses one refuses the connection, with the
// segments held(), and drops the stream). A segment goes on once all its bytes belong to allowed messages and no
// segment that came before it and still waits overlaps it: the server keeps the bytes it receives first, and they
// must be the ones that were read. Bytes not yet judged must agree wherever segments overlap; bytes already judged
// are not kept, and a retransmission of them goes on as it is.
//
// Bounds, all refusing the segment (the caller then refuses the connection): bytes not yet judged, at most one
// message being assembled (its length and up to 65535 bytes) and kMaxAheadBytes after a gap; kMaxHeldSegments
// segments held at once. The whole connection is not bounded: a long-lived one may carry any number of queries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace portcullis::punt {

class DnsTcpQueryStream {
 public:
  static constexpr size_t kMaxMessageBytes = 2 + 65535;  // a length prefix and the longest message it can announce
  static constexpr size_t kMaxAheadBytes = size_t{64} * 1024;  // bytes kept after a gap, until it fills
  static constexpr size_t kMaxHeldSegments = 64;

  enum class Status : uint8_t {
    read,          // in order, or a retransmission: `messages` holds what it completed
    out_of_order,  // after a gap: kept, read when the gap fills
    before_start,  // carries bytes from before the stream's first byte: they were never read
    conflict,      // differs from bytes received before and not yet judged
    over_bound,    // would keep more than the bounds allow
  };

  // Why a stream the reader refused (any status but read and out_of_order) is denied: the drop reason, and what
  // the log says of it.
  struct Refusal {
    uint32_t reason;
    const char* detail;
  };
  static Refusal refusal_of(Status status);

  struct Added {
    Status status = Status::read;
    // The segment's number, when it is held (read, out_of_order): release() and held() name segments by it.
    uint64_t segment = 0;
    // The messages completed, in stream order, without their length prefix.
    std::vector<std::vector<uint8_t>> messages;
  };

  // `first_seq`: the sequence number of the first payload byte seen (a SYN's plus one).
  explicit DnsTcpQueryStream(uint32_t first_seq);

  // A segment whose payload starts at sequence number `seq` (for a SYN with data, the SYN's plus one). A status other
  // than read and out_of_order leaves the stream of no further use.
  Added add(uint32_t seq, std::span<const uint8_t> payload);
  // Once every message returned so far was allowed: the held segments that may go on now, no longer held, in the
  // order to send them (the order they came in).
  std::vector<uint64_t> release();

  // The segments held, in stream order (those starting earliest first; for the same start, the first to come).
  [[nodiscard]] std::vector<uint64_t> held() const;
  [[nodiscard]] bool holds() const noexcept { return !held_.empty(); }
  // Bytes received and not judged yet: the message being assembled and what came after a gap.
  [[nodiscard]] size_t unjudged_bytes() const noexcept { return partial_.size() + ahead_bytes_; }
  // The sequence number of the next byte in order.
  [[nodiscard]] uint32_t next_seq() const noexcept { return next_seq_; }

 private:
  struct Held {
    uint64_t segment;
    uint32_t begin;  // sequence numbers, end exclusive
    uint32_t end;
  };
  struct Ahead {
    uint32_t begin;
    std::vector<uint8_t> bytes;
  };

  [[nodiscard]] bool matches_unjudged(uint32_t begin, std::span<const uint8_t> bytes) const;
  void append(uint32_t begin, std::span<const uint8_t> bytes);
  void take_ahead();
  std::vector<std::vector<uint8_t>> take_messages();

  uint32_t first_seq_;      // bytes before it were never read
  uint32_t message_start_;  // the first byte not judged: every byte before it belongs to a returned message
  uint32_t next_seq_;
  std::vector<uint8_t> partial_;  // bytes from message_start_ to next_seq_
  std::vector<Ahead> ahead_;      // after a gap
  size_t ahead_bytes_ = 0;
  std::vector<Held> held_;  // in the order they came
  uint64_t next_segment_ = 0;
};

}  // namespace portcullis::punt
