#include "cli/metrics_report.h"

#include "control/prometheus_text.h"
#include "portcullis/drop_reasons.h"
#include "portcullis/flow.h"

namespace portcullis::cli {
namespace {

using control::PrometheusLabels;
using control::PrometheusText;

uint64_t at(const std::vector<uint64_t>& counters, size_t slot) {
  return slot < counters.size() ? counters[slot] : 0;
}

}  // namespace

std::string render_metrics(const MetricsSnapshot& snapshot) {
  const std::vector<uint64_t>& counters = snapshot.counters;
  const punt::PuntStats& punts = snapshot.punts;
  PrometheusText text;

  text.family("portcullis_verdicts_total", "counter", "Flows decided, by verdict, deciding rule, reason and protocol.");
  for (const auto& [key, count] : snapshot.verdicts) {
    const auto& [verdict, rule, reason, proto] = key;
    text.sample("portcullis_verdicts_total",
                {{"verdict", verdict}, {"rule", rule}, {"reason", reason}, {"proto", proto}}, count);
  }

  uint64_t dropped = 0;
  for (uint32_t reason = PC_DROP_NONE + 1; reason < PC_DROP_MAX; ++reason) dropped += at(counters, reason);
  text.family("portcullis_packets_total", "counter", "Packets the data plane saw, by what became of them.");
  text.sample("portcullis_packets_total", {{"outcome", "passed"}}, at(counters, PC_COUNTER_PASS));
  text.sample("portcullis_packets_total", {{"outcome", "dropped"}}, dropped);
  text.sample("portcullis_packets_total", {{"outcome", "punted"}}, at(counters, PC_COUNTER_PUNTED));
  text.sample("portcullis_packets_total", {{"outcome", "reinjected"}}, at(counters, PC_COUNTER_REINJECTED));

  text.family("portcullis_drops_total", "counter", "Packets the data plane dropped, by reason.");
  for (uint32_t reason = PC_DROP_NONE + 1; reason < PC_DROP_MAX; ++reason) {
    text.sample("portcullis_drops_total", {{"reason", pc_drop_reason_name(static_cast<pc_drop_reason>(reason))}},
                at(counters, reason));
  }
  text.family("portcullis_rejects_sent_total", "counter", "TCP resets and ICMP errors sent for denied flows.");
  text.sample("portcullis_rejects_sent_total", {}, at(counters, PC_COUNTER_REJECT_SENT));
  text.family("portcullis_new_flows_total", "counter", "Flows the data plane decided or sent to the daemon.");
  text.sample("portcullis_new_flows_total", {}, at(counters, PC_COUNTER_NEW_FLOW));

  text.family("portcullis_ring_drops_total", "counter", "Records a ring buffer had no room for.");
  text.sample("portcullis_ring_drops_total", {{"ring", "events"}}, at(counters, PC_COUNTER_EVENT_LOST));
  text.sample("portcullis_ring_drops_total", {{"ring", "punts"}}, at(counters, PC_DROP_PUNT_QUEUE_FULL));

  text.family("portcullis_punted_frames_total", "counter",
              "Frames of flows waiting for their name, read by the daemon.");
  text.sample("portcullis_punted_frames_total", {}, punts.frames);
  text.family("portcullis_released_frames_total", "counter", "Held frames given back after an allow.");
  text.sample("portcullis_released_frames_total", {}, punts.released);
  text.family("portcullis_held_bytes", "gauge", "Bytes held for flows waiting for their verdict.");
  text.sample("portcullis_held_bytes", {}, punts.held_bytes);
  text.family("portcullis_pending_flows", "gauge", "Flows waiting for their verdict.");
  text.sample("portcullis_pending_flows", {}, punts.pending_flows);
  text.family("portcullis_l7_timeouts_total", "counter", "Flows denied for showing no name in time.");
  text.sample("portcullis_l7_timeouts_total", {}, punts.timeouts);

  text.family("portcullis_punt_to_verdict_seconds", "histogram",
              "Time from a flow's first punted frame to its verdict in the data plane.");
  std::vector<double> bounds;
  for (const uint64_t bound : punt::PuntStats::kLatencyBoundsUs) bounds.push_back(static_cast<double>(bound) / 1e6);
  text.histogram("portcullis_punt_to_verdict_seconds", {}, bounds, punts.latency_us,
                 static_cast<double>(punts.latency_sum_us) / 1e6);
  text.family("portcullis_dns_answer_hold_seconds", "histogram",
              "Time a DNS answer was held while what it binds was installed.");
  text.histogram("portcullis_dns_answer_hold_seconds", {}, bounds, punts.answer_hold_us,
                 static_cast<double>(punts.answer_hold_sum_us) / 1e6);

  text.family("portcullis_flows", "gauge", "Flows in the flow table, by state.");
  for (size_t state = 0; state < conntrack::kFlowStates; ++state) {
    text.sample("portcullis_flows",
                {{"state", std::string(conntrack::to_string(static_cast<conntrack::FlowState>(state)))}},
                uint64_t{snapshot.flows_by_state[state]});
  }
  text.family("portcullis_flow_table_capacity", "gauge", "Entries the data plane's flow table holds at most.");
  text.sample("portcullis_flow_table_capacity", {}, snapshot.flow_table_capacity);
  text.family("portcullis_flows_expired_total", "counter", "Flows ended for being idle past their timeout.");
  text.sample("portcullis_flows_expired_total", {}, snapshot.flows_expired);
  text.family("portcullis_flows_revoked_total", "counter",
              "Open flows cut because a reloaded policy no longer allows them.");
  text.sample("portcullis_flows_revoked_total", {}, snapshot.flows_revoked);

  text.family("portcullis_dns_bindings", "gauge", "Name-to-address bindings learned from DNS answers, held now.");
  text.sample("portcullis_dns_bindings", {}, punts.dns_bindings);
  text.family("portcullis_dns_bound_names", "gauge",
              "Addresses bound to names that deny rules name, in the data plane now.");
  text.sample("portcullis_dns_bound_names", {}, punts.bound_names);
  text.family("portcullis_dns_answers_total", "counter", "DNS answers read, by outcome.");
  text.sample("portcullis_dns_answers_total", {{"outcome", "read"}}, punts.dns_answers);
  text.sample("portcullis_dns_answers_total", {{"outcome", "malformed"}}, punts.dns_malformed);
  text.family("portcullis_dns_queries_total", "counter", "DNS queries read (dns.filter_queries), by outcome.");
  text.sample("portcullis_dns_queries_total", {{"outcome", "passed"}}, punts.dns_queries - punts.dns_filtered);
  text.sample("portcullis_dns_queries_total", {{"outcome", "filtered"}}, punts.dns_filtered);

  text.family("portcullis_parser_outcomes_total", "counter",
              "What the parsers made of what flows showed, each time they were asked.");
  for (const auto& [outcome, count] : punts.parser_outcomes) {
    text.sample("portcullis_parser_outcomes_total",
                {{"parser", outcome.parser}, {"outcome", outcome.outcome}, {"reason", outcome.reason}}, count);
  }

  text.family("portcullis_ftp_expectations_total", "counter",
              "FTP data connections the kernel's helper announced, by what became of them here.");
  text.sample("portcullis_ftp_expectations_total", {{"outcome", "mirrored"}}, snapshot.ftp_mirrored);
  text.sample("portcullis_ftp_expectations_total", {{"outcome", "refused"}}, snapshot.ftp_refused);
  text.family("portcullis_ftp_held_connections_total", "counter",
              "Connections between FTP peers held from their SYN for the kernel's expectations, by outcome.");
  text.sample("portcullis_ftp_held_connections_total", {{"outcome", "expected"}}, snapshot.ftp_resolved);
  text.sample("portcullis_ftp_held_connections_total", {{"outcome", "unexpected"}}, snapshot.ftp_unresolved);

  text.family("portcullis_reloads_total", "counter", "Policy reloads, by result.");
  text.sample("portcullis_reloads_total", {{"result", "ok"}}, snapshot.reloads_ok);
  text.sample("portcullis_reloads_total", {{"result", "failed"}}, snapshot.reloads_failed);
  text.family("portcullis_policy_generation", "gauge", "Generation of the policy in force.");
  text.sample("portcullis_policy_generation", {}, uint64_t{snapshot.generation});
  return text.str();
}

}  // namespace portcullis::cli
