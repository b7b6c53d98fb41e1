#include "punt/punt_handler.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <utility>

#include "dataplane/frame_fields.h"
#include "parsers/dns_message.h"
#include "portcullis/compat.h"
#include "portcullis/parse.h"
#include "punt/frame_offloads.h"
#include "punt/monotonic_clock.h"

namespace portcullis::punt {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
// Verdicts are remembered this long after a decision, for frames punted before the data plane saw it.
constexpr uint64_t kDecidedMemoryNs = 10'000'000'000ULL;
// Largest client prefix kept per TCP flow: a 16 KiB ClientHello in records, or an 8 KiB request head.
constexpr uint32_t kStreamLimit = 20 * 1024;
constexpr size_t kMaxErrors = 16;
// A DNS-over-TCP connection's answers are forgotten this long after its last segment.
constexpr uint64_t kAnswerStreamIdleNs = 30'000'000'000ULL;
// A DNS-over-TCP connection's queries are forgotten this long after its last segment, when it holds none.
constexpr uint64_t kQueryStreamIdleNs = 30'000'000'000ULL;

using dataplane::address_of;
using dataplane::payload_of;
using dataplane::tcp_seq;

policy::L4Proto l4_of(const pc_packet& pkt) {
  if (pkt.proto == kTcp) return policy::L4Proto::tcp;
  if (pkt.proto == kUdp) return policy::L4Proto::udp;
  return pkt.family == PC_FAMILY_IPV6 ? policy::L4Proto::icmpv6 : policy::L4Proto::icmp;
}

// Counts `since_ns` to now, in microseconds, in one of PuntStats' histograms.
void record_elapsed(uint64_t since_ns, uint64_t (&buckets)[std::size(PuntStats::kLatencyBoundsUs) + 1],
                    uint64_t& sum_us) {
  const uint64_t now = monotonic_ns();
  const uint64_t us = now > since_ns ? (now - since_ns) / 1000 : 0;
  size_t bucket = 0;
  while (bucket < std::size(PuntStats::kLatencyBoundsUs) && us > PuntStats::kLatencyBoundsUs[bucket]) ++bucket;
  ++buckets[bucket];
  sum_us += us;
}

// Sequence numbers compare modulo 2^32.
bool seq_before(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) < 0;
}

}  // namespace

PuntHandler::PuntHandler(int punts_fd, int flows_fd, int punt_config_fd, policy::Mode mode, PuntSettings settings,
                         Logger logger)
    : flows_fd_(flows_fd),
      punt_config_fd_(punt_config_fd),
      mode_(mode),
      settings_(settings),
      logger_(std::move(logger)),
      reinjector_(mode) {
  ring_ = ring_buffer__new(punts_fd, &PuntHandler::on_sample, this, nullptr);
  if (ring_ == nullptr) {
    throw std::runtime_error(std::string("cannot map the pc_punts ring buffer: ") + std::strerror(errno));
  }
}

PuntHandler::~PuntHandler() {
  ring_buffer__free(ring_);
}

void PuntHandler::set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, uint32_t generation) {
  policy_ = std::move(policy);
  generation_ = generation;
  const policy::DnsSettings& dns = policy_->policy().dns;
  bindings_.set_limits({.min_ttl = dns.min_ttl, .max_ttl = dns.max_ttl, .max_bindings = 1 << 18});
  if (bound_names_) {
    bound_names_->set_policy(policy_, bindings_);
    stats_.bound_names = bound_names_->size();
  }
}

void PuntHandler::keep_bound_names(int bound_names_fd) {
  pc_bound_key stale{};
  while (bpf_map_get_next_key(bound_names_fd, nullptr, &stale) == 0 &&
         bpf_map_delete_elem(bound_names_fd, &stale) == 0) {
  }
  bound_names_ = std::make_unique<BoundNameTable>([bound_names_fd](const pc_bound_key& key, const pc_bound_name* name) {
    return name == nullptr ? bpf_map_delete_elem(bound_names_fd, &key) == 0 || errno == ENOENT
                           : bpf_map_update_elem(bound_names_fd, &key, name, BPF_ANY) == 0;
  });
  bindings_.observe([this](std::optional<size_t> group, const std::vector<std::string>& names,
                           const policy::IpAddress& address, uint32_t /*ttl*/,
                           uint64_t expires_ns) { bound_names_->on_bound(group, names, address, expires_ns); });
  if (policy_) bound_names_->set_policy(policy_, bindings_);
}

int PuntHandler::fd() const {
  return ring_buffer__epoll_fd(ring_);
}

void PuntHandler::consume() {
  ring_buffer__consume(ring_);
  if (draining_.empty()) return;
  finish_draining();
  // Frames punted while the verdicts went in: out at once, before much can overtake them.
  ring_buffer__consume(ring_);
}

// The ring was empty a moment ago: every frame the draining flows punted before it has been released, so
// their later packets may go straight through. What they punt in between is released when it is read.
void PuntHandler::finish_draining() {
  for (const auto& [key, done] : draining_) {
    pc_flow value{};
    if (bpf_map_lookup_elem(flows_fd_, &key, &value) != 0 || value.verdict != PC_VERDICT_DRAINING) continue;
    value.verdict = PC_VERDICT_ALLOW;
    value.rule_id = done.rule_id;
    value.reason = done.reason;
    value.generation = done.generation;
    value.held_bytes = 0;
    if (bpf_map_update_elem(flows_fd_, &key, &value, BPF_EXIST) != 0) {
      error(std::string("cannot install a verdict in the flow table: ") + std::strerror(errno));
    }
  }
  draining_.clear();
}

int PuntHandler::on_sample(void* context, void* data, size_t size) {
  auto* self = static_cast<PuntHandler*>(context);
  pc_punt_header header{};
  if (size < sizeof(header)) {
    ++self->stats_.malformed;
    return 0;
  }
  std::memcpy(&header, data, sizeof(header));
  const auto* bytes = static_cast<const uint8_t*>(data) + sizeof(header);
  const size_t length = std::min<size_t>(header.len, size - sizeof(header));
  self->on_frame(header, std::span<const uint8_t>(bytes, length));
  return 0;
}

// Whether the data plane holds the flow as pending: after a verdict was installed, only a new flow on the
// same addresses and ports (a reopened connection) is.
bool PuntHandler::pending_in_data_plane(const pc_flow_key& key) {
  pc_flow value{};
  if (bpf_map_lookup_elem(flows_fd_, &key, &value) != 0 || value.verdict != PC_VERDICT_PENDING) return false;
  decided_.erase(key);
  return true;
}

void PuntHandler::on_answer(const pc_punt_header& header, std::span<const uint8_t> frame) {
  // A DNS answer on its way to a client, held: what it binds is installed before the client can read it and
  // open a flow. Then it goes on, whatever it held: the resolver is one the policy allows, and the client's
  // flows are what the policy judges. A datagram that is no answer that parses is dropped (the client asks
  // again); over TCP a segment goes on all the same, as dropping it would only have it sent again.
  pc_packet answer{};
  bool goes_on = true;
  if (pc_parse_packet(frame.data(), frame.data() + frame.size(), &answer) != PC_DROP_NONE) {
    ++stats_.dns_malformed;
    goes_on = false;
  } else if (policy_ && answer.proto == kTcp) {
    learn_from_tcp_answer(answer, frame);
  } else if (policy_) {
    const std::optional<size_t> made = learn_from_message(bindings_, *policy_, payload_of(answer, frame),
                                                          address_of(answer.dst, answer.family), monotonic_ns());
    ++(made ? stats_.dns_answers : stats_.dns_malformed);
    goes_on = made.has_value();
    stats_.dns_bindings = bindings_.size();
  }
  if (bound_names_) stats_.bound_names = bound_names_->size();
  if (!goes_on) {
    ++stats_.dropped;
    return;
  }
  std::vector<uint8_t> bytes(frame.begin(), frame.end());
  if (std::string problem =
          reinjector_.pass_answer(header.ifindex, bytes, header.gso_size, header.path == PC_PUNT_ANSWER_EGRESS);
      !problem.empty()) {
    ++stats_.send_errors;
    error(problem);
  }
  record_elapsed(header.timestamp_ns, stats_.answer_hold_us, stats_.answer_hold_sum_us);
}

// DNS over TCP: the answer direction's bytes are put back in order, and every whole message in them is read.
// Bounded: a connection's first 64 KiB of answers, and a connection quiet for 30 s is forgotten.
void PuntHandler::learn_from_tcp_answer(const pc_packet& pkt, std::span<const uint8_t> frame) {
  const DnsTcpAnswers::Learned learned = tcp_answers_.add(bindings_, *policy_, pkt, frame, monotonic_ns());
  stats_.dns_answers += learned.answers;
  stats_.dns_malformed += learned.malformed + (learned.unreadable ? 1 : 0);
  stats_.dns_bindings = bindings_.size();
}

void PuntHandler::on_pending_event(const pc_verdict_event& event) {
  pc_flow_key key{};
  uint8_t direction = 0;
  pc_flow_key_fill(&key, event.family, event.proto, &event.src, event.sport, &event.dst,
                   (event.proto == kTcp || event.proto == kUdp) ? event.dport : 0, &direction);
  // A new flow on the addresses and ports of one decided before (a reopened connection): decided afresh.
  decided_.erase(key);
  if (event.proto != kTcp && event.proto != kUdp) return;  // ICMP flows have their type in dport: found by punt
  if (pending_.contains(key)) return;
  PendingFlow& flow = pending_[key];
  flow.event = event;
  flow.facts.src = address_of(event.src, event.family);
  flow.facts.dst = address_of(event.dst, event.family);
  flow.facts.proto = event.proto == kTcp ? policy::L4Proto::tcp : policy::L4Proto::udp;
  flow.facts.dport = event.dport;
  const uint32_t timeout_ms = policy_ ? policy_->policy().defaults.l7_timeout_ms : 1000;
  flow.deadline_ns = event.timestamp_ns + static_cast<uint64_t>(timeout_ms) * 1'000'000ULL;
  stats_.pending_flows = pending_.size();
}

PuntHandler::PendingFlow& PuntHandler::pending_flow(const pc_flow_key& key, const pc_packet& pkt, uint64_t now) {
  auto [it, created] = pending_.try_emplace(key);
  PendingFlow& flow = it->second;
  if (!created) return flow;
  // A flow whose pending event was lost (or that this daemon adopted): it starts now.
  describe(flow, pkt, now);
  stats_.pending_flows = pending_.size();
  return flow;
}

void PuntHandler::describe(PendingFlow& flow, const pc_packet& pkt, uint64_t now) const {
  flow.facts.src = address_of(pkt.src, pkt.family);
  flow.facts.dst = address_of(pkt.dst, pkt.family);
  flow.facts.proto = l4_of(pkt);
  flow.facts.dport = pkt.dport;
  flow.facts.icmp_type = pkt.icmp_type;
  flow.event.timestamp_ns = now;
  flow.event.src = pkt.src;
  flow.event.dst = pkt.dst;
  flow.event.sport = pkt.sport;
  flow.event.dport = (pkt.proto == kTcp || pkt.proto == kUdp) ? pkt.dport : pkt.icmp_type;
  flow.event.family = pkt.family;
  flow.event.proto = pkt.proto;
  const uint32_t timeout_ms = policy_ ? policy_->policy().defaults.l7_timeout_ms : 1000;
  flow.deadline_ns = now + static_cast<uint64_t>(timeout_ms) * 1'000'000ULL;
}

// A DNS query on a flow the data plane has the daemon read (dns.filter_queries): it may go on when some rule of the
// client's could allow the name it asks for.
PuntHandler::QueryJudgement PuntHandler::judge_query(std::span<const uint8_t> message,
                                                     const policy::IpAddress& client) {
  ++stats_.dns_queries;
  QueryJudgement judged;
  judged.identity = identify_dns_query(message);
  if (judged.identity.name) {
    judged.go_on = policy_ && policy_->name_could_be_allowed(*judged.identity.name, policy_->group_of(client));
    judged.reason = judged.go_on ? PC_DROP_NONE : PC_DROP_QUERY_FILTERED;
  } else {
    judged.reason = PC_DROP_L7_MALFORMED;
  }
  count_outcome("dns", judged.identity);
  if (!judged.go_on) ++stats_.dns_filtered;
  return judged;
}

// An inspected flow as the log and a deny see it: described by the client's packet, in its group's scope.
PuntHandler::PendingFlow PuntHandler::inspected_flow(const pc_packet& pkt) const {
  PendingFlow flow;
  describe(flow, pkt, monotonic_ns());
  const std::optional<size_t> group = policy_ ? policy_->group_of(flow.facts.src) : std::nullopt;
  flow.event.scope = group ? dataplane::group_scope(*group) : PC_SCOPE_TOP_LEVEL;
  return flow;
}

// A UDP query that may not go on is answered NXDOMAIN here and never reaches the resolver.
void PuntHandler::inspect_udp_query(const pc_packet& pkt, HeldFrame& held) {
  const std::span<const uint8_t> frame = held.bytes;
  const std::span<const uint8_t> payload = payload_of(pkt, frame);
  const QueryJudgement judged = judge_query(payload, address_of(pkt.src, pkt.family));
  if (judged.go_on) return release(held);
  if (judged.reason == PC_DROP_QUERY_FILTERED) {
    const std::optional<std::vector<uint8_t>> nxdomain = parsers::synthesize_nxdomain(payload);
    std::optional<std::vector<uint8_t>> reply = nxdomain ? udp_reply_to_client(frame, *nxdomain) : std::nullopt;
    if (reply) {
      if (std::string problem = reinjector_.deliver(held.ifindex, *reply); !problem.empty()) error(problem);
    }
  }
  PendingFlow flow = inspected_flow(pkt);
  flow.frames.push_back(std::move(held));  // for the log's record of the query
  log(flow, PC_VERDICT_DENY, judged.reason, PC_RULE_NONE, judged.identity);
}

// DNS over TCP: the client's stream is read message by message, whatever segments carry it (DnsTcpQueryStream). A
// segment goes on once every byte it carries belongs to queries that may go on; until then it is held, and so the
// server never has a whole query that was not read. The first query that may not go on, or bytes that cannot be
// read, reset the connection: a query cannot be answered within its stream from here.
void PuntHandler::inspect_tcp_queries(const pc_flow_key& key, const pc_packet& pkt, HeldFrame& held,
                                      uint64_t flow_first_seen_ns) {
  const std::optional<uint32_t> seq = tcp_seq(pkt, held.bytes);
  if (!seq) {
    ++stats_.malformed;  // and dropped: the client sends it again
    return;
  }
  const uint32_t data_seq = (pkt.tcp_flags & PC_TCP_SYN) != 0 ? *seq + 1 : *seq;
  auto stream = tcp_queries_.find(key);
  if (stream != tcp_queries_.end() && stream->second.flow_first_seen_ns != flow_first_seen_ns) {
    // Another connection on the same addresses and ports: what the last one held goes nowhere.
    stats_.dropped += stream->second.frames.size();
    stats_.held_bytes -= stream->second.held_bytes;
    tcp_queries_.erase(stream);
    stream = tcp_queries_.end();
  }
  if (stream == tcp_queries_.end()) stream = tcp_queries_.try_emplace(key, data_seq, pkt, flow_first_seen_ns).first;
  QueryStream& queries = stream->second;
  queries.last_ns = monotonic_ns();
  const uint32_t next_seq = queries.queries.next_seq();
  const DnsTcpQueryStream::Added added = queries.queries.add(data_seq, payload_of(pkt, held.bytes));
  if (added.status != DnsTcpQueryStream::Status::read && added.status != DnsTcpQueryStream::Status::out_of_order) {
    const DnsTcpQueryStream::Refusal refusal = DnsTcpQueryStream::refusal_of(added.status);
    FlowIdentity unread;
    unread.state = FlowIdentity::State::malformed;
    unread.l7 = policy::L7Proto::dns;
    unread.detail = refusal.detail;
    ++stats_.dns_filtered;
    return deny_queries(key, std::move(held), refusal.reason, unread);
  }
  queries.held_bytes += held.bytes.size();
  stats_.held_bytes += held.bytes.size();
  queries.frames.emplace_back(added.segment, std::move(held));
  if (stats_.held_bytes > settings_.total_hold_bytes) {
    FlowIdentity unread;
    unread.l7 = policy::L7Proto::dns;
    ++stats_.dns_filtered;
    return deny_queries(key, std::nullopt, PC_DROP_HOLD_MEMORY, unread);
  }
  const policy::IpAddress client = address_of(pkt.src, pkt.family);
  for (const std::vector<uint8_t>& message : added.messages) {
    const QueryJudgement judged = judge_query(message, client);
    if (!judged.go_on) return deny_queries(key, std::nullopt, judged.reason, judged.identity);
  }
  if (added.messages.empty() && queries.queries.next_seq() != next_seq) {
    FlowIdentity incomplete;  // need_more: the parser waits for the rest of the message
    incomplete.l7 = policy::L7Proto::dns;
    count_outcome("dns", incomplete);
  }
  for (const uint64_t segment : queries.queries.release()) {
    const auto frame = std::ranges::find(queries.frames, segment, &std::pair<uint64_t, HeldFrame>::first);
    release(frame->second);
    queries.held_bytes -= frame->second.bytes.size();
    stats_.held_bytes -= frame->second.bytes.size();
    queries.frames.erase(frame);
  }
}

// Refuses a DNS-over-TCP connection: its held frames, in stream order and then `refused` (the frame that could not be
// read), meet the deny as a pending flow's do, and its stream is forgotten. Frames of it still on their way to the
// daemon are dropped.
void PuntHandler::deny_queries(const pc_flow_key& key, std::optional<HeldFrame> refused, uint32_t reason,
                               const FlowIdentity& identity) {
  const auto stream = tcp_queries_.find(key);
  if (stream == tcp_queries_.end()) return;
  QueryStream& queries = stream->second;
  PendingFlow flow = inspected_flow(queries.client);
  for (const uint64_t segment : queries.queries.held()) {
    const auto frame = std::ranges::find(queries.frames, segment, &std::pair<uint64_t, HeldFrame>::first);
    flow.frames.push_back(std::move(frame->second));
  }
  if (refused) flow.frames.push_back(std::move(*refused));
  stats_.held_bytes -= queries.held_bytes;
  tcp_queries_.erase(stream);
  deny(key, flow, reason, identity);
  decided_[key] = Decided{false, monotonic_ns() + kDecidedMemoryNs};
}

void PuntHandler::on_frame(const pc_punt_header& header, std::span<const uint8_t> frame) {
  if (header.path == PC_PUNT_DENIED) {
    if (denied_sink_) denied_sink_(frame, header.timestamp_ns);
    return;
  }
  if (header.path == PC_PUNT_ANSWER || header.path == PC_PUNT_ANSWER_EGRESS) return on_answer(header, frame);
  ++stats_.frames;
  pc_packet pkt{};
  pc_flow_key key{};
  uint8_t direction = 0;
  if (pc_parse_packet(frame.data(), frame.data() + frame.size(), &pkt) != PC_DROP_NONE ||
      pc_flow_key_from_packet(&pkt, &key, &direction) < 0) {
    ++stats_.malformed;  // and dropped: its flow, if any, times out
    return;
  }
  HeldFrame held{std::vector<uint8_t>(frame.begin(), frame.end()), header.ifindex, header.gso_size,
                 header.timestamp_ns};
  if ((pkt.proto == kUdp || pkt.proto == kTcp) && pkt.dport == 53) {
    pc_flow state{};
    if (bpf_map_lookup_elem(flows_fd_, &key, &state) == 0 && state.verdict == PC_VERDICT_INSPECT) {
      if (pkt.proto == kUdp) return inspect_udp_query(pkt, held);
      return inspect_tcp_queries(key, pkt, held, state.first_seen_ns);
    }
  }
  if (const auto decided = decided_.find(key); decided != decided_.end() && !pending_in_data_plane(key)) {
    // Punted before the data plane saw the verdict: goes the way of the flow.
    if (decided->second.allow) {
      ++stats_.late_released;
      release(held);
    } else {
      ++stats_.dropped;
    }
    return;
  }
  const uint64_t now = monotonic_ns();
  PendingFlow& flow = pending_flow(key, pkt, now);
  flow.frames.push_back(std::move(held));
  flow.held_bytes += frame.size();
  stats_.held_bytes += frame.size();
  if (stats_.held_bytes > settings_.total_hold_bytes) return deny(key, flow, PC_DROP_HOLD_MEMORY, {});
  if (flow.held_bytes > settings_.flow_hold_bytes) return deny(key, flow, PC_DROP_HOLD_LIMIT, {});
  if (pkt.proto == kTcp && (pkt.tcp_flags & (PC_TCP_SYN | PC_TCP_ACK)) == PC_TCP_SYN) {
    // Held from its SYN (other SYNs come here only with data: TCP Fast Open): a connection that may be an FTP
    // data connection, which the kernel's expectations decide, or one the data plane would have allowed to an
    // address bound to a name a deny rule names, which that address's bound names decide.
    pc_flow state{};
    const bool known = bpf_map_lookup_elem(flows_fd_, &key, &state) == 0;
    if (known && state.reason == PC_DROP_AWAITS_EXPECTATION) return decide_expected(key, flow);
    if (known && state.reason == PC_DROP_BOUND_NAME) return decide_at_syn(key, flow);
  }

  if (pkt.proto == kUdp && !pkt.is_fragment) {
    const std::span<const uint8_t> datagram = payload_of(pkt, frame);
    if (!flow.quic && flow.frames.size() == 1 && starts_quic_long_header(datagram)) {
      flow.quic = std::make_unique<parsers::QuicClientHelloReader>(quic_decryptor_);
    }
    if (flow.quic) {
      // Held until the ClientHello is complete: Chrome's post-quantum one spans two Initials.
      const FlowIdentity identity = identify_quic(flow.quic->add_datagram(datagram));
      count_outcome("quic", identity);
      if (identity.state != FlowIdentity::State::need_more) decide(key, flow, identity);
      return;
    }
  }
  if (pkt.proto != kTcp) {
    // A datagram that is no QUIC Initial, or an ICMP message: nothing more will come before the verdict.
    // Names for them come from DNS bindings.
    FlowIdentity identity;
    identity.state = FlowIdentity::State::unknown;
    return decide(key, flow, identity);
  }
  if (!add_segment(flow, pkt, frame)) {
    FlowIdentity identity;
    identity.state = FlowIdentity::State::malformed;
    identity.detail = "overlapping segments differ";
    return deny(key, flow, PC_DROP_STREAM_CONFLICT, identity);
  }
  const FlowIdentity identity = identify_tcp_stream(flow.stream->contiguous());
  count_outcome(identity.l7 == policy::L7Proto::none ? "tcp" : policy::to_string(identity.l7), identity);
  if (identity.state != FlowIdentity::State::need_more) return decide(key, flow, identity);
  if (flow.stream->limit_exceeded()) {
    FlowIdentity unread = identity;
    unread.state = FlowIdentity::State::malformed;
    unread.detail = "no message within the stream limit";
    deny(key, flow, PC_DROP_L7_MALFORMED, unread);
  }
}

bool PuntHandler::add_segment(PendingFlow& flow, const pc_packet& pkt, std::span<const uint8_t> frame) {
  const std::optional<uint32_t> segment_seq = tcp_seq(pkt, frame);
  if (!segment_seq) return true;
  const uint32_t seq = *segment_seq;
  const bool syn = (pkt.tcp_flags & PC_TCP_SYN) != 0;
  const uint32_t start = syn ? seq + 1 : seq;
  if (!flow.stream || (!syn && seq_before(start, flow.stream_start))) {
    // The first segment held, or one from before it (held frames can arrive out of order): the stream
    // starts here, and every segment held so far is added again.
    flow.stream_start = start;
    flow.stream.emplace(start, kStreamLimit);
    for (const HeldFrame& held : flow.frames) {
      pc_packet earlier{};
      if (pc_parse_packet(held.bytes.data(), held.bytes.data() + held.bytes.size(), &earlier) != PC_DROP_NONE) {
        continue;
      }
      if (const std::optional<uint32_t> earlier_seq = tcp_seq(earlier, held.bytes)) {
        flow.stream->add_segment(*earlier_seq, payload_of(earlier, held.bytes), (earlier.tcp_flags & PC_TCP_SYN) != 0);
      }
    }
    return !flow.stream->conflict();
  }
  flow.stream->add_segment(seq, payload_of(pkt, frame), syn);
  return !flow.stream->conflict();
}

void PuntHandler::decide(const pc_flow_key& key, PendingFlow& flow, const FlowIdentity& identity) {
  if (!policy_) return deny(key, flow, PC_DROP_DENIED_BY_DEFAULT, identity);
  apply_verdict(key, flow, identity,
                decide_with_bindings(*policy_, mode_, flow.facts, identity, bindings_, monotonic_ns()));
}

void PuntHandler::apply_verdict(const pc_flow_key& key, PendingFlow& flow, const FlowIdentity& identity,
                                const PendingVerdict& verdict) {
  const uint32_t rule_id =
      verdict.rule != nullptr ? static_cast<uint32_t>(verdict.rule - policy_->rules().data()) : PC_RULE_NONE;
  flow.event.scope = verdict.group ? dataplane::group_scope(*verdict.group) : PC_SCOPE_TOP_LEVEL;
  if (!verdict.allow) return deny(key, flow, verdict.reason, identity, rule_id);
  allow(key, flow, rule_id, PC_DROP_NONE, identity);
}

// Held frames go first, in order. Until the ring is drained the data plane queues the flow's later frames behind
// them (draining), without the pending bounds: releasing the first frames lets the server acknowledge them and the
// client send more, all before the verdict could be read. Then it is allowed. `reason`: PC_DROP_NONE, or the kind
// of allow (PC_DROP_EXPECTED).
void PuntHandler::allow(const pc_flow_key& key, PendingFlow& flow, uint32_t rule_id, uint32_t reason,
                        const FlowIdentity& identity) {
  install(key, flow, PC_VERDICT_DRAINING, reason, rule_id);
  for (HeldFrame& held : flow.frames) release(held);
  draining_[key] = Draining{rule_id, generation_, reason};
  log(flow, PC_VERDICT_ALLOW, reason, rule_id, identity);
  forget(key, true);
}

// A flow the data plane would have allowed, held from its SYN because its address is bound to a name a deny rule
// names: the names bound to its address decide it now, unless only its first bytes can (a deny of ssh to such a
// name). Then its SYN goes on and it waits for them as any pending flow does.
void PuntHandler::decide_at_syn(const pc_flow_key& key, PendingFlow& flow) {
  FlowIdentity identity;
  identity.state = FlowIdentity::State::unknown;
  if (!policy_) return deny(key, flow, PC_DROP_DENIED_BY_DEFAULT, identity);
  if (const std::optional<PendingVerdict> verdict =
          punt::decide_at_syn(*policy_, mode_, flow.facts, bindings_, monotonic_ns())) {
    return apply_verdict(key, flow, identity, *verdict);
  }
  install(key, flow, PC_VERDICT_PENDING, PC_DROP_NEEDS_L7, PC_RULE_NONE);
  for (HeldFrame& held : flow.frames) release(held);
  stats_.held_bytes -= flow.held_bytes;
  flow.held_bytes = 0;
  flow.frames.clear();
}

void PuntHandler::decide_expected(const pc_flow_key& key, PendingFlow& flow) {
  FlowIdentity identity;
  identity.state = FlowIdentity::State::identified;
  identity.l7 = policy::L7Proto::ftp;
  identity.detail = "data connection";
  const std::optional<ExpectedConnection> expected =
      expectation_resolver_ ? expectation_resolver_(flow.facts) : std::nullopt;
  if (!expected) return deny(key, flow, PC_DROP_NO_EXPECTATION, identity);
  flow.event.scope = expected->scope;
  allow(key, flow, expected->rule_id, PC_DROP_EXPECTED, identity);
}

void PuntHandler::deny(const pc_flow_key& key, PendingFlow& flow, uint32_t reason, const FlowIdentity& identity,
                       uint32_t rule_id) {
  install(key, flow, PC_VERDICT_DENY, reason, rule_id);
  const bool reject = !policy_ || policy_->policy().defaults.on_deny == policy::OnDeny::reject;
  size_t sent_back = 0;
  if (reject && !flow.frames.empty()) {
    HeldFrame& first = flow.frames.front();
    // The server has seen the handshake and waits for data that will not come: it gets a reset too.
    if (const auto reset = tcp_reset_to_server(first.bytes)) {
      std::vector<uint8_t> bytes = *reset;
      if (std::string problem = reinjector_.release(first.ifindex, bytes, 0); !problem.empty()) error(problem);
    }
    // The first frame meets the deny in the data plane, which answers the client.
    if (std::string problem = reinjector_.reclassify(first.ifindex, first.bytes, first.gso_size); !problem.empty()) {
      error(problem);
    } else {
      sent_back = 1;
    }
  }
  stats_.dropped += flow.frames.size() - sent_back;
  log(flow, PC_VERDICT_DENY, reason, rule_id, identity);
  forget(key, false);
}

void PuntHandler::count_outcome(std::string_view parser, const FlowIdentity& identity) {
  PuntStats::ParserOutcome outcome{std::string(parser), "found", ""};
  switch (identity.state) {
    case FlowIdentity::State::need_more:
      outcome.outcome = "need-more";
      break;
    case FlowIdentity::State::identified:
      break;
    case FlowIdentity::State::unknown:
      outcome.outcome = "unknown";
      break;
    case FlowIdentity::State::malformed:
      outcome.outcome = "malformed";
      outcome.reason = identity.detail;
      break;
  }
  ++stats_.parser_outcomes[outcome];
}

void PuntHandler::record_latency(const PendingFlow& flow) {
  if (flow.frames.empty()) return;
  record_elapsed(flow.frames.front().punted_ns, stats_.latency_us, stats_.latency_sum_us);
}

void PuntHandler::forget(const pc_flow_key& key, bool allowed) {
  const auto it = pending_.find(key);
  if (it == pending_.end()) return;
  record_latency(it->second);
  stats_.held_bytes -= it->second.held_bytes;
  ++stats_.decided;
  decided_[key] = Decided{allowed, monotonic_ns() + kDecidedMemoryNs};
  pending_.erase(it);
  stats_.pending_flows = pending_.size();
}

void PuntHandler::install(const pc_flow_key& key, const PendingFlow& flow, uint8_t verdict, uint32_t reason,
                          uint32_t rule_id) {
  pc_flow value{};
  if (bpf_map_lookup_elem(flows_fd_, &key, &value) != 0) {
    // Evicted meanwhile: the verdict stands for the flow's next packets all the same.
    value = pc_flow{};
    value.first_seen_ns = flow.event.timestamp_ns;
    value.last_seen_ns = monotonic_ns();
    uint8_t direction = 0;
    pc_flow_key ignored{};
    pc_flow_key_fill(&ignored, flow.event.family, flow.event.proto, &flow.event.src, flow.event.sport, &flow.event.dst,
                     key.lo_port == flow.event.sport ? key.hi_port : key.lo_port, &direction);
    value.initiator = direction;
    value.scope = flow.event.scope;
  }
  value.verdict = verdict;
  value.reason = reason;
  value.rule_id = rule_id;
  value.generation = generation_;
  value.held_bytes = 0;
  if (bpf_map_update_elem(flows_fd_, &key, &value, BPF_ANY) != 0) {
    error(std::string("cannot install a verdict in the flow table: ") + std::strerror(errno));
  }
}

void PuntHandler::release(HeldFrame& frame) {
  if (std::string problem = reinjector_.release(frame.ifindex, frame.bytes, frame.gso_size); !problem.empty()) {
    ++stats_.send_errors;
    error(problem);
    return;
  }
  ++stats_.released;
}

void PuntHandler::log(const PendingFlow& flow, uint8_t verdict, uint32_t reason, uint32_t rule_id,
                      const FlowIdentity& identity) {
  if (!logger_) return;
  PuntDecision decision;
  decision.event = flow.event;
  decision.event.verdict = verdict;
  decision.event.reason = reason;
  decision.event.rule_id = rule_id;
  decision.event.generation = generation_;
  decision.identity = identity;
  decision.frames.reserve(flow.frames.size());
  for (const HeldFrame& held : flow.frames) decision.frames.emplace_back(held.bytes);
  logger_(decision);
}

void PuntHandler::tick() {
  const uint64_t now = monotonic_ns();
  write_config(now);
  std::vector<pc_flow_key> expired;
  for (const auto& [key, flow] : pending_) {
    if (flow.deadline_ns <= now) expired.push_back(key);
  }
  for (const pc_flow_key& key : expired) {
    PendingFlow& flow = pending_.at(key);
    pc_flow value{};
    if (flow.frames.empty() && bpf_map_lookup_elem(flows_fd_, &key, &value) == 0 &&
        value.verdict != PC_VERDICT_PENDING) {
      // Decided meanwhile by the data plane (denied at a bound, with no daemon, or reopened): nothing to add.
      forget(key, value.verdict != PC_VERDICT_DENY);
      continue;
    }
    FlowIdentity identity = flow.stream ? identify_tcp_stream(flow.stream->contiguous()) : FlowIdentity{};
    ++stats_.timeouts;
    deny(key, flow, PC_DROP_L7_TIMEOUT, identity);
  }
  std::erase_if(decided_, [now](const auto& entry) { return entry.second.forget_ns <= now; });
  bindings_.expire(now);
  stats_.dns_bindings = bindings_.size();
  if (bound_names_) {
    bound_names_->expire(now);
    stats_.bound_names = bound_names_->size();
  }
  if (now > kAnswerStreamIdleNs) tcp_answers_.expire(now - kAnswerStreamIdleNs);
  expire_query_streams(now);
}

// A DNS-over-TCP connection holding a frame for longer than l7_timeout_ms (a query that does not complete, a gap
// that does not fill) is refused; one that holds nothing is forgotten once idle, and read afresh from its next byte,
// where its next message starts.
void PuntHandler::expire_query_streams(uint64_t now) {
  const uint64_t timeout_ns =
      static_cast<uint64_t>(policy_ ? policy_->policy().defaults.l7_timeout_ms : 1000) * 1'000'000ULL;
  std::vector<pc_flow_key> stalled;
  for (auto stream = tcp_queries_.begin(); stream != tcp_queries_.end();) {
    const QueryStream& queries = stream->second;
    const bool idle = queries.frames.empty() && queries.last_ns + kQueryStreamIdleNs <= now;
    const bool stale = std::ranges::any_of(queries.frames,
                                           [&](const auto& held) { return held.second.punted_ns + timeout_ns <= now; });
    if (stale) stalled.push_back(stream->first);
    stream = idle ? tcp_queries_.erase(stream) : std::next(stream);
  }
  for (const pc_flow_key& key : stalled) {
    FlowIdentity incomplete;
    incomplete.l7 = policy::L7Proto::dns;
    incomplete.detail = "no whole query in time";
    ++stats_.timeouts;
    ++stats_.dns_filtered;
    deny_queries(key, std::nullopt, PC_DROP_L7_TIMEOUT, incomplete);
  }
}

void PuntHandler::write_config(uint64_t now) {
  const pc_punt_config config{.heartbeat_ns = now,
                              .flow_hold_bytes = settings_.flow_hold_bytes,
                              .rate_per_sec = settings_.rate_per_sec,
                              .burst = settings_.burst,
                              .flags = denied_sink_ ? uint32_t{PC_PUNT_CAPTURE_DENIED} : 0};
  const uint32_t zero = 0;
  if (bpf_map_update_elem(punt_config_fd_, &zero, &config, BPF_ANY) != 0) {
    error(std::string("cannot write the punt heartbeat: ") + std::strerror(errno));
  }
}

void PuntHandler::stop_heartbeat() {
  const pc_punt_config config{};
  const uint32_t zero = 0;
  (void)bpf_map_update_elem(punt_config_fd_, &zero, &config, BPF_ANY);
}

void PuntHandler::error(std::string message) {
  if (errors_.size() == kMaxErrors) errors_.erase(errors_.begin());
  errors_.push_back(std::move(message));
}

}  // namespace portcullis::punt
