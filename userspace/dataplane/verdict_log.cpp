#include "dataplane/verdict_log.h"

#include <arpa/inet.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "portcullis/drop_reasons.h"

namespace portcullis::dataplane {
namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;

int64_t clock_ns(clockid_t clock) {
  timespec ts{};
  ::clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSecond + ts.tv_nsec;
}

std::string format_iso8601(int64_t realtime_ns) {
  const time_t seconds = static_cast<time_t>(realtime_ns / kNsPerSecond);
  const long micros = static_cast<long>((realtime_ns % kNsPerSecond) / 1000);
  tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[40];
  const size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  (void)std::snprintf(text + n, sizeof(text) - n, ".%06ldZ", micros);
  return text;
}

std::string address(uint8_t family, const pc_addr& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (family == PC_FAMILY_IPV4) {
    ::inet_ntop(AF_INET, addr.bytes, text, sizeof(text));
  } else {
    ::inet_ntop(AF_INET6, addr.bytes, text, sizeof(text));
  }
  return text;
}

nlohmann::ordered_json proto_name(uint8_t family, uint8_t proto) {
  switch (proto) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      if (family == PC_FAMILY_IPV4) return "icmp";
      break;
    case 58:
      if (family == PC_FAMILY_IPV6) return "icmpv6";
      break;
    default:
      break;
  }
  return proto;
}

}  // namespace

WallClock::WallClock() : offset_ns_(clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC)) {}

std::string WallClock::iso8601(uint64_t monotonic_ns) const {
  return format_iso8601(static_cast<int64_t>(monotonic_ns) + offset_ns_);
}

std::string WallClock::now_iso8601() {
  return format_iso8601(clock_ns(CLOCK_REALTIME));
}

void PolicyGenerations::add(uint32_t generation, std::shared_ptr<const policy::CompiledPolicy> policy) {
  policies_.emplace_back(generation, std::move(policy));
  if (policies_.size() > 2) policies_.erase(policies_.begin());
}

const policy::CompiledPolicy* PolicyGenerations::find(uint32_t generation) const {
  for (const auto& [known, policy] : policies_) {
    if (known == generation) return policy.get();
  }
  return nullptr;
}

nlohmann::ordered_json verdict_json(const pc_verdict_event& event, const policy::CompiledPolicy* policy,
                                    const std::string& ts) {
  const bool icmp =
      (event.proto == 1 && event.family == PC_FAMILY_IPV4) || (event.proto == 58 && event.family == PC_FAMILY_IPV6);
  const bool ports = event.proto == 6 || event.proto == 17;
  nlohmann::ordered_json out;
  out["event"] = "verdict";
  out["ts"] = ts;
  out["group"] = nullptr;
  if (policy != nullptr && event.scope != PC_SCOPE_TOP_LEVEL && event.scope - 1 < policy->policy().groups.size()) {
    out["group"] = policy->policy().groups[event.scope - 1].name;
  }
  out["proto"] = proto_name(event.family, event.proto);
  out["src"] = address(event.family, event.src);
  out["sport"] = ports ? nlohmann::ordered_json(event.sport) : nlohmann::ordered_json(nullptr);
  out["dst"] = address(event.family, event.dst);
  out["dport"] = ports ? nlohmann::ordered_json(event.dport) : nlohmann::ordered_json(nullptr);
  if (icmp) out["icmp_type"] = event.dport;
  out["l7"] = "none";
  out["name"] = nullptr;
  const bool allowed = event.verdict == PC_VERDICT_ALLOW || event.verdict == PC_VERDICT_INSPECT;
  if (event.verdict == PC_VERDICT_INSPECT) out["l7"] = "dns";  // its queries are read one by one
  out["verdict"] = allowed ? "allow" : "deny";
  out["rule"] = nullptr;
  if (policy != nullptr && event.rule_id != PC_RULE_NONE && event.rule_id < policy->rules().size()) {
    out["rule"] = policy->rules()[event.rule_id].name;
  }
  if (allowed && event.reason == PC_DROP_EXPECTED) {
    out["l7"] = "ftp";  // the data connection its control connection announced
    out["reason"] = "expected";
  } else if (allowed) {
    out["reason"] = event.rule_id == PC_RULE_INBOUND ? "inbound" : event.rule_id != PC_RULE_NONE ? "rule" : "default";
  } else {
    out["reason"] = pc_drop_reason_name(static_cast<pc_drop_reason>(event.reason));
  }
  out["generation"] = event.generation;
  return out;
}

VerdictEventReader::VerdictEventReader(int events_fd, Handler handler) : handler_(std::move(handler)) {
  ring_ = ring_buffer__new(events_fd, &VerdictEventReader::on_sample, this, nullptr);
  if (ring_ == nullptr) {
    throw std::runtime_error(std::string("cannot map the pc_events ring buffer: ") + std::strerror(errno));
  }
}

VerdictEventReader::~VerdictEventReader() {
  ring_buffer__free(ring_);
}

int VerdictEventReader::fd() const {
  return ring_buffer__epoll_fd(ring_);
}

void VerdictEventReader::consume() {
  ring_buffer__consume(ring_);
}

int VerdictEventReader::on_sample(void* context, void* data, size_t size) {
  auto* self = static_cast<VerdictEventReader*>(context);
  if (size < sizeof(pc_verdict_event)) {
    ++self->malformed_;
    return 0;
  }
  pc_verdict_event event{};
  std::memcpy(&event, data, sizeof(event));
  self->handler_(event);
  return 0;
}

}  // namespace portcullis::dataplane
