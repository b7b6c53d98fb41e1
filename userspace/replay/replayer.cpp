#include "replay/replayer.h"

#include <arpa/inet.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>
#include <utility>

#include "dataplane/frame_fields.h"
#include "dataplane/policy_tables.h"
#include "dataplane/userspace_data_path.h"
#include "parsers/dns_message.h"
#include "parsers/quic_initial.h"
#include "parsers/tcp_stream_prefix.h"
#include "policy/policy_loader.h"
#include "portcullis/compat.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/parse.h"
#include "punt/bound_names.h"
#include "punt/dns_bindings.h"
#include "punt/dns_tcp_queries.h"
#include "punt/flow_identity.h"
#include "replay/capture_reader.h"

namespace portcullis::replay {
namespace {

using punt::FlowIdentity;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint32_t kStreamLimit = 20 * 1024;

std::shared_ptr<const policy::CompiledPolicy> allow_everything() {
  // Everything allowed, DNS to any server included, and no query filtered.
  policy::LoadResult loaded = policy::load_policy(
      "version: 1\ndefaults: {action: allow}\ndns: {filter_queries: false}\nrules:\n"
      "  - {name: any-dns, dst: [0.0.0.0/0, \"::/0\"], proto: dns}\n",
      "(no policy)");
  return policy::compile_policy(std::move(*loaded.policy));
}

std::string address_text(const pc_addr& addr, uint8_t family) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == PC_FAMILY_IPV6 ? AF_INET6 : AF_INET, addr.bytes, text, sizeof(text));
  return text;
}

using dataplane::address_of;
using dataplane::payload_of;
using dataplane::tcp_seq;

bool is_icmp(const pc_packet& pkt) {
  return (pkt.proto == 1 && pkt.family == PC_FAMILY_IPV4) || (pkt.proto == 58 && pkt.family == PC_FAMILY_IPV6);
}

std::string proto_text(const pc_packet& pkt) {
  if (pkt.proto == kTcp) return "tcp";
  if (pkt.proto == kUdp) return "udp";
  if (is_icmp(pkt)) return pkt.family == PC_FAMILY_IPV6 ? "icmpv6" : "icmp";
  return std::to_string(pkt.proto);
}

struct KeyLess {
  bool operator()(const pc_flow_key& a, const pc_flow_key& b) const {
    return std::memcmp(&a, &b, sizeof(a)) < 0;  // NOLINT(bugprone-suspicious-memory-comparison): padding zeroed
  }
};

class UserspaceDataPlane final : public ReplayDataPlane {
 public:
  explicit UserspaceDataPlane(dataplane::PolicyTables tables) : tables_(tables), path_(std::move(tables)) {}

  void reset() override { path_ = dataplane::UserspaceDataPath(tables_); }
  void set_clock(uint64_t capture_ns) override {
    path_.set_now_ns(capture_ns);
    path_.set_punt_config({.heartbeat_ns = capture_ns,
                           .flow_hold_bytes = kReplayFlowHoldBytes,
                           .rate_per_sec = kReplayPuntRate,
                           .burst = kReplayPuntBurst,
                           .flags = 0});
  }
  PlaneOutcome inside(std::span<const uint8_t> frame) override { return outcome(path_.inside(frame)); }
  PlaneOutcome outside(std::span<const uint8_t> frame) override { return outcome(path_.outside(frame)); }
  std::optional<pc_flow> flow(const pc_flow_key& key) override {
    const pc_flow* found = path_.flow(key);
    return found != nullptr ? std::optional<pc_flow>(*found) : std::nullopt;
  }
  bool set_verdict(const pc_flow_key& key, uint8_t verdict, uint32_t rule_id, uint32_t reason) override {
    return path_.set_verdict(key, verdict, rule_id, reason);
  }
  bool set_bound_name(const pc_bound_key& key, const pc_bound_name* name) override {
    path_.set_bound_name(key, name);
    return true;
  }

 private:
  static PlaneOutcome outcome(const dataplane::PacketOutcome& out) {
    return {out.action == dataplane::kActionPass,
            out.action == dataplane::kActionPunt || out.action == dataplane::kActionHoldAnswer};
  }

  dataplane::PolicyTables tables_;
  dataplane::UserspaceDataPath path_;
};

}  // namespace

std::unique_ptr<ReplayDataPlane> make_userspace_data_plane(dataplane::PolicyTables tables) {
  return std::make_unique<UserspaceDataPlane>(std::move(tables));
}

// One capture's replay: its flows, over the replayer's data plane (reset for it).
class Replayer::Capture {
 public:
  Capture(const Replayer& owner, std::string name, ReplayDataPlane& plane)
      : owner_(owner),
        name_(std::move(name)),
        path_(plane),
        bound_names_([&plane](const pc_bound_key& key, const pc_bound_name* bound) {
          return plane.set_bound_name(key, bound);
        }) {
    path_.reset();
    const policy::DnsSettings& dns = owner.policy_->policy().dns;
    bindings_.set_limits({.min_ttl = dns.min_ttl, .max_ttl = dns.max_ttl, .max_bindings = 1 << 18});
    bound_names_.set_policy(owner.policy_, bindings_);
    bindings_.observe([this](std::optional<size_t> group, const std::vector<std::string>& names,
                             const policy::IpAddress& address, uint32_t /*ttl*/,
                             uint64_t expires_ns) { bound_names_.on_bound(group, names, address, expires_ns); });
  }
  ~Capture() { bound_names_.set_policy(nullptr, punt::DnsBindings()); }  // the next capture starts afresh
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  void packet(const CapturedPacket& packet, ReplayStats& stats) {
    ++stats.packets;
    stats.truncated += packet.truncated;
    if (packet.not_ip) {
      ++stats.not_ip;
      fates_.push_back(kPassed);  // the data plane lets frames without IP through
      return;
    }
    now_ = packet.timestamp_ns;
    path_.set_clock(now_);
    const std::span<const uint8_t> frame = packet.frame;
    pc_packet pkt{};
    if (pc_parse_packet(frame.data(), frame.data() + frame.size(), &pkt) != PC_DROP_NONE) {
      ++stats.malformed;
      fates_.push_back(kDropped);
      return;
    }
    pc_flow_key key{};
    uint8_t direction = 0;
    const bool own_flow = pkt.inner_family == PC_FAMILY_NONE && pc_flow_key_from_packet(&pkt, &key, &direction) == 0;
    if (!own_flow) {
      // A later fragment or an ICMP error: it follows a flow of its own, and is no flow to report.
      fates_.push_back(path_.outside(frame).passed ? kPassed : kDropped);
      return;
    }
    auto [it, created] = flows_.try_emplace(key);
    Flow& flow = it->second;
    if (created) start_flow(flow, pkt);
    fates_.push_back(static_cast<uint32_t>(flow.order));
    const bool from_initiator = direction == flow.initiator;
    const PlaneOutcome outcome = from_initiator ? path_.inside(frame) : path_.outside(frame);
    ++flow.report.packets;
    flow.report.bytes += packet.wire_length;
    if (!from_initiator) {
      // A DNS answer binds names to addresses, as the daemon reads it live while the data plane holds it: over
      // UDP one per datagram, over TCP message by message as the stream completes them.
      if (pkt.sport == PC_DNS_PORT && pkt.proto == kUdp && outcome.punted) {
        (void)punt::learn_from_message(bindings_, *owner_.policy_, payload_of(pkt, frame),
                                       address_of(pkt.dst, pkt.family), now_);
      } else if (pkt.sport == PC_DNS_PORT && pkt.proto == kTcp && outcome.punted) {
        (void)tcp_answers_.add(bindings_, *owner_.policy_, pkt, frame, now_);
      }
      return;
    }
    if (outcome.punted) flow.punted = true;
    const std::optional<pc_flow> state = outcome.punted ? path_.flow(key) : std::nullopt;
    const bool inspected = state && state->verdict == PC_VERDICT_INSPECT;
    if (inspected && pkt.proto == kTcp && pkt.dport == PC_DNS_PORT) return read_tcp_queries(key, flow, pkt, frame);
    identify(flow, pkt, frame, inspected);
    // Held from its SYN for the names its address is bound to, which decide it there, or from its first bytes
    // when only they can (as the daemon does).
    if (state && state->reason == PC_DROP_BOUND_NAME && pkt.proto == kTcp &&
        flow.identity.state == FlowIdentity::State::need_more) {
      if (punt::decide_at_syn(*owner_.policy_, owner_.mode_, flow.facts, bindings_, now_)) {
        flow.identity.state = FlowIdentity::State::unknown;
      } else {
        path_.set_verdict(key, PC_VERDICT_PENDING, PC_RULE_NONE, PC_DROP_NEEDS_L7);
      }
    }
    settle(key, flow);
  }

  // What became of each packet, in capture order: allowed (its flow's verdict, or its own for packets of no
  // flow), else refused.
  std::vector<bool> packet_allowed(const std::vector<FlowReport>& reports, size_t first_report) const {
    std::vector<bool> allowed;
    allowed.reserve(fates_.size());
    for (const uint32_t fate : fates_) {
      if (fate == kPassed || fate == kDropped) {
        allowed.push_back(fate == kPassed);
      } else {
        allowed.push_back(reports.at(first_report + fate).verdict == "allow");
      }
    }
    return allowed;
  }

  void finish(std::vector<FlowReport>& out) {
    for (auto& [key, flow] : flows_) settle(key, flow);
    std::vector<Flow*> ordered;
    ordered.reserve(flows_.size());
    for (auto& [key, flow] : flows_) ordered.push_back(&flow);
    std::sort(ordered.begin(), ordered.end(), [](const Flow* a, const Flow* b) { return a->order < b->order; });
    for (auto& [key, flow] : flows_) report(key, flow);
    for (const Flow* flow : ordered) out.push_back(flow->report);
    flows_.clear();
  }

 private:
  struct Flow {
    size_t order = 0;
    uint8_t initiator = 0;  // PC_FLOW_FROM_LO or _HI of the flow's first packet
    uint64_t deadline_ns = 0;
    bool punted = false;   // the data plane waits for what the flow shows
    bool decided = false;  // ... and got it
    FlowIdentity identity;
    std::optional<parsers::TcpStreamPrefix> stream;
    std::optional<punt::DnsTcpQueryStream> queries;  // DNS over TCP under dns.filter_queries
    std::unique_ptr<parsers::QuicClientHelloReader> quic;
    bool datagram_seen = false;
    bool conflict = false;  // retransmitted bytes that differ: an evasion attempt
    bool filtered = false;  // a query of the flow was answered NXDOMAIN (dns.filter_queries)
    punt::PendingFlowFacts facts;
    FlowReport report;
  };

  void start_flow(Flow& flow, const pc_packet& pkt) {
    uint8_t direction = 0;
    pc_flow_key ignored{};
    pc_flow_key_from_packet(&pkt, &ignored, &direction);
    flow.order = next_order_++;
    flow.initiator = direction;
    flow.deadline_ns = now_ + static_cast<uint64_t>(owner_.policy_->policy().defaults.l7_timeout_ms) * 1'000'000ULL;
    flow.report.capture = name_;
    flow.report.proto = proto_text(pkt);
    flow.report.src = address_text(pkt.src, pkt.family);
    flow.report.dst = address_text(pkt.dst, pkt.family);
    if (pkt.proto == kTcp || pkt.proto == kUdp) {
      flow.report.sport = pkt.sport;
      flow.report.dport = pkt.dport;
    } else if (is_icmp(pkt)) {
      flow.report.icmp_type = pkt.icmp_type;
    }
    flow.facts.src = address_of(pkt.src, pkt.family);
    flow.facts.dst = address_of(pkt.dst, pkt.family);
    flow.facts.proto = pkt.proto == kTcp              ? policy::L4Proto::tcp
                       : pkt.proto == kUdp            ? policy::L4Proto::udp
                       : pkt.family == PC_FAMILY_IPV6 ? policy::L4Proto::icmpv6
                                                      : policy::L4Proto::icmp;
    flow.facts.dport = pkt.dport;
    flow.facts.icmp_type = pkt.icmp_type;
  }

  // A DNS query over UDP: the flow is DNS, named by its first query; under dns.filter_queries a query for a
  // name no rule of the client's could allow is answered NXDOMAIN live, and the flow reported denied.
  void read_query(Flow& flow, std::span<const uint8_t> payload, bool inspected) {
    const parsers::DnsMessage query = parsers::parse_dns_message(payload, parsers::DnsDirection::query);
    if (query.status != parsers::ParseStatus::found) return;
    if (flow.identity.state == FlowIdentity::State::need_more || flow.identity.l7 != policy::L7Proto::dns) {
      flow.identity.state = FlowIdentity::State::identified;
      flow.identity.l7 = policy::L7Proto::dns;
      flow.identity.name = query.question.name;
    }
    if (inspected && !flow.filtered &&
        !owner_.policy_->name_could_be_allowed(query.question.name, owner_.policy_->group_of(flow.facts.src))) {
      flow.filtered = true;
      flow.identity.name = query.question.name;
    }
  }

  // DNS over TCP under dns.filter_queries, read as the daemon reads it: message by message across segments. The first
  // query for a name no rule of the client's could allow, or bytes that cannot be read, deny the connection.
  void read_tcp_queries(const pc_flow_key& key, Flow& flow, const pc_packet& pkt, std::span<const uint8_t> frame) {
    const std::optional<uint32_t> seq = tcp_seq(pkt, frame);
    if (!seq) return;
    const uint32_t data_seq = (pkt.tcp_flags & PC_TCP_SYN) != 0 ? *seq + 1 : *seq;
    if (!flow.queries) flow.queries.emplace(data_seq);
    const punt::DnsTcpQueryStream::Added added = flow.queries->add(data_seq, payload_of(pkt, frame));
    const bool readable = added.status == punt::DnsTcpQueryStream::Status::read ||
                          added.status == punt::DnsTcpQueryStream::Status::out_of_order;
    uint32_t reason = readable ? PC_DROP_NONE : punt::DnsTcpQueryStream::refusal_of(added.status).reason;
    const std::optional<size_t> group = owner_.policy_->group_of(flow.facts.src);
    for (const std::vector<uint8_t>& message : added.messages) {
      if (reason != PC_DROP_NONE) break;
      const FlowIdentity query = punt::identify_dns_query(message);
      if (!query.name) {
        reason = PC_DROP_L7_MALFORMED;
        break;
      }
      const bool allowed = owner_.policy_->name_could_be_allowed(*query.name, group);
      if (flow.identity.l7 != policy::L7Proto::dns || !allowed) {
        flow.identity.state = FlowIdentity::State::identified;
        flow.identity.l7 = policy::L7Proto::dns;
        flow.identity.name = query.name;
      }
      if (!allowed) reason = PC_DROP_QUERY_FILTERED;
    }
    if (reason == PC_DROP_NONE) {
      flow.queries->release();
      return;
    }
    flow.queries.reset();
    if (flow.identity.state == FlowIdentity::State::need_more) flow.identity.state = FlowIdentity::State::malformed;
    flow.identity.l7 = policy::L7Proto::dns;
    (void)path_.set_verdict(key, PC_VERDICT_DENY, PC_RULE_NONE, reason);
  }

  // Reads what the initiator's packet adds to the flow's start, until the flow is identified.
  void identify(Flow& flow, const pc_packet& pkt, std::span<const uint8_t> frame, bool inspected) {
    const std::span<const uint8_t> payload = payload_of(pkt, frame);
    if (pkt.proto == kUdp && pkt.dport == PC_DNS_PORT && !pkt.is_fragment && !payload.empty()) {
      return read_query(flow, payload, inspected);
    }
    if (flow.identity.state != FlowIdentity::State::need_more) return;
    if (pkt.proto == kTcp) {
      const std::optional<uint32_t> segment_seq = tcp_seq(pkt, frame);
      if (!segment_seq) return;
      const uint32_t seq = *segment_seq;
      const bool syn = (pkt.tcp_flags & PC_TCP_SYN) != 0;
      if (!flow.stream) {
        if (!syn && payload.empty()) return;  // a capture that starts mid-connection: from its first data on
        flow.stream.emplace(syn ? seq + 1 : seq, kStreamLimit);
      }
      flow.stream->add_segment(seq, payload, syn);
      if (flow.stream->conflict()) {
        flow.identity.state = FlowIdentity::State::malformed;
        flow.identity.detail = "overlapping segments differ";
        flow.conflict = true;
        return;
      }
      if (flow.stream->contiguous().empty()) return;
      flow.identity = punt::identify_tcp_stream(flow.stream->contiguous());
      if (flow.identity.state == FlowIdentity::State::need_more && flow.stream->limit_exceeded()) {
        flow.identity.state = FlowIdentity::State::malformed;
      }
      return;
    }
    if (pkt.proto == kUdp && !pkt.is_fragment) {
      const bool first = !flow.datagram_seen;
      flow.datagram_seen = true;
      if (first && punt::starts_quic_long_header(payload)) {
        flow.quic = std::make_unique<parsers::QuicClientHelloReader>(decryptor_);
      }
      if (flow.quic) {
        flow.identity = punt::identify_quic(flow.quic->add_datagram(payload));
        return;
      }
    }
    flow.identity.state = FlowIdentity::State::unknown;  // a datagram of no known protocol, ICMP, ...
  }

  // Decides a punted flow once it has shown enough, or its time is up: as the daemon would.
  void settle(const pc_flow_key& key, Flow& flow) {
    if (!flow.punted || flow.decided) return;
    const std::optional<pc_flow> state = path_.flow(key);
    if (!state || state->verdict != PC_VERDICT_PENDING) return;  // decided by the data plane itself
    if (flow.identity.state == FlowIdentity::State::need_more) {
      if (now_ < flow.deadline_ns) return;
      flow.decided = path_.set_verdict(key, PC_VERDICT_DENY, PC_RULE_NONE, PC_DROP_L7_TIMEOUT);
      return;
    }
    uint32_t reason = PC_DROP_NONE;
    uint32_t rule_id = PC_RULE_NONE;
    bool allow = false;
    if (flow.conflict) {
      reason = PC_DROP_STREAM_CONFLICT;
    } else {
      const punt::PendingVerdict verdict =
          punt::decide_with_bindings(*owner_.policy_, owner_.mode_, flow.facts, flow.identity, bindings_, now_);
      allow = verdict.allow;
      reason = verdict.reason;
      if (verdict.rule != nullptr) rule_id = static_cast<uint32_t>(verdict.rule - owner_.policy_->rules().data());
    }
    flow.decided =
        path_.set_verdict(key, allow ? PC_VERDICT_ALLOW : PC_VERDICT_DENY, rule_id, allow ? PC_DROP_NONE : reason);
  }

  void report(const pc_flow_key& key, Flow& flow) {
    FlowReport& out = flow.report;
    // What the flow showed, if only the start of it (a ClientHello cut short is still TLS), as the daemon logs it.
    out.l7 = std::string(policy::to_string(flow.identity.l7));
    out.name = flow.identity.name;
    const std::optional<pc_flow> state = path_.flow(key);
    if (!state) {
      out.verdict = "deny";  // never stored: a spoofed source in gateway mode
      out.reason = "source-not-in-group";
      return;
    }
    if (flow.filtered) {
      out.verdict = "deny";
      out.reason = "query-filtered";
      return;
    }
    if (state->verdict == PC_VERDICT_PENDING) {
      out.verdict = "pending";
      out.reason = "needs-l7";
      return;
    }
    const bool allow = state->verdict == PC_VERDICT_ALLOW || state->verdict == PC_VERDICT_DRAINING ||
                       state->verdict == PC_VERDICT_INSPECT;
    out.verdict = allow ? "allow" : "deny";
    if (state->rule_id != PC_RULE_NONE && state->rule_id < owner_.policy_->rules().size() && !owner_.no_policy_) {
      out.rule = owner_.policy_->rules()[state->rule_id].name;
    }
    if (allow) {
      out.reason = out.rule ? "rule" : "default";
    } else {
      out.reason = pc_drop_reason_name(static_cast<pc_drop_reason>(state->reason));
    }
  }

  const Replayer& owner_;
  std::string name_;
  ReplayDataPlane& path_;
  punt::DnsBindings bindings_;
  punt::BoundNameTable bound_names_;
  punt::DnsTcpAnswers tcp_answers_;
  parsers::QuicInitialDecryptor decryptor_;
  static constexpr uint32_t kPassed = 0xfffffffe;   // fates_: a packet of no flow, passed
  static constexpr uint32_t kDropped = 0xffffffff;  // ... dropped
  std::map<pc_flow_key, Flow, KeyLess> flows_;
  std::vector<uint32_t> fates_;  // per packet: its flow's order, or kPassed / kDropped
  size_t next_order_ = 0;
  uint64_t now_ = 0;
};

Replayer::Replayer(std::shared_ptr<const policy::CompiledPolicy> policy, policy::Mode mode,
                   ReplayDataPlaneFactory factory)
    : no_policy_(!policy),
      policy_(policy ? std::move(policy) : allow_everything()),
      mode_(mode),
      factory_(std::move(factory)) {}

ReplayDataPlane& Replayer::plane() {
  if (!plane_) plane_ = factory_(dataplane::build_policy_tables(*policy_, mode_, 1));
  return *plane_;
}

Replayer::~Replayer() = default;

void Replayer::replay(const std::string& path) {
  std::unique_ptr<CaptureReader> reader = CaptureReader::open(path);
  Capture capture(*this, path, plane());
  while (const std::optional<CapturedPacket> packet = reader->next()) capture.packet(*packet, stats_);
  if (!reader->error().empty()) stats_.errors.push_back(path + ": " + reader->error());
  const size_t first_report = flows_.size();
  capture.finish(flows_);
  if (split_) split(path, capture.packet_allowed(flows_, first_report));
}

void Replayer::split_into(const std::string& allowed_path, const std::string& denied_path) {
  split_ = std::make_unique<Split>();
  split_->allowed_path = allowed_path;
  split_->denied_path = denied_path;
}

// Writes the capture's packets again, as they were, each to the file of what became of it. The files take the
// first capture's link type; a capture of another is not split, and says so.
void Replayer::split(const std::string& path, const std::vector<bool>& allowed) {
  char error[PCAP_ERRBUF_SIZE] = {};
  pcap_t* source = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, error);
  if (source == nullptr) {
    stats_.errors.push_back(path + ": cannot read it again to split it: " + error);
    return;
  }
  Split& out = *split_;
  if (!out.opened) {
    const int link_type = pcap_datalink(source);
    const auto open = [&](const std::string& file) {
      return file.empty() ? nullptr : std::make_unique<CaptureWriter>(file, link_type);
    };
    out.allowed = open(out.allowed_path);
    out.denied = open(out.denied_path);
    out.opened = true;
  }
  const int link_type = out.allowed ? out.allowed->link_type() : out.denied ? out.denied->link_type() : -1;
  if (pcap_datalink(source) != link_type) {
    stats_.errors.push_back(path + ": another link type than the first capture's: not split");
    pcap_close(source);
    return;
  }
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  for (size_t i = 0; i < allowed.size() && pcap_next_ex(source, &header, &data) == 1; ++i) {
    CaptureWriter* writer = allowed[i] ? out.allowed.get() : out.denied.get();
    if (writer != nullptr) writer->write(*header, data);
  }
  pcap_close(source);
}

void Replayer::replay(std::FILE* file, const std::string& name) {
  std::unique_ptr<CaptureReader> reader = CaptureReader::open(file, name);
  Capture capture(*this, name, plane());
  while (const std::optional<CapturedPacket> packet = reader->next()) capture.packet(*packet, stats_);
  if (!reader->error().empty()) stats_.errors.push_back(name + ": " + reader->error());
  capture.finish(flows_);  // a capture from memory is not split
}

}  // namespace portcullis::replay
