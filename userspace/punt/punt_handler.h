// The daemon's side of punt and hold (include/portcullis/punt.h): reads the frames pending flows punt,
// reassembles each client's first bytes, decides the flow when it has shown enough, installs the verdict in
// the flow table and gives the held frames back: released in order after an allow, or the first one sent
// to meet the deny (so the client gets its reject) and the server reset.
//
// Under dns.filter_queries it also reads every query a client sends its resolver: a UDP one as it comes; over TCP
// message by message across segments (DnsTcpQueryStream), each segment held until every byte it carries belongs to
// a query that may go on. A query for a name no rule of the client's could allow is answered NXDOMAIN (UDP) or
// resets its connection (TCP), as one the daemon cannot read does.
//
// Bounds, all failing closed: l7_timeout_ms per flow (from its first packet), held bytes per flow and in
// total. It also keeps the data plane's view of the daemon alive: tick() writes the heartbeat and the
// bounds the BPF side enforces; without it pending flows are denied as no-daemon.
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dataplane/flow_key_hash.h"
#include "dataplane/policy_tables.h"
#include "parsers/quic_initial.h"
#include "parsers/tcp_stream_prefix.h"
#include "policy/compiled_policy.h"
#include "policy/policy.h"
#include "portcullis/classify.h"
#include "portcullis/flow.h"
#include "portcullis/packet.h"
#include "portcullis/policy_maps.h"
#include "portcullis/punt.h"
#include "punt/bound_names.h"
#include "punt/dns_bindings.h"
#include "punt/dns_tcp_queries.h"
#include "punt/flow_identity.h"
#include "punt/reinjector.h"

struct ring_buffer;

namespace portcullis::punt {

struct PuntSettings {
  uint32_t flow_hold_bytes = 64 * 1024;             // per pending flow (also enforced in BPF)
  uint64_t total_hold_bytes = 64ULL * 1024 * 1024;  // over every pending flow
  uint32_t rate_per_sec = 2000;                     // punts per second per source (BPF token bucket)
  uint32_t burst = 4000;
};

struct PuntStats {
  uint64_t frames = 0;         // punted frames read
  uint64_t malformed = 0;      // punted frames that did not parse (dropped)
  uint64_t released = 0;       // frames reinjected after an allow
  uint64_t late_released = 0;  // of those, frames that arrived after their flow's allow
  uint64_t dropped = 0;        // frames of denied flows
  uint64_t send_errors = 0;    // reinjections the kernel refused
  uint64_t decided = 0;        // flows decided here
  uint64_t timeouts = 0;       // flows denied for showing nothing in time
  uint64_t dns_answers = 0;    // DNS answers read (each held until what it binds is installed, then sent on)
  uint64_t dns_malformed = 0;  // frames from port 53 that were no DNS answer that parses (dropped over UDP)
  uint64_t dns_bindings = 0;   // name-to-address bindings held now
  uint64_t bound_names = 0;    // of their addresses, those in the data plane's pc_bound_names now
  uint64_t dns_queries = 0;    // queries read (dns.filter_queries): UDP datagrams, whole messages over TCP
  // Queries that did not go on: answered NXDOMAIN over UDP; over TCP the connection is reset, also when its stream
  // cannot be read (overlaps that differ, past the bounds, a query not complete within l7_timeout_ms).
  uint64_t dns_filtered = 0;
  uint64_t held_bytes = 0;     // now
  uint64_t pending_flows = 0;  // now
  // Time from the data plane punting a flow's first frame to its verdict being installed, in microseconds:
  // counts of decisions up to 50, 100, 200, 500, 1000, 2000, 5000 us and above.
  static constexpr uint64_t kLatencyBoundsUs[] = {50, 100, 200, 500, 1000, 2000, 5000};
  uint64_t latency_us[std::size(kLatencyBoundsUs) + 1] = {};
  uint64_t latency_sum_us = 0;
  // Time a DNS answer was held, from the data plane taking it to its release, in the same buckets.
  uint64_t answer_hold_us[std::size(kLatencyBoundsUs) + 1] = {};
  uint64_t answer_hold_sum_us = 0;
  // What the parsers made of what flows showed, each time they were asked: by parser (tls, http, ssh, quic, dns,
  // or tcp before the first byte said which), outcome (found, need-more, unknown, malformed) and, for
  // malformed, the parser's reason.
  struct ParserOutcome {
    std::string parser;
    std::string outcome;
    std::string reason;
    auto operator<=>(const ParserOutcome&) const = default;
  };
  std::map<ParserOutcome, uint64_t> parser_outcomes;
};

// One decided flow, for the log: the event as the data plane would have sent it, and what the flow showed.
struct PuntDecision {
  pc_verdict_event event{};
  FlowIdentity identity;
  // The frames the flow's verdict was taken on (held, then released or refused), valid during the call only.
  std::vector<std::span<const uint8_t>> frames;
};

class PuntHandler {
 public:
  using Logger = std::function<void(const PuntDecision&)>;

  // Throws std::runtime_error when the ring cannot be mapped.
  PuntHandler(int punts_fd, int flows_fd, int punt_config_fd, policy::Mode mode, PuntSettings settings, Logger logger);
  ~PuntHandler();
  PuntHandler(const PuntHandler&) = delete;
  PuntHandler& operator=(const PuntHandler&) = delete;

  void set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, uint32_t generation);
  // Asks the data plane for a copy of the packet each new flow is denied at, and hands every copy to `sink`
  // with the data plane's timestamp (CLOCK_MONOTONIC). Frames the daemon itself denies reach the logger.
  using DeniedFrameSink = std::function<void(std::span<const uint8_t> frame, uint64_t monotonic_ns)>;
  void capture_denied(DeniedFrameSink sink) { denied_sink_ = std::move(sink); }
  // Decides the connections the data plane holds from their SYN as possible FTP data connections
  // (PC_DROP_AWAITS_EXPECTATION): the expected connection's rule and scope when a control connection announced
  // it (the opener's facts), nullopt to deny. Without a resolver they are denied.
  struct ExpectedConnection {
    uint32_t rule_id = PC_RULE_NONE;
    uint32_t scope = 0;
  };
  using ExpectationResolver = std::function<std::optional<ExpectedConnection>(const PendingFlowFacts& facts)>;
  void resolve_expectations(ExpectationResolver resolver) { expectation_resolver_ = std::move(resolver); }
  void observe_bindings(DnsBindings::Observer observer) { bindings_.observe(std::move(observer)); }
  // Keeps the data plane's pc_bound_names (bound_names.h) from the bindings; what a previous daemon left there
  // goes, with the bindings it learned. Without it, deny rules to names apply only to the flows the daemon
  // decides.
  void keep_bound_names(int bound_names_fd);
  const DnsBindings& bindings() const { return bindings_; }

  int fd() const;  // readable (epoll) when punted frames wait
  void consume();  // every waiting frame
  // A verdict event the data plane sent for a new pending flow: its l7 timeout starts at its first packet.
  void on_pending_event(const pc_verdict_event& event);
  // Heartbeat, bounds, timeouts. Call every 100 ms or so.
  void tick();
  // No heartbeat any more: pending flows are denied by the data plane at their next packet.
  void stop_heartbeat();

  const PuntStats& stats() const { return stats_; }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  struct HeldFrame {
    std::vector<uint8_t> bytes;
    uint32_t ifindex = 0;
    uint16_t gso_size = 0;
    uint64_t punted_ns = 0;  // CLOCK_MONOTONIC, by the data plane
  };
  struct PendingFlow {
    PendingFlowFacts facts;
    pc_verdict_event event{};  // addresses as the initiator sent them
    std::vector<HeldFrame> frames;
    size_t held_bytes = 0;
    std::optional<parsers::TcpStreamPrefix> stream;        // the client's first bytes (TCP)
    std::unique_ptr<parsers::QuicClientHelloReader> quic;  // the client's Initials (QUIC over UDP)
    uint32_t stream_start = 0;
    uint64_t deadline_ns = 0;
  };
  // A DNS-over-TCP connection whose queries the daemon reads (dns.filter_queries): the client's stream, and the
  // frames of it held until every byte they carry was judged.
  struct QueryStream {
    QueryStream(uint32_t first_seq, const pc_packet& first, uint64_t first_seen_ns)
        : queries(first_seq), client(first), flow_first_seen_ns(first_seen_ns) {}
    DnsTcpQueryStream queries;
    std::vector<std::pair<uint64_t, HeldFrame>> frames;  // by the stream's segment number, in the order they came
    size_t held_bytes = 0;
    pc_packet client;                 // its first frame's addresses and ports, for the log
    uint64_t flow_first_seen_ns = 0;  // the data plane's flow entry's: another is another connection on these ports
    uint64_t last_ns = 0;
  };
  // What one query showed, and whether it may go on.
  struct QueryJudgement {
    bool go_on = false;
    uint32_t reason = PC_DROP_NONE;  // when it may not: query-filtered, or malformed
    FlowIdentity identity;
  };
  struct Decided {
    bool allow = false;
    uint64_t forget_ns = 0;
  };
  struct Draining {
    uint32_t rule_id = 0;
    uint32_t generation = 0;
    uint32_t reason = PC_DROP_NONE;  // kept in the entry once allowed: PC_DROP_EXPECTED marks FTP data
  };
  using KeyHash = dataplane::FlowKeyHash;
  using KeyEqual = dataplane::FlowKeyEqual;

  static int on_sample(void* context, void* data, size_t size);
  void on_frame(const pc_punt_header& header, std::span<const uint8_t> frame);
  PendingFlow& pending_flow(const pc_flow_key& key, const pc_packet& pkt, uint64_t now);
  void describe(PendingFlow& flow, const pc_packet& pkt, uint64_t now) const;
  QueryJudgement judge_query(std::span<const uint8_t> message, const policy::IpAddress& client);
  PendingFlow inspected_flow(const pc_packet& pkt) const;
  void inspect_udp_query(const pc_packet& pkt, HeldFrame& held);
  void inspect_tcp_queries(const pc_flow_key& key, const pc_packet& pkt, HeldFrame& held, uint64_t flow_first_seen_ns);
  void deny_queries(const pc_flow_key& key, std::optional<HeldFrame> refused, uint32_t reason,
                    const FlowIdentity& identity);
  void expire_query_streams(uint64_t now);
  void on_answer(const pc_punt_header& header, std::span<const uint8_t> frame);
  void learn_from_tcp_answer(const pc_packet& pkt, std::span<const uint8_t> frame);
  bool pending_in_data_plane(const pc_flow_key& key);
  void finish_draining();
  // Adds a TCP segment to the flow's stream; false on an evasion attempt (bytes that differ on overlap).
  bool add_segment(PendingFlow& flow, const pc_packet& pkt, std::span<const uint8_t> frame);
  void decide(const pc_flow_key& key, PendingFlow& flow, const FlowIdentity& identity);
  // Installs `verdict`, taken on what the flow showed (`identity`), releases or refuses its held frames, and logs it.
  void apply_verdict(const pc_flow_key& key, PendingFlow& flow, const FlowIdentity& identity,
                     const PendingVerdict& verdict);
  void decide_expected(const pc_flow_key& key, PendingFlow& flow);
  void decide_at_syn(const pc_flow_key& key, PendingFlow& flow);
  void allow(const pc_flow_key& key, PendingFlow& flow, uint32_t rule_id, uint32_t reason,
             const FlowIdentity& identity);
  void deny(const pc_flow_key& key, PendingFlow& flow, uint32_t reason, const FlowIdentity& identity,
            uint32_t rule_id = PC_RULE_NONE);
  void install(const pc_flow_key& key, const PendingFlow& flow, uint8_t verdict, uint32_t reason, uint32_t rule_id);
  void release(HeldFrame& frame);
  void record_latency(const PendingFlow& flow);
  void count_outcome(std::string_view parser, const FlowIdentity& identity);
  void log(const PendingFlow& flow, uint8_t verdict, uint32_t reason, uint32_t rule_id, const FlowIdentity& identity);
  void forget(const pc_flow_key& key, bool allowed);
  void write_config(uint64_t now);
  void error(std::string message);

  ring_buffer* ring_ = nullptr;
  int flows_fd_;
  int punt_config_fd_;
  policy::Mode mode_;
  PuntSettings settings_;
  Logger logger_;
  DeniedFrameSink denied_sink_;
  ExpectationResolver expectation_resolver_;
  Reinjector reinjector_;
  parsers::QuicInitialDecryptor quic_decryptor_;  // shared by every QUIC flow: keeps recent keys
  DnsBindings bindings_;
  std::unique_ptr<BoundNameTable> bound_names_;
  std::shared_ptr<const policy::CompiledPolicy> policy_;
  uint32_t generation_ = 0;
  std::unordered_map<pc_flow_key, PendingFlow, KeyHash, KeyEqual> pending_;
  std::unordered_map<pc_flow_key, Decided, KeyHash, KeyEqual> decided_;
  std::unordered_map<pc_flow_key, Draining, KeyHash, KeyEqual> draining_;  // allowed, frames still coming
  DnsTcpAnswers tcp_answers_;
  std::unordered_map<pc_flow_key, QueryStream, KeyHash, KeyEqual> tcp_queries_;  // DNS over TCP, filter_queries
  PuntStats stats_;
  std::vector<std::string> errors_;  // the last few, for the log
};

}  // namespace portcullis::punt
