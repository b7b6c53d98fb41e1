// The verdicts the data plane sends (struct pc_verdict_event through the pc_events ring buffer) and their
// form in the `run` log: one JSON object per decided flow, with the fields of the design brief.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "policy/compiled_policy.h"
#include "portcullis/flow.h"

struct ring_buffer;

namespace portcullis::dataplane {

// The data plane stamps events with CLOCK_MONOTONIC (bpf_ktime_get_ns); the log speaks wall-clock time.
class WallClock {
 public:
  WallClock();  // samples both clocks: the offset between them
  // ISO-8601 UTC with microseconds: "2025-01-31T12:34:56.123456Z".
  std::string iso8601(uint64_t monotonic_ns) const;
  static std::string now_iso8601();

 private:
  int64_t offset_ns_;
};

// The policies events may refer to, by generation: an event decided just before a reload names its rule
// by the policy that decided it.
class PolicyGenerations {
 public:
  void add(uint32_t generation, std::shared_ptr<const policy::CompiledPolicy> policy);  // keeps the last two
  const policy::CompiledPolicy* find(uint32_t generation) const;                        // null when unknown

 private:
  std::vector<std::pair<uint32_t, std::shared_ptr<const policy::CompiledPolicy>>> policies_;
};

// {"event":"verdict","ts","group","proto","src","sport","dst","dport","l7","name","verdict","rule","reason",
//  "generation"}. ICMP has no ports: sport and dport are null and "icmp_type" says what it was. A pending
// flow is denied until the punt path exists: verdict "deny", reason "needs-l7". `policy` may be null (an
// event from a generation this daemon did not write): group and rule are then null.
nlohmann::ordered_json verdict_json(const pc_verdict_event& event, const policy::CompiledPolicy* policy,
                                    const std::string& ts);

// Reads pc_events and hands every verdict event to a handler.
class VerdictEventReader {
 public:
  using Handler = std::function<void(const pc_verdict_event&)>;

  // Throws std::runtime_error when the ring buffer cannot be mapped.
  VerdictEventReader(int events_fd, Handler handler);
  ~VerdictEventReader();
  VerdictEventReader(const VerdictEventReader&) = delete;
  VerdictEventReader& operator=(const VerdictEventReader&) = delete;

  int fd() const;  // readable (epoll) when events wait
  void consume();  // every waiting event, in order
  uint64_t malformed() const { return malformed_; }

 private:
  static int on_sample(void* context, void* data, size_t size);

  ring_buffer* ring_ = nullptr;
  Handler handler_;
  uint64_t malformed_ = 0;
};

}  // namespace portcullis::dataplane
