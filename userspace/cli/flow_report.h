// The flows the daemon tracks as the control socket reports them (`portcullis flows`): one JSON object per
// flow, and the one-line text form the command prints without --json.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "conntrack/flow_table.h"
#include "dataplane/verdict_log.h"
#include "policy/compiled_policy.h"

namespace portcullis::cli {

// A verdict line's fields (group, proto, src, sport, dst, dport, l7, name, verdict, rule, reason, generation)
// with "event":"flow", then state, packets and bytes each way ("out": from the initiator), first_seen and
// last_seen (wall clock), idle_s, and adopted when the daemon found the flow without seeing it decided.
// `policy`: the policy of the flow's generation, or null when it is no longer known.
nlohmann::ordered_json flow_json(const conntrack::TrackedFlow& flow, const policy::CompiledPolicy* policy,
                                 const dataplane::WallClock& clock, uint64_t now_ns);

// "tcp 10.0.0.2:40000 -> 198.18.0.10:443 tls allowed.test allow rule=web established out=5/517B in=4/4.1kB
// group=sandbox" from flow_json's object.
std::string flow_text(const nlohmann::json& flow);

}  // namespace portcullis::cli
