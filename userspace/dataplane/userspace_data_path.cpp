#include "dataplane/userspace_data_path.h"

#include <array>
#include <cstring>
#include <list>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "dataplane/frame_fields.h"
#include "dataplane/table_classifier.h"
#include "policy/prefix_matcher.h"
#include "portcullis/compat.h"
#include "portcullis/flow.h"
#include "portcullis/packet.h"
#include "portcullis/policy_maps.h"

// The state functions datapath.h calls (its header comment lists them). maps.h defines them over BPF maps
// before datapath.h is included; here they are declared first and defined below, over the Impl of the
// instance running the current packet.
static struct pc_flow* pc_state_flow_lookup(const struct pc_flow_key* key);
static struct pc_flow* pc_state_flow_insert(const struct pc_flow_key* key, const struct pc_flow* flow);
static void pc_state_flow_delete(const struct pc_flow_key* key);
static const struct pc_frag* pc_state_frag_lookup(const struct pc_frag_key* key);
static void pc_state_frag_insert(const struct pc_frag_key* key, const struct pc_frag* frag);
static __u32 pc_state_source_scope(const struct pc_packet* pkt);
static const struct pc_rule_set* pc_state_dst_rules(__u32 scope, const struct pc_packet* pkt);
static const struct pc_rule_set* pc_state_name_rules(__u32 scope);
static const struct pc_policy_config* pc_state_config(void);
static void pc_state_count(__u32 slot);
static void pc_state_emit_verdict(const struct pc_packet* pkt, const struct pc_flow* flow);
static __u64 pc_state_now_ns(void);
static const struct pc_punt_config* pc_state_punt_config(void);
static struct pc_punt_bucket* pc_state_punt_bucket(const union pc_addr* owner);
static const struct pc_bound_name* pc_state_bound_name_lookup(const struct pc_bound_key* key);
static struct pc_expect* pc_state_expect_lookup(const struct pc_expect_key* key);
static int pc_state_expect_delete(const struct pc_expect_key* key);
static const struct pc_ftp_peer* pc_state_ftp_peer_lookup(const struct pc_ftp_peer_key* key);

#include "portcullis/datapath.h"
#include "portcullis/parse.h"

namespace portcullis::dataplane {

static_assert(kActionPass == PC_PASS && kActionDrop == PC_DROP && kActionReject == PC_REJECT &&
              kActionPunt == PC_PUNT && kActionHoldAnswer == PC_HOLD_ANSWER);

namespace {

// A table keyed by a map key's bytes (the shared layouts zero their padding), evicting the least recently
// used entry when full, as the kernel's LRU hash does (the kernel's order is approximate, per CPU).
// Values live in list nodes: pointers to them stay valid until their entry is erased or evicted.
template <typename Key, typename Value>
class LruTable {
 public:
  explicit LruTable(size_t capacity) : capacity_(capacity) {}

  Value* find(const Key& key) {
    const auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  const Value* peek(const Key& key) const {
    const auto it = index_.find(key);
    return it == index_.end() ? nullptr : &it->second->second;
  }
  // BPF_NOEXIST semantics when `replace` is false: an entry already there stays. Returns the stored value.
  Value* insert(const Key& key, const Value& value, bool replace) {
    if (Value* stored = find(key)) {
      if (replace) *stored = value;
      return stored;
    }
    if (capacity_ == 0) return nullptr;
    if (index_.size() >= capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, value);
    index_.emplace(key, order_.begin());
    return &order_.front().second;
  }
  void erase(const Key& key) {
    const auto it = index_.find(key);
    if (it == index_.end()) return;
    order_.erase(it->second);
    index_.erase(it);
  }
  size_t size() const { return index_.size(); }

 private:
  static std::string_view bytes_of(const Key& key) {
    return std::string_view(reinterpret_cast<const char*>(&key), sizeof(Key));
  }
  struct Hash {
    size_t operator()(const Key& key) const { return std::hash<std::string_view>{}(bytes_of(key)); }
  };
  // Bytes, as the kernel compares hash map keys; the keys' padding fields are always zeroed.
  struct Equal {
    bool operator()(const Key& a, const Key& b) const {
      return std::memcmp(&a, &b, sizeof(Key)) == 0;  // NOLINT(bugprone-suspicious-memory-comparison)
    }
  };
  using Order = std::list<std::pair<Key, Value>>;  // most recently used first

  size_t capacity_;
  Order order_;
  std::unordered_map<Key, typename Order::iterator, Hash, Equal> index_;
};

}  // namespace

struct UserspaceDataPath::Impl {
  Impl(PolicyTables tables, size_t flow_capacity, size_t fragment_capacity)
      : classifier(std::move(tables)), flows(flow_capacity), fragments(fragment_capacity) {}

  const pc_rule_set* dst_rules(uint32_t scope, const pc_packet& pkt) const {
    return classifier.destination_rules(scope, address_of(pkt.dst, pkt.family));
  }
  const pc_rule_set* name_rules(uint32_t scope) const { return classifier.name_rules(scope); }

  TableClassifier classifier;  // the tables, and the lookups the BPF programs make in their maps
  LruTable<pc_flow_key, pc_flow> flows;
  LruTable<pc_frag_key, pc_frag> fragments;
  std::vector<uint64_t> counters = std::vector<uint64_t>(PC_COUNTER_MAX, 0);
  std::vector<pc_verdict_event> events;
  std::optional<pc_punt_config> punt_config;
  std::map<std::array<uint8_t, 16>, pc_punt_bucket> punt_buckets;
  std::map<std::array<uint8_t, sizeof(pc_bound_key)>, pc_bound_name> bound_names;
  uint64_t now_ns = 0;
};

namespace {

// The instance whose packet is running on this thread: set by UserspaceDataPath::run for the length of one
// packet, read by the pc_state_* functions, which the shared C code calls without a context argument.
thread_local UserspaceDataPath::Impl* current = nullptr;

class CurrentInstance {
 public:
  explicit CurrentInstance(UserspaceDataPath::Impl* impl) : previous_(current) { current = impl; }
  ~CurrentInstance() { current = previous_; }
  CurrentInstance(const CurrentInstance&) = delete;
  CurrentInstance& operator=(const CurrentInstance&) = delete;

 private:
  UserspaceDataPath::Impl* previous_;
};

}  // namespace

UserspaceDataPath::UserspaceDataPath(PolicyTables tables, size_t flow_capacity, size_t fragment_capacity)
    : impl_(std::make_unique<Impl>(std::move(tables), flow_capacity, fragment_capacity)) {}
UserspaceDataPath::~UserspaceDataPath() = default;
UserspaceDataPath::UserspaceDataPath(UserspaceDataPath&&) noexcept = default;
UserspaceDataPath& UserspaceDataPath::operator=(UserspaceDataPath&&) noexcept = default;

void UserspaceDataPath::load(PolicyTables tables) {
  impl_->classifier = TableClassifier(std::move(tables));
}

const PolicyTables& UserspaceDataPath::tables() const {
  return impl_->classifier.tables();
}

PacketOutcome UserspaceDataPath::inside(std::span<const uint8_t> frame) {
  return run(frame, true);
}

PacketOutcome UserspaceDataPath::outside(std::span<const uint8_t> frame) {
  return run(frame, false);
}

// What portcullis_inside and portcullis_outside (tc/portcullis_tc.bpf.c) do, short of building rejects.
PacketOutcome UserspaceDataPath::run(std::span<const uint8_t> frame, bool from_inside) {
  const CurrentInstance instance(impl_.get());
  const uint8_t* data = frame.data();
  struct pc_packet pkt {};
  const enum pc_drop_reason reason = pc_parse_packet(data, data + frame.size(), &pkt);
  if (reason != PC_DROP_NONE) {
    pc_state_count(reason);
    return PacketOutcome{PC_DROP, reason};
  }
  const auto len = static_cast<__u32>(frame.size());
  struct pc_flow_key key {};
  const struct pc_outcome out = from_inside ? pc_datapath_inside(&pkt, len, &key) : pc_datapath_outside(&pkt, len);
  return PacketOutcome{out.action, out.reason};
}

const pc_flow* UserspaceDataPath::flow(const pc_flow_key& key) const {
  return impl_->flows.peek(key);
}

bool UserspaceDataPath::set_verdict(const pc_flow_key& key, uint8_t verdict, uint32_t rule_id, uint32_t reason) {
  pc_flow* flow = impl_->flows.find(key);
  if (flow == nullptr) return false;
  flow->verdict = verdict;
  flow->rule_id = rule_id;
  flow->reason = reason;
  flow->generation = impl_->classifier.tables().config.generation;
  flow->held_bytes = 0;
  return true;
}

size_t UserspaceDataPath::flow_count() const {
  return impl_->flows.size();
}

size_t UserspaceDataPath::fragment_count() const {
  return impl_->fragments.size();
}

const std::vector<uint64_t>& UserspaceDataPath::counters() const {
  return impl_->counters;
}

uint64_t UserspaceDataPath::counter(uint32_t slot) const {
  return impl_->counters.at(slot);
}

const std::vector<pc_verdict_event>& UserspaceDataPath::events() const {
  return impl_->events;
}

std::vector<pc_verdict_event> UserspaceDataPath::take_events() {
  return std::exchange(impl_->events, {});
}

uint64_t UserspaceDataPath::now_ns() const {
  return impl_->now_ns;
}

void UserspaceDataPath::set_now_ns(uint64_t now) {
  impl_->now_ns = now;
}

void UserspaceDataPath::set_punt_config(const pc_punt_config& config) {
  impl_->punt_config = config;
}

void UserspaceDataPath::set_bound_name(const pc_bound_key& key, const pc_bound_name* name) {
  std::array<uint8_t, sizeof(pc_bound_key)> bytes{};
  std::memcpy(bytes.data(), &key, sizeof(key));
  if (name == nullptr) {
    impl_->bound_names.erase(bytes);
  } else {
    impl_->bound_names[bytes] = *name;
  }
}

size_t UserspaceDataPath::bound_name_count() const {
  return impl_->bound_names.size();
}

void UserspaceDataPath::advance_ns(uint64_t delta) {
  impl_->now_ns += delta;
}

}  // namespace portcullis::dataplane

using portcullis::dataplane::current;

static struct pc_flow* pc_state_flow_lookup(const struct pc_flow_key* key) {
  return current->flows.find(*key);
}

static struct pc_flow* pc_state_flow_insert(const struct pc_flow_key* key, const struct pc_flow* flow) {
  return current->flows.insert(*key, *flow, /*replace=*/false);  // BPF_NOEXIST, as maps.h
}

static void pc_state_flow_delete(const struct pc_flow_key* key) {
  current->flows.erase(*key);
}

static const struct pc_frag* pc_state_frag_lookup(const struct pc_frag_key* key) {
  return current->fragments.find(*key);
}

static void pc_state_frag_insert(const struct pc_frag_key* key, const struct pc_frag* frag) {
  current->fragments.insert(*key, *frag, /*replace=*/true);  // BPF_ANY, as maps.h
}

static __u32 pc_state_source_scope(const struct pc_packet* pkt) {
  return current->classifier.scope_of_source(portcullis::dataplane::address_of(pkt->src, pkt->family));
}

static const struct pc_rule_set* pc_state_dst_rules(__u32 scope, const struct pc_packet* pkt) {
  return current->dst_rules(scope, *pkt);
}

static const struct pc_rule_set* pc_state_name_rules(__u32 scope) {
  return current->name_rules(scope);
}

static const struct pc_policy_config* pc_state_config(void) {
  return &current->classifier.tables().config;
}

static void pc_state_count(__u32 slot) {
  if (slot < current->counters.size()) current->counters[slot] += 1;
}

static void pc_state_emit_verdict(const struct pc_packet* pkt, const struct pc_flow* flow) {
  struct pc_verdict_event event {};
  pc_verdict_event_fill(&event, pkt, flow);
  current->events.push_back(event);
}

static const struct pc_punt_config* pc_state_punt_config(void) {
  return current->punt_config ? &*current->punt_config : nullptr;
}

static struct pc_punt_bucket* pc_state_punt_bucket(const union pc_addr* owner) {
  if (!current->punt_config) return nullptr;
  std::array<uint8_t, 16> source{};
  std::memcpy(source.data(), owner->bytes, source.size());
  const auto [it, created] = current->punt_buckets.try_emplace(source);
  if (created) it->second = pc_punt_bucket{current->now_ns, current->punt_config->burst, 0};
  return &it->second;
}

static __u64 pc_state_now_ns(void) {
  return current->now_ns;
}

// FTP data connections follow the kernel's conntrack helper, which only a live gateway has: offline, none is
// expected, and no FTP peers are known.
static struct pc_expect* pc_state_expect_lookup(const struct pc_expect_key* /*key*/) {
  return nullptr;
}

static int pc_state_expect_delete(const struct pc_expect_key* /*key*/) {
  return -1;
}

static const struct pc_ftp_peer* pc_state_ftp_peer_lookup(const struct pc_ftp_peer_key* /*key*/) {
  return nullptr;
}

static const struct pc_bound_name* pc_state_bound_name_lookup(const struct pc_bound_key* key) {
  std::array<uint8_t, sizeof(pc_bound_key)> bytes{};
  std::memcpy(bytes.data(), key, sizeof(*key));
  const auto found = current->bound_names.find(bytes);
  return found == current->bound_names.end() ? nullptr : &found->second;
}
