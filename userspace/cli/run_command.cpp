// `portcullis run`: loads the data plane, writes the policy into it, attaches it, and logs verdicts until a
// signal: SIGHUP reloads the policy, SIGTERM and SIGINT take everything off again. SIGKILL leaves the programs
// attached and the maps pinned (fail closed); the next `run` on the same pin directory adopts both.
//
// While it runs it keeps the flow table (conntrack/): every flow's state, name and counters, idle flows ended
// after their timeouts, and on a reload the open flows the new policy no longer allows cut. The control socket
// answers `flows`, `stats` and `reload`; the metrics endpoint serves Prometheus; systemd hears READY, RELOADING
// and STOPPING.
#include <net/if.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flow_report.h"
#include "cli/metrics_report.h"
#include "conntrack/connection_cutter.h"
#include "conntrack/flow_entries.h"
#include "conntrack/flow_table.h"
#include "conntrack/ftp_data.h"
#include "conntrack/revocation.h"
#include "control/stream_server.h"
#include "dataplane/attacher.h"
#include "dataplane/bpf_objects.h"
#include "dataplane/counters.h"
#include "dataplane/frame_fields.h"
#include "dataplane/policy_map_writer.h"
#include "dataplane/policy_tables.h"
#include "dataplane/table_classifier.h"
#include "dataplane/verdict_log.h"
#include "policy/compiled_policy.h"
#include "policy/policy_loader.h"
#include "punt/monotonic_clock.h"
#include "punt/punt_handler.h"
#include "replay/capture_writer.h"
#include "service/sd_notify.h"

namespace portcullis::cli {
namespace {

using dataplane::Attacher;
using dataplane::BpfObjects;
using dataplane::PolicyMapWriter;
using Json = nlohmann::ordered_json;

struct RunOptions {
  std::string policy_path;
  std::string mode;
  std::vector<std::string> inside;
  std::vector<std::string> outside;
  std::vector<std::string> ifaces;
  std::string log;
  std::string pin_dir = "/sys/fs/bpf/portcullis";
  uint32_t flow_table_size = 0;
  std::string xdp = "off";
  punt::PuntSettings punt;
  std::string control;      // Unix socket path, or empty for none
  std::string metrics;      // ADDR:PORT, or empty for none
  std::string pcap_denied;  // capture file of the frames each deny was taken on, or empty
  std::string masquerade;   // gateway: the outside interface the sandboxes' traffic is NATed on, or empty
  std::vector<std::string> timeouts;
};

// Flow-table upkeep: every so many 100 ms ticks the data plane's entries are read back, idle flows ended.
constexpr uint32_t kSyncTicks = 20;

// Where the JSON lines go: stderr by default, stdout for "-", else a file (appended to). Every line is
// flushed at once: the log is what tests and operators follow live.
class JsonLog {
 public:
  explicit JsonLog(const std::string& target) {
    if (target.empty()) {
      out_ = stderr;
    } else if (target == "-") {
      out_ = stdout;
    } else {
      out_ = std::fopen(target.c_str(), "a");
      if (out_ == nullptr) throw std::runtime_error("cannot open the log " + target + ": " + std::strerror(errno));
      owned_ = true;
    }
  }
  ~JsonLog() {
    if (owned_) (void)std::fclose(out_);
  }
  JsonLog(const JsonLog&) = delete;
  JsonLog& operator=(const JsonLog&) = delete;

  void write(const Json& line) {
    const std::string text = line.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    (void)std::fwrite(text.data(), 1, text.size(), out_);
    (void)std::fflush(out_);
  }

 private:
  std::FILE* out_ = nullptr;
  bool owned_ = false;
};

struct LoadedPolicy {
  std::shared_ptr<const policy::CompiledPolicy> compiled;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};

LoadedPolicy load(const std::string& path) {
  LoadedPolicy loaded;
  policy::LoadResult result = policy::load_policy_file(path);
  for (const policy::Diagnostic& diagnostic : result.diagnostics) {
    (diagnostic.severity == policy::Diagnostic::Severity::error ? loaded.errors : loaded.warnings)
        .push_back(policy::format_diagnostic(path, diagnostic));
  }
  if (result.policy) loaded.compiled = policy::compile_policy(std::move(*result.policy));
  return loaded;
}

std::optional<std::string> check_interfaces(const RunOptions& options, policy::Mode mode) {
  if (mode == policy::Mode::gateway) {
    if (!options.ifaces.empty()) return "--iface is for host mode; gateway mode takes --inside and --outside";
    if (options.inside.empty() || options.outside.empty()) return "gateway mode needs --inside and --outside";
    if (!options.masquerade.empty() &&
        std::find(options.outside.begin(), options.outside.end(), options.masquerade) == options.outside.end()) {
      return "--masquerade " + options.masquerade + " is not one of the --outside interfaces";
    }
  } else {
    if (!options.masquerade.empty()) return "--masquerade is for gateway mode";
    if (!options.inside.empty() || !options.outside.empty()) {
      return "--inside and --outside are for gateway mode; host mode takes --iface";
    }
    if (options.ifaces.empty()) return "host mode needs --iface";
  }
  std::set<std::string> seen;
  for (const auto* list : {&options.inside, &options.outside, &options.ifaces}) {
    for (const std::string& iface : *list) {
      if (iface.empty()) return "an empty interface name";
      if (!seen.insert(iface).second) return "interface " + iface + " is named twice";
      if (::if_nametoindex(iface.c_str()) == 0) return "interface " + iface + ": " + std::strerror(errno);
    }
  }
  return std::nullopt;
}

Json punt_json(const punt::PuntStats& stats) {
  Json out;
  out["frames"] = stats.frames;
  out["malformed"] = stats.malformed;
  out["released"] = stats.released;
  out["late_released"] = stats.late_released;
  out["dropped"] = stats.dropped;
  out["send_errors"] = stats.send_errors;
  out["decided"] = stats.decided;
  out["timeouts"] = stats.timeouts;
  out["dns_answers"] = stats.dns_answers;
  out["dns_malformed"] = stats.dns_malformed;
  out["dns_bindings"] = stats.dns_bindings;
  out["bound_names"] = stats.bound_names;
  out["dns_queries"] = stats.dns_queries;
  out["dns_filtered"] = stats.dns_filtered;
  out["pending_flows"] = stats.pending_flows;
  out["held_bytes"] = stats.held_bytes;
  const auto histogram = [](const uint64_t(&buckets)[std::size(punt::PuntStats::kLatencyBoundsUs) + 1],
                            uint64_t sum_us) {
    Json counts;
    for (size_t i = 0; i < std::size(buckets); ++i) {
      const std::string bound = i < std::size(punt::PuntStats::kLatencyBoundsUs)
                                    ? "le_" + std::to_string(punt::PuntStats::kLatencyBoundsUs[i]) + "us"
                                    : "more";
      counts[bound] = buckets[i];
    }
    counts["sum_us"] = sum_us;
    return counts;
  };
  out["punt_to_verdict"] = histogram(stats.latency_us, stats.latency_sum_us);
  out["answer_hold"] = histogram(stats.answer_hold_us, stats.answer_hold_sum_us);
  return out;
}

Json string_array(const std::vector<std::string>& items) {
  Json array = Json::array();
  for (const std::string& item : items) array.push_back(item);
  return array;
}

class RunCommand {
 public:
  explicit RunCommand(RunOptions options)
      : options_(std::move(options)), mode_(options_.mode == "host" ? policy::Mode::host : policy::Mode::gateway) {}

  int run() {
    if (const auto problem = check_interfaces(options_, mode_)) {
      std::cerr << "portcullis run: " << *problem << '\n';
      return 2;
    }
    conntrack::Timeouts timeouts;
    for (const std::string& assignment : options_.timeouts) {
      if (const std::string problem = conntrack::set_timeout(timeouts, assignment); !problem.empty()) {
        std::cerr << "portcullis run: --timeout: " << problem << '\n';
        return 2;
      }
    }
    flows_.set_timeouts(timeouts);
    // Blocked before anything is attached: a signal during start-up waits for the loop, which then cleans up.
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, signal);
    if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) return fail_start("cannot block signals");
    (void)::signal(SIGPIPE, SIG_IGN);  // a log on a closed pipe must not kill the firewall

    LoadedPolicy loaded = load(options_.policy_path);
    for (const std::string& line : loaded.warnings) std::cerr << line << '\n';
    for (const std::string& line : loaded.errors) std::cerr << line << '\n';
    if (!loaded.compiled) {
      std::cerr << options_.policy_path << ": " << loaded.errors.size() << " error(s); nothing was loaded\n";
      return 1;
    }
    try {
      log_ = std::make_unique<JsonLog>(options_.log);
      start(loaded.compiled);
    } catch (const std::exception& e) {
      return fail_start(e.what());
    }
    return serve(signals);
  }

 private:
  void start(const std::shared_ptr<const policy::CompiledPolicy>& compiled) {
    if (mode_ == policy::Mode::gateway && compiled->policy().groups.empty()) {
      std::cerr << "portcullis run: warning: gateway mode with a policy without groups: every source is in no "
                   "group, so everything from the inside is dropped\n";
    }
    dataplane::PolicyTables tables = dataplane::build_policy_tables(*compiled, mode_, 0);
    dataplane::BpfObjectsOptions object_options;
    object_options.pin_dir = options_.pin_dir;
    object_options.flow_table_entries = options_.flow_table_size;
    object_options.min_rule_sets = PolicyMapWriter::capacity_needed(tables.rule_sets.size());
    objects_ = BpfObjects::load(object_options);
    if (!objects_->warning().empty()) std::cerr << "portcullis run: warning: " << objects_->warning() << '\n';

    writer_ = std::make_unique<PolicyMapWriter>(objects_->policy_maps(), objects_->rule_set_capacity());
    const dataplane::TableClassifier classifier(tables);
    write_policy(compiled, tables);
    if (tables.overflowing_rule_sets != 0) {
      std::cerr << "portcullis run: warning: " << tables.overflowing_rule_sets
                << " rule set(s) have more rules than the data plane holds per prefix; flows they decide are "
                   "denied as needs-l7\n";
    }

    // Pending flows are the punt handler's to decide and log; every other verdict is logged as it comes.
    punt_ = std::make_unique<punt::PuntHandler>(objects_->punts_map(), objects_->flows_map(),
                                                objects_->punt_config_map(), mode_, options_.punt,
                                                [this](const punt::PuntDecision& decision) { log_decision(decision); });
    punt_->set_policy(compiled, generation_);
    punt_->keep_bound_names(objects_->bound_names_map());
    if (!options_.pcap_denied.empty()) {
      denied_capture_ = std::make_unique<replay::CaptureWriter>(options_.pcap_denied, replay::CaptureWriter::kEthernet,
                                                                replay::CaptureWriter::Open::append);
      punt_->capture_denied([this](std::span<const uint8_t> frame, uint64_t monotonic_ns) {
        denied_capture_->write(frame, wall_ns() - (punt::monotonic_ns() - monotonic_ns));
        denied_capture_->flush();
      });
    }
    punt_->tick();  // the heartbeat is there before any program can punt
    // FTP: the helper on the ftp rules' control connections, their expectations into the data plane.
    ftp_ = std::make_unique<conntrack::FtpDataConnections>(
        objects_->expects_map(), objects_->ftp_peers_map(), objects_->flows_map(), mode_,
        options_.masquerade.empty() ? std::nullopt : std::optional<std::string>(options_.masquerade));
    if (std::string problem = ftp_->set_policy(compiled, generation_); !problem.empty()) {
      throw std::runtime_error(problem);
    }
    punt_->resolve_expectations([this](const punt::PendingFlowFacts& facts) { return ftp_->resolve(facts); });
    punt_->observe_bindings([this](std::optional<size_t> group, const std::vector<std::string>& names,
                                   const policy::IpAddress& address, uint32_t seconds,
                                   uint64_t) { ftp_->on_bound(group, names, address, seconds); });
    events_ =
        std::make_unique<dataplane::VerdictEventReader>(objects_->events_map(), [this](const pc_verdict_event& event) {
          flows_.on_verdict(event);
          ftp_->on_verdict(event);
          if (event.verdict == PC_VERDICT_PENDING) return punt_->on_pending_event(event);
          write_verdict(
              dataplane::verdict_json(event, generations_.find(event.generation), clock_.iso8601(event.timestamp_ns)));
        });
    counters_ = std::make_unique<dataplane::CounterReader>(objects_->counters_map());
    // The open flows a previous daemon left are adopted, and judged by this policy, which may not be its.
    if (objects_->adopted()) {
      adopted_ = revoke(*compiled, classifier);  // reads the flow table first
    } else {
      sync_flows();
    }
    if (!options_.control.empty()) {
      control_ = std::make_unique<control::UnixControlServer>(
          options_.control, [this](const std::string& request) { return answer_control(request); });
    }
    if (!options_.metrics.empty()) {
      metrics_ = std::make_unique<control::HttpMetricsServer>(options_.metrics, [this] { return render_metrics(); });
    }

    const dataplane::XdpMode xdp = options_.xdp == "native"    ? dataplane::XdpMode::native
                                   : options_.xdp == "generic" ? dataplane::XdpMode::generic
                                                               : dataplane::XdpMode::off;
    attacher_ =
        std::make_unique<Attacher>(objects_->map_ids(), objects_->pin_dir(), dataplane::TcAttachMode::automatic, xdp);
    const std::vector<std::string>& protected_side = mode_ == policy::Mode::gateway ? options_.inside : options_.ifaces;
    for (const dataplane::PlannedAttachment& planned :
         dataplane::plan_attachments(mode_, protected_side, options_.outside, xdp, !options_.masquerade.empty())) {
      attacher_->attach(planned.iface, planned.point, program_fd(planned.program));
    }
    if (xdp == dataplane::XdpMode::off) {
      for (const std::string& iface : protected_side) {
        if (const std::string problem = attacher_->remove_stale_xdp(iface); !problem.empty()) {
          throw std::runtime_error(problem);
        }
      }
    }
    log_ready(*compiled);
  }

  int program_fd(dataplane::DataPlaneProgram program) const {
    switch (program) {
      case dataplane::DataPlaneProgram::inside:
        return objects_->inside_program();
      case dataplane::DataPlaneProgram::outside:
        return objects_->outside_program();
      case dataplane::DataPlaneProgram::reinject:
        return objects_->reinject_program();
      case dataplane::DataPlaneProgram::xdp:
        return objects_->xdp_program();
    }
    return -1;
  }

  // Writes `tables` as the next generation.
  uint32_t next_generation() const {
    const uint32_t generation = writer_->current_generation() + 1;
    return generation == 0 ? 1 : generation;  // 0 means "never written"
  }

  void write_policy(const std::shared_ptr<const policy::CompiledPolicy>& compiled, dataplane::PolicyTables& tables) {
    const uint32_t generation = next_generation();
    tables.config.generation = generation;
    writer_->write(tables);
    generations_.add(generation, compiled);
    generation_ = generation;
    if (punt_) punt_->set_policy(compiled, generation);
  }

  void log_decision(const punt::PuntDecision& decision) {
    Json line = dataplane::verdict_json(decision.event, generations_.find(decision.event.generation),
                                        clock_.iso8601(decision.event.timestamp_ns));
    line["l7"] = policy::to_string(decision.identity.l7);
    line["name"] = decision.identity.name ? Json(*decision.identity.name) : Json(nullptr);
    if (!decision.identity.detail.empty() && decision.identity.detail != "none") {
      line["detail"] = decision.identity.detail;
    }
    const bool allowed = decision.event.verdict == PC_VERDICT_ALLOW;
    // A filtered DNS query is one query of a resolver flow that stays open: the flow's entry is not its.
    if (decision.identity.l7 != policy::L7Proto::dns) {
      std::vector<std::string> bound_names;
      if (allowed && !decision.identity.name) {
        const std::optional<size_t> group =
            decision.event.scope != PC_SCOPE_TOP_LEVEL ? std::optional<size_t>(decision.event.scope - 1) : std::nullopt;
        bound_names = punt_->bindings().names_of(
            group, dataplane::address_of(decision.event.dst, decision.event.family), punt::monotonic_ns());
      }
      flows_.on_decision(decision.event, decision.identity, std::move(bound_names));
      ftp_->on_verdict(decision.event);
    }
    if (!allowed && denied_capture_) {
      const uint64_t now = wall_ns();
      for (const std::span<const uint8_t> frame : decision.frames) denied_capture_->write(frame, now);
      denied_capture_->flush();
    }
    write_verdict(line);
  }

  // Every verdict line goes out through here, and is counted for the metrics.
  void write_verdict(const Json& line) {
    const auto text = [&](const char* field) {
      const Json& value = line.at(field);
      return value.is_string() ? value.get<std::string>() : std::string();
    };
    ++verdict_counts_[{text("verdict"), text("rule"), text("reason"), text("proto")}];
    log_->write(line);
  }

  static uint64_t wall_ns() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
  }

  // A failed start takes off what it added. What a previous daemon left stays: it is still enforcing.
  int fail_start(const std::string& message) {
    std::cerr << "portcullis run: " << message << '\n';
    if (ftp_) (void)ftp_->remove();
    if (attacher_) {
      const std::string problems = attacher_->detach_new();
      if (!problems.empty()) std::cerr << "portcullis run: " << problems;
    }
    if (objects_ && !objects_->adopted()) {
      const std::string problems = objects_->unpin();
      if (!problems.empty()) std::cerr << "portcullis run: " << problems;
    }
    return 1;
  }

  void log_ready(const policy::CompiledPolicy& compiled) {
    Json ready;
    ready["event"] = "ready";
    ready["ts"] = dataplane::WallClock::now_iso8601();
    ready["mode"] = mode_ == policy::Mode::gateway ? "gateway" : "host";
    if (mode_ == policy::Mode::gateway) {
      ready["inside"] = string_array(options_.inside);
      ready["outside"] = string_array(options_.outside);
    } else {
      ready["ifaces"] = string_array(options_.ifaces);
    }
    ready["policy"] = options_.policy_path;
    ready["rules"] = compiled.rules().size();
    ready["groups"] = compiled.policy().groups.size();
    ready["generation"] = generation_;
    ready["pin_dir"] = objects_->pin_dir();
    ready["adopted"] = objects_->adopted();
    ready["flow_table_entries"] = objects_->flow_table_capacity();
    if (objects_->adopted()) {
      ready["flows_adopted"] = adopted_.checked;
      ready["flows_revoked"] = adopted_.revoked;
      if (adopted_.unverifiable != 0) ready["flows_unverifiable"] = adopted_.unverifiable;
    }
    Json attached = Json::array();
    for (const dataplane::Attachment& attachment : attacher_->attachments()) {
      Json item;
      item["iface"] = attachment.iface;
      item["hook"] = dataplane::hook_name(attachment);
      item["prog_id"] = attachment.prog_id;
      if (attachment.point == dataplane::AttachPoint::xdp) {
        item["xdp_mode"] = dataplane::xdp_mode_name(attachment);
      }
      item["replaced"] = attachment.replaced;
      attached.push_back(std::move(item));
    }
    ready["attached"] = std::move(attached);
    log_->write(ready);
  }

  int serve(const sigset_t& signals) {
    const int signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC);
    const int epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (signal_fd < 0 || epoll_fd < 0)
      return stop("setting up the event loop failed: " + std::string(std::strerror(errno)));
    epoll_event watch{};
    watch.events = EPOLLIN;
    watch.data.fd = signal_fd;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signal_fd, &watch);
    watch.data.fd = events_->fd();
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, events_->fd(), &watch);
    watch.data.fd = punt_->fd();
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, punt_->fd(), &watch);
    // The punt handler's clock: heartbeat and l7 timeouts.
    const int timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer_fd < 0) return stop("timerfd: " + std::string(std::strerror(errno)));
    const itimerspec period{{0, 100'000'000}, {0, 100'000'000}};
    ::timerfd_settime(timer_fd, 0, &period, nullptr);
    watch.data.fd = timer_fd;
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &watch);
    for (const int server_fd : {control_ ? control_->fd() : -1, metrics_ ? metrics_->fd() : -1}) {
      if (server_fd < 0) continue;
      watch.data.fd = server_fd;
      ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, server_fd, &watch);
    }
    epoll_fd_ = epoll_fd;
    watch_ftp();
    // Enforcing: systemd (Type=notify) may start what comes after the firewall.
    service::notify_ready("enforcing generation " + std::to_string(generation_));

    for (;;) {
      epoll_event ready[8];
      const int n = ::epoll_wait(epoll_fd, ready, 8, -1);
      if (n < 0 && errno != EINTR) return stop("epoll: " + std::string(std::strerror(errno)));
      for (int i = 0; i < n; ++i) {
        if (ready[i].data.fd == timer_fd) {
          uint64_t expirations = 0;
          (void)::read(timer_fd, &expirations, sizeof(expirations));
          punt_->tick();
          if (control_) control_->tick();
          if (metrics_) metrics_->tick();
          if (++ticks_ >= next_sync_tick_) sync_flows();
          continue;
        }
        if (ready[i].data.fd == ftp_->fd()) {
          ftp_->on_readable();
          continue;
        }
        if (control_ && ready[i].data.fd == control_->fd()) {
          control_->on_readable();
          continue;
        }
        if (metrics_ && ready[i].data.fd == metrics_->fd()) {
          metrics_->on_readable();
          continue;
        }
        if (ready[i].data.fd == punt_->fd()) {
          // Verdict events first: a flow's pending event starts its clock before its frames are read.
          clock_ = dataplane::WallClock();
          events_->consume();
          punt_->consume();
          continue;
        }
        if (ready[i].data.fd != signal_fd) {
          clock_ = dataplane::WallClock();
          events_->consume();
          continue;
        }
        signalfd_siginfo info{};
        if (::read(signal_fd, &info, sizeof(info)) != static_cast<ssize_t>(sizeof(info))) continue;
        if (info.ssi_signo == SIGHUP) {
          reload("SIGHUP");
        } else {
          ::close(epoll_fd);
          ::close(signal_fd);
          ::close(timer_fd);
          return stop(info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        }
      }
    }
  }

  // FTP's expectation events join the loop once a policy has ftp rules (at start, or at a reload).
  void watch_ftp() {
    if (epoll_fd_ < 0 || ftp_watched_ || ftp_->fd() < 0) return;
    epoll_event watch{};
    watch.events = EPOLLIN;
    watch.data.fd = ftp_->fd();
    ftp_watched_ = ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ftp_->fd(), &watch) == 0;
  }

  struct ReloadOutcome {
    bool ok = false;
    Json line;  // the reload log line
  };

  // Loads and checks the policy file again; only a policy that compiles and fits the data plane replaces the
  // one in force, and then the open flows it no longer allows are cut.
  ReloadOutcome reload(const std::string& trigger) {
    service::notify_reloading();
    LoadedPolicy loaded = load(options_.policy_path);
    Json line;
    line["event"] = "reload";
    line["ts"] = dataplane::WallClock::now_iso8601();
    line["trigger"] = trigger;
    line["policy"] = options_.policy_path;
    RevocationCounts revoked;
    if (loaded.compiled) {
      try {
        dataplane::PolicyTables tables = dataplane::build_policy_tables(*loaded.compiled, mode_, 0);
        const dataplane::TableClassifier classifier(tables);
        // The nftables table first: were it refused, nothing has changed yet.
        if (std::string problem = ftp_->set_policy(loaded.compiled, next_generation()); !problem.empty()) {
          throw std::runtime_error(problem);
        }
        write_policy(loaded.compiled, tables);
        watch_ftp();
        revoked = revoke(*loaded.compiled, classifier);
      } catch (const std::exception& e) {
        loaded.errors.push_back(e.what());
      }
    }
    const bool ok = loaded.errors.empty();
    ++(ok ? reloads_ok_ : reloads_failed_);
    line["ok"] = ok;
    if (ok) {
      line["generation"] = generation_;
      line["rules"] = loaded.compiled->rules().size();
      line["groups"] = loaded.compiled->policy().groups.size();
      line["flows_checked"] = revoked.checked;
      line["flows_revoked"] = revoked.revoked;
      if (revoked.unverifiable != 0) line["flows_unverifiable"] = revoked.unverifiable;
    } else {
      line["errors"] = string_array(loaded.errors);
      line["running_generation"] = generation_;
    }
    line["warnings"] = string_array(loaded.warnings);
    log_->write(line);
    service::notify_ready("enforcing generation " + std::to_string(generation_));
    return ReloadOutcome{ok, line};
  }

  struct RevocationCounts {
    size_t checked = 0;
    size_t revoked = 0;
    size_t unverifiable = 0;
  };

  // Every open flow decided under an older policy, judged by the new one: kept under the rule that now allows
  // it, or revoked (denied in the data plane, its kernel conntrack entry deleted, a TCP connection reset at
  // both ends) and logged with reason "revoked". An FTP data connection stays while a control connection
  // between its two ends does; a revoked control connection takes its expectations with it.
  RevocationCounts revoke(const policy::CompiledPolicy& compiled, const dataplane::TableClassifier& classifier) {
    RevocationCounts counts;
    sync_flows();
    const uint64_t now = punt::monotonic_ns();
    const int flows_fd = objects_->flows_map();
    const auto open = [&](const conntrack::TrackedFlow& flow) {
      const uint8_t verdict = flow.data.verdict;
      return (verdict == PC_VERDICT_ALLOW || verdict == PC_VERDICT_DRAINING || verdict == PC_VERDICT_INSPECT) &&
             flow.data.rule_id != PC_RULE_INBOUND && flow.data.generation != generation_ && !flow.finished();
    };
    const auto keep = [&](conntrack::TrackedFlow& flow, uint32_t rule_id) {
      (void)conntrack::set_flow_verdict(flows_fd, flow.key, flow.data.verdict, flow.data.reason, rule_id, generation_);
      flow.data.rule_id = rule_id;
      flow.data.generation = generation_;
    };
    const auto cut = [&](conntrack::TrackedFlow& flow, uint32_t rule_id, const std::string& revoked_by) {
      ++counts.revoked;
      ++flows_revoked_;
      if (!conntrack::set_flow_verdict(flows_fd, flow.key, PC_VERDICT_DENY, PC_DROP_REVOKED, rule_id, generation_)) {
        return;  // gone meanwhile
      }
      // Whatever it was decided as (an adopted flow's policy is not known here), a TCP connection may be a
      // control connection whose expectations must go with it.
      const bool ftp_control = flow.key.proto == 6 && flow.data.reason != PC_DROP_EXPECTED;
      const bool ftp_data = flow.data.reason == PC_DROP_EXPECTED;
      flow.data.verdict = PC_VERDICT_DENY;
      flow.data.reason = PC_DROP_REVOKED;
      flow.data.rule_id = rule_id;
      flow.data.generation = generation_;
      std::string problem = cutter_.cut(flow);
      if (ftp_control) {
        const std::string expectations = ftp_->forget_control(flow.event);
        if (!expectations.empty()) problem += (problem.empty() ? "" : "; ") + expectations;
      }
      // A verdict line, as the log's others read: event and time first, then the flow.
      Json line{{"event", "verdict"}, {"ts", dataplane::WallClock::now_iso8601()}};
      const Json listed = flow_json(flow, &compiled, clock_, now);
      for (const auto& [field, value] : listed.items()) {
        if (field != "event") line[field] = value;
      }
      line["revoked_by"] = revoked_by;
      if (ftp_data) line["l7"] = "ftp";
      for (const char* field : {"state", "first_seen", "last_seen", "idle_s", "adopted"}) line.erase(field);
      if (!problem.empty()) line["problem"] = problem;
      write_verdict(line);
    };
    // The two ends of each FTP control connection that stays, with its rule under the new policy.
    std::map<std::pair<std::string, std::string>, uint32_t> ftp_controls;
    const auto ends = [](const conntrack::TrackedFlow& flow) {
      const std::string a = flow.src().to_string(), b = flow.dst().to_string();
      return a < b ? std::pair{a, b} : std::pair{b, a};
    };
    flows_.for_each([&](conntrack::TrackedFlow& flow) {
      if (!open(flow) || flow.data.reason == PC_DROP_EXPECTED) return;
      ++counts.checked;
      const conntrack::Reevaluation judged =
          conntrack::reevaluate(flow, compiled, mode_, classifier, punt_->bindings(), now);
      if (!judged.allow)
        return cut(flow, judged.rule_id, pc_drop_reason_name(static_cast<pc_drop_reason>(judged.reason)));
      counts.unverifiable += judged.unverifiable ? 1 : 0;
      keep(flow, judged.rule_id);
      if (flow.key.proto == 6 && conntrack::is_ftp_allow_rule(compiled, judged.rule_id)) {
        ftp_controls.emplace(ends(flow), judged.rule_id);
      }
    });
    flows_.for_each([&](conntrack::TrackedFlow& flow) {
      if (!open(flow) || flow.data.reason != PC_DROP_EXPECTED) return;
      ++counts.checked;
      const auto control = ftp_controls.find(ends(flow));
      if (control == ftp_controls.end()) return cut(flow, PC_RULE_NONE, "control-connection");
      keep(flow, control->second);
    });
    return counts;
  }

  // Reads the data plane's flow table back: counters and states, adopted flows, and the idle ones ended.
  void sync_flows() {
    const uint64_t started = punt::monotonic_ns();
    events_->consume();  // decisions before the entries they made
    try {
      const std::vector<conntrack::FlowTable::Entry> entries = conntrack::read_flow_entries(objects_->flows_map());
      const conntrack::FlowTable::SyncResult result = flows_.sync(entries, punt::monotonic_ns());
      flows_expired_ += conntrack::delete_flow_entries(objects_->flows_map(), result.expired);
      if (ftp_) ftp_->refresh_peers(flows_);
    } catch (const std::exception& e) {
      if (++sync_errors_ <= 3) std::cerr << "portcullis run: " << e.what() << '\n';
    }
    // A large table takes a while to read back: the next sync waits ten times as long, so upkeep never takes
    // more than a tenth of the loop.
    const uint64_t took_ticks = (punt::monotonic_ns() - started) / 100'000'000ULL;
    next_sync_tick_ = ticks_ + std::max<uint64_t>(kSyncTicks, 10 * took_ticks);
  }

  // One request line from the control socket: {"command":"flows","group":G}, {"command":"stats"} or
  // {"command":"reload"}. Answers JSON lines: one per flow, or one object.
  std::string answer_control(const std::string& request_line) {
    Json request;
    try {
      request = Json::parse(request_line);
    } catch (const std::exception&) {
      return Json{{"ok", false}, {"error", "the request is not a JSON object"}}.dump() + "\n";
    }
    const std::string command = request.value("command", "");
    if (command == "flows") return answer_flows(request.value("group", ""));
    if (command == "stats") return stats_json().dump() + "\n";
    if (command == "reload") return reload("control").line.dump() + "\n";
    return Json{{"ok", false}, {"error", "unknown command \"" + command + "\" (flows, stats, reload)"}}.dump() + "\n";
  }

  std::string answer_flows(const std::string& group) {
    sync_flows();
    clock_ = dataplane::WallClock();
    const uint64_t now = punt::monotonic_ns();
    std::string out;
    flows_.for_each([&](const conntrack::TrackedFlow& flow) {
      const Json line = flow_json(flow, generations_.find(flow.data.generation), clock_, now);
      if (!group.empty() && (!line.at("group").is_string() || line.at("group").get<std::string>() != group)) return;
      out += line.dump(-1, ' ', false, Json::error_handler_t::replace);
      out += '\n';
    });
    return out;
  }

  Json stats_json() {
    sync_flows();
    Json out;
    out["event"] = "stats";
    out["ts"] = dataplane::WallClock::now_iso8601();
    out["mode"] = mode_ == policy::Mode::gateway ? "gateway" : "host";
    out["policy"] = options_.policy_path;
    out["generation"] = generation_;
    try {
      out["counters"] = dataplane::counters_json(counters_->read());
    } catch (const std::exception& e) {
      out["counters"] = nullptr;
    }
    out["punts"] = punt_json(punt_->stats());
    Json flows;
    flows["total"] = flows_.size();
    flows["capacity"] = objects_->flow_table_capacity();
    const auto by_state = flows_.count_by_state();
    for (size_t state = 0; state < by_state.size(); ++state) {
      flows[std::string(conntrack::to_string(static_cast<conntrack::FlowState>(state)))] = by_state[state];
    }
    flows["expired"] = flows_expired_;
    flows["revoked"] = flows_revoked_;
    out["flows"] = std::move(flows);
    out["reloads"] = Json{{"ok", reloads_ok_}, {"failed", reloads_failed_}};
    const conntrack::FtpDataConnections::Stats& ftp = ftp_->stats();
    out["ftp"] = Json{{"expectations_mirrored", ftp.mirrored},
                      {"expectations_refused", ftp.refused},
                      {"held_resolved", ftp.resolved},
                      {"held_unresolved", ftp.unresolved},
                      {"events_lost", ftp.lost_events}};
    for (std::string& problem : ftp_->take_errors()) ftp_errors_.push_back(std::move(problem));
    if (!ftp_errors_.empty()) out["ftp"]["errors"] = string_array(ftp_errors_);
    return out;
  }

  std::string render_metrics() {
    MetricsSnapshot snapshot;
    try {
      snapshot.counters = counters_->read();
    } catch (const std::exception&) {
      snapshot.counters.clear();
    }
    snapshot.punts = punt_->stats();
    snapshot.verdicts = verdict_counts_;
    snapshot.flows_by_state = flows_.count_by_state();
    snapshot.flow_table_capacity = objects_->flow_table_capacity();
    snapshot.flows_expired = flows_expired_;
    snapshot.flows_revoked = flows_revoked_;
    snapshot.reloads_ok = reloads_ok_;
    snapshot.reloads_failed = reloads_failed_;
    snapshot.generation = generation_;
    snapshot.ftp_mirrored = ftp_->stats().mirrored;
    snapshot.ftp_refused = ftp_->stats().refused;
    snapshot.ftp_resolved = ftp_->stats().resolved;
    snapshot.ftp_unresolved = ftp_->stats().unresolved;
    return cli::render_metrics(snapshot);
  }

  // Drains the verdicts still waiting, takes every program off and removes the pins.
  int stop(const std::string& why) {
    service::notify_stopping();
    events_->consume();
    punt_->stop_heartbeat();
    control_.reset();  // the socket file goes with it
    metrics_.reset();
    denied_capture_.reset();
    Json line;
    line["event"] = "stopped";
    line["ts"] = dataplane::WallClock::now_iso8601();
    line["why"] = why;
    try {
      line["counters"] = dataplane::counters_json(counters_->read());
    } catch (const std::exception& e) {
      line["counters"] = nullptr;
    }
    line["punts"] = punt_json(punt_->stats());
    if (!punt_->errors().empty()) line["punt_errors"] = string_array(punt_->errors());
    std::string problems = attacher_->detach_all();
    if (ftp_) {
      if (std::string problem = ftp_->remove(); !problem.empty()) problems += problem + "\n";
      ftp_.reset();
    }
    events_.reset();
    punt_.reset();
    problems += objects_->unpin();
    objects_.reset();
    line["ok"] = problems.empty();
    if (!problems.empty()) line["problems"] = problems;
    log_->write(line);
    return problems.empty() ? 0 : 1;
  }

  RunOptions options_;
  policy::Mode mode_;
  std::unique_ptr<JsonLog> log_;
  std::unique_ptr<BpfObjects> objects_;
  std::unique_ptr<PolicyMapWriter> writer_;
  std::unique_ptr<punt::PuntHandler> punt_;
  std::unique_ptr<dataplane::VerdictEventReader> events_;
  std::unique_ptr<dataplane::CounterReader> counters_;
  std::unique_ptr<Attacher> attacher_;
  dataplane::PolicyGenerations generations_;
  dataplane::WallClock clock_;
  uint32_t generation_ = 0;
  conntrack::FlowTable flows_;
  conntrack::ConnectionCutter cutter_;
  std::unique_ptr<control::UnixControlServer> control_;
  std::unique_ptr<control::HttpMetricsServer> metrics_;
  std::unique_ptr<replay::CaptureWriter> denied_capture_;
  std::unique_ptr<conntrack::FtpDataConnections> ftp_;
  std::vector<std::string> ftp_errors_;
  int epoll_fd_ = -1;
  bool ftp_watched_ = false;
  VerdictCounts verdict_counts_;
  uint64_t ticks_ = 0;
  uint64_t next_sync_tick_ = kSyncTicks;
  uint64_t flows_expired_ = 0;
  uint64_t flows_revoked_ = 0;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  uint64_t sync_errors_ = 0;
  RevocationCounts adopted_;  // the open flows found at start, when a previous daemon's state was adopted
};

}  // namespace

Runner add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* command = app.add_subcommand("run", "Enforce a policy: load the data plane, attach it, log verdicts");
  command->add_option("--policy", options->policy_path, "policy file (YAML)")->required();
  command->add_option("--mode", options->mode, "gateway (route for sandboxes) or host (guard this host)")
      ->required()
      ->check(CLI::IsMember({"gateway", "host"}));
  command->add_option("--inside", options->inside, "gateway: interfaces facing the sandboxes")->delimiter(',');
  command->add_option("--outside", options->outside, "gateway: interfaces facing the outside")->delimiter(',');
  command->add_option("--iface", options->ifaces, "host: the uplinks")->delimiter(',');
  command
      ->add_option("--xdp", options->xdp,
                   "gateway: XDP early drop of denied flows on the inside interfaces: off, native or generic "
                   "(default off: on veth, XDP stops GSO super-packets and costs most of the bulk throughput)")
      ->check(CLI::IsMember({"off", "native", "generic"}));
  command->add_option("--log", options->log, "JSON lines to FILE (appended), or - for stdout (default: stderr)");
  command->add_option("--pin-dir", options->pin_dir,
                      "bpffs directory of the pinned maps (default /sys/fs/bpf/portcullis)");
  command
      ->add_option("--flow-table-size", options->flow_table_size,
                   "flow table entries when it is created (default 262144; an adopted table keeps its size)")
      ->check(CLI::Range(1024u, 1u << 26));
  command
      ->add_option("--flow-hold-bytes", options->punt.flow_hold_bytes,
                   "bytes a flow waiting for its name may have held before it is denied (default 65536)")
      ->check(CLI::Range(1500u, 1u << 24));
  command
      ->add_option("--hold-bytes", options->punt.total_hold_bytes,
                   "bytes held over every waiting flow before new ones are denied (default 64 MiB)")
      ->check(CLI::Range(uint64_t{1} << 16, uint64_t{1} << 34));
  command
      ->add_option("--punt-rate", options->punt.rate_per_sec,
                   "frames per second one source may send to the daemon, sustained (default 2000)")
      ->check(CLI::Range(1u, 1000000000u));
  command->add_option("--punt-burst", options->punt.burst, "... and in a burst (default 4000)")
      ->check(CLI::Range(1u, 0xffffffffu));
  command->add_option("--control", options->control,
                      "Unix socket (mode 0600) for `portcullis flows|stats|reload --control SOCKET`");
  command->add_option("--metrics", options->metrics,
                      "serve Prometheus metrics at http://ADDR:PORT/metrics (127.0.0.1:9464, [::1]:9464)");
  command->add_option("--masquerade", options->masquerade,
                      "gateway: NAT the sandboxes' traffic leaving through this outside interface (nftables)");
  command->add_option("--pcap-denied", options->pcap_denied,
                      "append the frames each denial was taken on to this pcap file");
  command
      ->add_option("--timeout", options->timeouts,
                   "idle timeout of a flow state, NAME=SECONDS, repeatable: tcp_handshake (120), tcp_established "
                   "(432000), tcp_closing (120), tcp_closed (10), udp (30), udp_replied (120), icmp (30), denied (30)")
      ->delimiter(',')
      ->allow_extra_args(false);
  return [options]() { return RunCommand(*options).run(); };
}

}  // namespace portcullis::cli
