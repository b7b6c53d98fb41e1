// Benchmarks' data plane: both BPF objects loaded under a pin directory of their own, a policy written into
// the maps, and the inside program run by BPF_PROG_TEST_RUN. The pins never outlive the benchmark: the
// destructor removes them (also when the constructor fails after the load), and a benchmark stopped by
// SIGINT, SIGTERM or SIGHUP removes them from the signal handler before it dies. Needs root.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/bpf_objects.h"
#include "dataplane/policy_map_writer.h"
#include "dataplane/policy_tables.h"
#include "policy/policy_loader.h"
#include "support/packet_builder.h"

namespace portcullis::bench {

// The pin directories of this process, as plain strings the signal handler can read without allocating.
// A directory is tracked from before the load that fills it until its pins are gone, so a signal in the
// middle of a load (the verifier, a 1M-entry table's allocation) removes what the load had pinned so far.
class PinCleanup {
 public:
  static constexpr size_t kSlots = 8;
  static constexpr size_t kPathBytes = 256;

  // Returns the slot, or -1 when all are taken (the destructor still removes the pins then).
  static int track(const std::string& dir) {
    install_handlers();
    const SignalBlock block;
    for (size_t slot = 0; slot < kSlots; ++slot) {
      Slot& s = slots()[slot];
      if (s.used) continue;
      std::snprintf(s.dir, kPathBytes, "%s", dir.c_str());
      s.used = 1;
      return static_cast<int>(slot);
    }
    return -1;
  }

  static void untrack(int slot) {
    if (slot < 0) return;
    const SignalBlock block;
    slots()[static_cast<size_t>(slot)].used = 0;
  }

 private:
  struct Slot {
    volatile sig_atomic_t used = 0;
    char dir[kPathBytes]{};
  };

  // Signals held off while a slot changes, so the handler never reads half a slot.
  struct SignalBlock {
    sigset_t old{};
    SignalBlock() {
      sigset_t set;
      sigemptyset(&set);
      for (const int sig : kSignals) sigaddset(&set, sig);
      pthread_sigmask(SIG_BLOCK, &set, &old);
    }
    ~SignalBlock() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
    SignalBlock(const SignalBlock&) = delete;
    SignalBlock& operator=(const SignalBlock&) = delete;
  };

  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};

  static std::array<Slot, kSlots>& slots() {
    static std::array<Slot, kSlots> all;
    return all;
  }

  static void install_handlers() {
    static const bool installed = [] {
      for (const int sig : kSignals) {
        struct sigaction action {};
        action.sa_handler = &PinCleanup::on_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESETHAND;  // a second signal of a kind kills without cleaning
        sigaction(sig, &action, nullptr);
      }
      return true;
    }();
    (void)installed;
  }

  // Every file in the directory (only ever our pins), then the directory. Only async-signal-safe calls:
  // open, getdents64, unlinkat, close, rmdir, raise.
  static void on_signal(int sig) {
    alignas(8) static char entries[4096];
    for (Slot& s : slots()) {
      if (!s.used) continue;
      const int fd = ::open(s.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd >= 0) {
        long bytes = 0;
        while ((bytes = ::syscall(SYS_getdents64, fd, entries, sizeof(entries))) > 0) {
          for (long at = 0; at < bytes;) {
            const auto* entry = reinterpret_cast<const Dirent64*>(entries + at);
            const bool dots =
                entry->name[0] == '.' && (entry->name[1] == '\0' || (entry->name[1] == '.' && entry->name[2] == '\0'));
            if (!dots) ::unlinkat(fd, entry->name, 0);
            at += entry->reclen;
          }
        }
        ::close(fd);
      }
      ::rmdir(s.dir);
    }
    ::raise(sig);  // SA_RESETHAND put the default action back: the process dies of this signal
  }

  struct Dirent64 {  // the kernel's struct linux_dirent64
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[1];
  };
};

struct TestRun {
  bool ok = false;        // the syscall succeeded
  uint32_t retval = 0;    // the program's return value (TC_ACT_*)
  uint32_t duration = 0;  // ns per run, the kernel's clock around the program
};

class BenchDataPath {
 public:
  BenchDataPath(const dataplane::BpfObjectsOptions& options, const std::string& policy_yaml, policy::Mode mode)
      : BenchDataPath(options, tables_of(policy_yaml, mode)) {}

  const dataplane::BpfObjects& objects() const { return *pins_.objects; }

  TestRun run(const test::Bytes& frame, uint32_t repeat = 1) const {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_size_in = static_cast<uint32_t>(frame.size()),
                .repeat = static_cast<int>(repeat));
    TestRun result;
    result.ok = bpf_prog_test_run_opts(objects().inside_program(), &opts) == 0;
    result.retval = opts.retval;
    result.duration = opts.duration;
    return result;
  }

  // Average ns per run of the inside program over `repeat` runs of `frame`, or -1 when the run fails.
  double run_ns(const test::Bytes& frame, uint32_t repeat) const {
    const TestRun result = run(frame, repeat);
    return result.ok ? result.duration : -1;
  }

 private:
  static dataplane::PolicyTables tables_of(const std::string& policy_yaml, policy::Mode mode) {
    policy::LoadResult loaded = policy::load_policy(policy_yaml, "bench.yaml");
    if (!loaded.policy) throw std::runtime_error("the benchmark's policy does not load");
    const auto compiled = policy::compile_policy(std::move(*loaded.policy));
    return dataplane::build_policy_tables(*compiled, mode, 0);
  }

  BenchDataPath(dataplane::BpfObjectsOptions options, dataplane::PolicyTables tables)
      : pins_([&] {
          options.min_rule_sets = dataplane::PolicyMapWriter::capacity_needed(tables.rule_sets.size());
          return options;
        }()) {
    dataplane::PolicyMapWriter writer(objects().policy_maps(), objects().rule_set_capacity());
    tables.config.generation = writer.current_generation() + 1;
    writer.write(tables);
  }

  // Owns the objects and their pins: a member, so the pins go also when the constructor's body throws.
  struct Pins {
    int slot = -1;
    std::unique_ptr<dataplane::BpfObjects> objects;
    explicit Pins(const dataplane::BpfObjectsOptions& options)
        : slot(PinCleanup::track(options.pin_dir)), objects(load(options, slot)) {}
    ~Pins() {
      const std::string problems = objects->unpin();
      if (!problems.empty()) std::fprintf(stderr, "%s", problems.c_str());
      PinCleanup::untrack(slot);
    }
    Pins(const Pins&) = delete;
    Pins& operator=(const Pins&) = delete;
  };

  static std::unique_ptr<dataplane::BpfObjects> load(const dataplane::BpfObjectsOptions& options, int slot) {
    try {
      return dataplane::BpfObjects::load(options);
    } catch (...) {
      ::rmdir(options.pin_dir.c_str());  // created before the load failed; left alone when not empty
      PinCleanup::untrack(slot);
      throw;
    }
  }

  Pins pins_;
};

}  // namespace portcullis::bench
