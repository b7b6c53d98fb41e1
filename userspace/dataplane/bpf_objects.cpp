#include "dataplane/bpf_objects.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "portcullis_tc.skel.h"
#include "portcullis_xdp.skel.h"

namespace portcullis::dataplane {
namespace {

constexpr const char* kBpffsMount = "/sys/fs/bpf";
constexpr size_t kLibbpfLogLines = 40;

// libbpf's messages (the verifier log among them) are kept, not printed: they only matter when a load fails,
// and then their tail goes into the error.
std::deque<std::string>& libbpf_log() {
  static std::deque<std::string> lines;
  return lines;
}

int capture_libbpf_message(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buffer[1024];
  const int n = std::vsnprintf(buffer, sizeof(buffer), format, args);
  if (n <= 0) return n;
  std::string_view text(buffer, std::min(static_cast<size_t>(n), sizeof(buffer) - 1));
  auto& lines = libbpf_log();
  while (!text.empty()) {
    const size_t end = text.find('\n');
    lines.emplace_back(text.substr(0, end));
    if (lines.size() > kLibbpfLogLines) lines.pop_front();
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return n;
}

std::string libbpf_log_tail() {
  std::string tail;
  for (const std::string& line : libbpf_log()) tail += "\n  " + line;
  return tail;
}

[[noreturn]] void fail(const std::string& what, int error) {
  throw std::runtime_error(what + ": " + std::strerror(error < 0 ? -error : error) + libbpf_log_tail());
}

bool on_bpffs(const std::string& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

bool in_initial_mount_namespace() {
  std::error_code error;
  const auto self = std::filesystem::read_symlink("/proc/self/ns/mnt", error);
  const auto init = std::filesystem::read_symlink("/proc/1/ns/mnt", error);
  return error || self == init;
}

// Returns a warning for the operator, or an empty string.
std::string prepare_pin_dir(const std::string& pin_dir) {
  std::string warning;
  const bool below_default = pin_dir.rfind(std::string(kBpffsMount) + "/", 0) == 0;
  if (below_default && !on_bpffs(kBpffsMount)) {
    if (::mount("bpf", kBpffsMount, "bpf", 0, "mode=0700") != 0) {
      fail(std::string("cannot mount bpffs at ") + kBpffsMount, errno);
    }
    // `ip netns exec` gives its command a mount namespace with a fresh /sys and no bpffs: pins made there
    // vanish with that namespace, and a restarted daemon cannot adopt them.
    if (!in_initial_mount_namespace()) {
      warning = std::string("mounted bpffs at ") + kBpffsMount +
                " in a private mount namespace (ip netns exec?): the pins last only as long as it does, so "
                "a restarted daemon cannot adopt them; start portcullis with `nsenter --net=...` instead";
    }
  }
  std::error_code error;
  std::filesystem::create_directories(pin_dir, error);
  if (error) throw std::runtime_error("cannot create the pin directory " + pin_dir + ": " + error.message());
  if (!on_bpffs(pin_dir)) throw std::runtime_error("the pin directory " + pin_dir + " is not on a bpf filesystem");
  return warning;
}

// Maps pinned already keep their size (libbpf reuses a pin only when the sizes agree); new ones get the
// sizes asked for. Returns whether the flow table was pinned already.
bool size_maps(bpf_object* object, const BpfObjectsOptions& options, bool punts) {
  bool adopted = false;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, object) {
    const char* pin = bpf_map__pin_path(map);
    if (std::string_view(bpf_map__name(map)) == "pc_punt_scratch") {
      // One 128 KiB punt buffer per possible CPU, in the object that punts; none in the other.
      const int cpus = libbpf_num_possible_cpus();
      if (!punts) {
        bpf_map__set_autocreate(map, false);
      } else if (cpus <= 0 || bpf_map__set_max_entries(map, static_cast<uint32_t>(cpus)) != 0) {
        fail("cannot size the punt buffers", cpus < 0 ? -cpus : EINVAL);
      }
      continue;
    }
    if (pin == nullptr) continue;
    const std::string_view name = bpf_map__name(map);
    const int fd = bpf_obj_get(pin);
    if (fd >= 0) {
      bpf_map_info info{};
      uint32_t length = sizeof(info);
      const int error = bpf_obj_get_info_by_fd(fd, &info, &length);
      ::close(fd);
      if (error != 0) fail(std::string("cannot read the pinned map ") + pin, error);
      if (bpf_map__set_max_entries(map, info.max_entries) != 0) fail(std::string("cannot size ") + pin, errno);
      if (name == "pc_flows") adopted = true;
      continue;
    }
    if (name == "pc_flows" && options.flow_table_entries != 0) {
      bpf_map__set_max_entries(map, options.flow_table_entries);
    } else if (name == "pc_rule_sets" && options.min_rule_sets > bpf_map__max_entries(map)) {
      bpf_map__set_max_entries(map, options.min_rule_sets);
    }
  }
  return adopted;
}

// One daemon per pin directory: a second one would write the same maps and take the first one's programs
// for a dead predecessor's. The lock (flock on the directory) dies with its holder, SIGKILL included.
int lock_pin_dir(const std::string& pin_dir) {
  const int fd = ::open(pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open the pin directory " + pin_dir, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) {
      throw std::runtime_error("another portcullis is running with the pin directory " + pin_dir +
                               "; stop it first (SIGTERM) or give this one its own --pin-dir");
    }
    fail("cannot lock the pin directory " + pin_dir, error);
  }
  return fd;
}

bpf_program* program(bpf_object* object, const char* name) {
  bpf_program* found = bpf_object__find_program_by_name(object, name);
  if (found == nullptr) throw std::runtime_error(std::string("the BPF objects have no program ") + name);
  return found;
}

uint32_t map_id(int fd) {
  bpf_map_info info{};
  uint32_t length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &length) != 0) fail("cannot read a map's id", errno);
  return info.id;
}

}  // namespace

std::unique_ptr<BpfObjects> BpfObjects::load(const BpfObjectsOptions& options) {
  libbpf_set_print(capture_libbpf_message);
  libbpf_log().clear();
  std::unique_ptr<BpfObjects> objects(new BpfObjects());
  objects->pin_dir_ = options.pin_dir;
  while (objects->pin_dir_.size() > 1 && objects->pin_dir_.back() == '/') objects->pin_dir_.pop_back();
  objects->warning_ = prepare_pin_dir(objects->pin_dir_);
  objects->lock_fd_ = lock_pin_dir(objects->pin_dir_);
  try {
    objects->load_programs(options);
  } catch (const std::runtime_error&) {
    // Maps are pinned before the programs load: a failed fresh load leaves nothing behind.
    if (!objects->adopted_ && objects->tc_ != nullptr) objects->unpin();
    throw;
  }
  libbpf_log().clear();
  return objects;
}

void BpfObjects::load_programs(const BpfObjectsOptions& options) {
  // The skeletons are used for their embedded ELF only: opening through plain libbpf keeps the generated
  // open/destroy code (which static analysis misreads) out of the daemon, and every name is checked here.
  size_t tc_size = 0;
  const void* tc_elf = portcullis_tc__elf_bytes(&tc_size);
  LIBBPF_OPTS(bpf_object_open_opts, tc_options, .object_name = "portcullis_tc", .pin_root_path = pin_dir_.c_str());
  tc_ = bpf_object__open_mem(tc_elf, tc_size, &tc_options);
  if (tc_ == nullptr) fail("cannot open the TC object", errno);
  adopted_ = size_maps(tc_, options, true);
  if (const int error = bpf_object__load(tc_); error != 0) {
    const bool reuse = libbpf_log_tail().find("reuse pinned map") != std::string::npos;
    fail(reuse ? "the maps pinned in " + pin_dir_ +
                     " do not match this build's layouts (left by another version of portcullis?): stop the "
                     "daemon that uses them with SIGTERM, or remove the directory"
               : std::string("the kernel refused the TC programs"),
         error);
  }

  // The XDP object finds every map pinned by now and shares the TC object's.
  size_t xdp_size = 0;
  const void* xdp_elf = portcullis_xdp__elf_bytes(&xdp_size);
  LIBBPF_OPTS(bpf_object_open_opts, xdp_options, .object_name = "portcullis_xdp", .pin_root_path = pin_dir_.c_str());
  xdp_ = bpf_object__open_mem(xdp_elf, xdp_size, &xdp_options);
  if (xdp_ == nullptr) fail("cannot open the XDP object", errno);
  size_maps(xdp_, options, false);
  if (const int error = bpf_object__load(xdp_); error != 0) fail("the kernel refused the XDP program", error);

  inside_ = program(tc_, "portcullis_inside");
  outside_ = program(tc_, "portcullis_outside");
  reinject_ = program(tc_, "portcullis_reinject");
  xdp_program_ = program(xdp_, "portcullis_xdp");
  for (const char* name :
       {"pc_flows", "pc_rule_sets", "pc_dst4", "pc_dst6", "pc_src4", "pc_src6", "pc_scopes", "pc_config", "pc_counters",
        "pc_events", "pc_punts", "pc_punt_config", "pc_punt_buckets", "pc_expects", "pc_ftp_peers", "pc_bound_names"}) {
    map(name);
  }
}

BpfObjects::~BpfObjects() {
  bpf_object__close(xdp_);
  bpf_object__close(tc_);
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

bpf_map* BpfObjects::map(const char* name) const {
  bpf_map* found = bpf_object__find_map_by_name(tc_, name);
  if (found == nullptr) throw std::runtime_error(std::string("the TC object has no map ") + name);
  return found;
}

int BpfObjects::inside_program() const {
  return bpf_program__fd(inside_);
}
int BpfObjects::outside_program() const {
  return bpf_program__fd(outside_);
}
int BpfObjects::reinject_program() const {
  return bpf_program__fd(reinject_);
}
int BpfObjects::punts_map() const {
  return bpf_map__fd(map("pc_punts"));
}
int BpfObjects::punt_config_map() const {
  return bpf_map__fd(map("pc_punt_config"));
}
int BpfObjects::expects_map() const {
  return bpf_map__fd(map("pc_expects"));
}
int BpfObjects::bound_names_map() const {
  return bpf_map__fd(map("pc_bound_names"));
}
int BpfObjects::ftp_peers_map() const {
  return bpf_map__fd(map("pc_ftp_peers"));
}
int BpfObjects::xdp_program() const {
  return bpf_program__fd(xdp_program_);
}

PolicyMapFds BpfObjects::policy_maps() const {
  PolicyMapFds fds;
  fds.rule_sets = bpf_map__fd(map("pc_rule_sets"));
  fds.dst4 = bpf_map__fd(map("pc_dst4"));
  fds.dst6 = bpf_map__fd(map("pc_dst6"));
  fds.src4 = bpf_map__fd(map("pc_src4"));
  fds.src6 = bpf_map__fd(map("pc_src6"));
  fds.scopes = bpf_map__fd(map("pc_scopes"));
  fds.config = bpf_map__fd(map("pc_config"));
  return fds;
}

int BpfObjects::events_map() const {
  return bpf_map__fd(map("pc_events"));
}
int BpfObjects::counters_map() const {
  return bpf_map__fd(map("pc_counters"));
}
int BpfObjects::flows_map() const {
  return bpf_map__fd(map("pc_flows"));
}
uint32_t BpfObjects::rule_set_capacity() const {
  return bpf_map__max_entries(map("pc_rule_sets"));
}
uint32_t BpfObjects::flow_table_capacity() const {
  return bpf_map__max_entries(map("pc_flows"));
}

std::vector<uint32_t> BpfObjects::map_ids() const {
  std::vector<uint32_t> ids;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, tc_) {
    if (bpf_map__pin_path(map) != nullptr) ids.push_back(map_id(bpf_map__fd(map)));
  }
  return ids;
}

std::string BpfObjects::unpin() {
  std::string problems;
  bpf_map* map = nullptr;
  bpf_object__for_each_map(map, tc_) {
    const char* pin = bpf_map__pin_path(map);
    if (pin == nullptr) continue;
    if (::unlink(pin) != 0 && errno != ENOENT) {
      problems += std::string("cannot unpin ") + pin + ": " + std::strerror(errno) + "\n";
    }
  }
  if (::rmdir(pin_dir_.c_str()) != 0 && errno != ENOENT) {
    problems += "cannot remove " + pin_dir_ + ": " + std::strerror(errno) + "\n";
  }
  return problems;
}

}  // namespace portcullis::dataplane
