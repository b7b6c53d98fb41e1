// `portcullis run`: loads the data plane, writes the policy into it, attaches it, and logs verdicts until a
// signal: SIGHUP reloads the policy, SIGTERM and SIGINT take everything off again. SIGKILL leaves the programs
// attached and the maps pinned (fail closed); the next `run` on the same pin directory adopts both.
#include <net/if.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "dataplane/attacher.h"
#include "dataplane/bpf_objects.h"
#include "dataplane/counters.h"
#include "dataplane/policy_map_writer.h"
#include "dataplane/policy_tables.h"
#include "dataplane/verdict_log.h"
#include "policy/compiled_policy.h"
#include "policy/policy_loader.h"
#include "punt/punt_handler.h"

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
};

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
  } else {
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
  out["dns_queries"] = stats.dns_queries;
  out["dns_filtered"] = stats.dns_filtered;
  out["pending_flows"] = stats.pending_flows;
  out["held_bytes"] = stats.held_bytes;
  Json latency;
  for (size_t i = 0; i < std::size(stats.latency_us); ++i) {
    const std::string bound = i < std::size(punt::PuntStats::kLatencyBoundsUs)
                                  ? "le_" + std::to_string(punt::PuntStats::kLatencyBoundsUs[i]) + "us"
                                  : "more";
    latency[bound] = stats.latency_us[i];
  }
  latency["sum_us"] = stats.latency_sum_us;
  out["punt_to_verdict"] = std::move(latency);
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
    punt_->tick();  // the heartbeat is there before any program can punt
    events_ =
        std::make_unique<dataplane::VerdictEventReader>(objects_->events_map(), [this](const pc_verdict_event& event) {
          if (event.verdict == PC_VERDICT_PENDING) return punt_->on_pending_event(event);
          log_->write(
              dataplane::verdict_json(event, generations_.find(event.generation), clock_.iso8601(event.timestamp_ns)));
        });
    counters_ = std::make_unique<dataplane::CounterReader>(objects_->counters_map());

    const dataplane::XdpMode xdp = options_.xdp == "native"    ? dataplane::XdpMode::native
                                   : options_.xdp == "generic" ? dataplane::XdpMode::generic
                                                               : dataplane::XdpMode::off;
    attacher_ =
        std::make_unique<Attacher>(objects_->map_ids(), objects_->pin_dir(), dataplane::TcAttachMode::automatic, xdp);
    const std::vector<std::string>& protected_side = mode_ == policy::Mode::gateway ? options_.inside : options_.ifaces;
    for (const dataplane::PlannedAttachment& planned :
         dataplane::plan_attachments(mode_, protected_side, options_.outside, xdp)) {
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
  void write_policy(const std::shared_ptr<const policy::CompiledPolicy>& compiled, dataplane::PolicyTables& tables) {
    uint32_t generation = writer_->current_generation() + 1;
    if (generation == 0) generation = 1;  // 0 means "never written"
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
    log_->write(line);
  }

  // A failed start takes off what it added. What a previous daemon left stays: it is still enforcing.
  int fail_start(const std::string& message) {
    std::cerr << "portcullis run: " << message << '\n';
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

    for (;;) {
      epoll_event ready[8];
      const int n = ::epoll_wait(epoll_fd, ready, 8, -1);
      if (n < 0 && errno != EINTR) return stop("epoll: " + std::string(std::strerror(errno)));
      for (int i = 0; i < n; ++i) {
        if (ready[i].data.fd == timer_fd) {
          uint64_t expirations = 0;
          (void)::read(timer_fd, &expirations, sizeof(expirations));
          punt_->tick();
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
          reload();
        } else {
          ::close(epoll_fd);
          ::close(signal_fd);
          ::close(timer_fd);
          return stop(info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        }
      }
    }
  }

  void reload() {
    LoadedPolicy loaded = load(options_.policy_path);
    Json line;
    line["event"] = "reload";
    line["ts"] = dataplane::WallClock::now_iso8601();
    line["policy"] = options_.policy_path;
    if (loaded.compiled) {
      try {
        dataplane::PolicyTables tables = dataplane::build_policy_tables(*loaded.compiled, mode_, 0);
        write_policy(loaded.compiled, tables);
      } catch (const std::exception& e) {
        loaded.errors.push_back(e.what());
      }
    }
    line["ok"] = loaded.errors.empty();
    if (loaded.errors.empty()) {
      line["generation"] = generation_;
      line["rules"] = loaded.compiled->rules().size();
      line["groups"] = loaded.compiled->policy().groups.size();
    } else {
      line["errors"] = string_array(loaded.errors);
      line["running_generation"] = generation_;
    }
    line["warnings"] = string_array(loaded.warnings);
    log_->write(line);
  }

  // Drains the verdicts still waiting, takes every program off and removes the pins.
  int stop(const std::string& why) {
    events_->consume();
    punt_->stop_heartbeat();
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
  return [options]() { return RunCommand(*options).run(); };
}

}  // namespace portcullis::cli
