#include "nft/ftp_table.h"

// The C library's socket headers before the kernel's, which defer to them.
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <variant>

namespace portcullis::nft {
namespace {

constexpr const char* kHelperName = "ftp";  // the ct helper object, and the kernel helper it stands for
constexpr const char* kHelperChain = "ftp_helpers";
constexpr const char* kMasqueradeChain = "gateway_masquerade";
constexpr const char* kAnonymousSetName = "__set%d";  // the kernel numbers it

// What nft writes into a set so that `nft list` can print its elements: its datatype numbers for the key and
// its BYTEORDER_BIG_ENDIAN.
constexpr uint32_t kTypeIpv4Address = 7;
constexpr uint32_t kTypeIpv6Address = 8;
constexpr uint32_t kTypeInetService = 13;
constexpr uint32_t kBigEndian = 2;

// nft refuses longer comments (NUL included); the kernel would take up to NFT_USERDATA_MAXLEN.
constexpr size_t kCommentMaxBytes = NFTNL_UDATA_COMMENT_MAXLEN - 1;
// A message's attributes have 16-bit lengths: elements go in messages of this many, far below 64 KiB.
constexpr size_t kElementsPerMessage = 256;
constexpr size_t kMessageBufferBytes = size_t{64} * 1024 + 4096;
// What libnftnl's cmp carries (NFT_DATA_VALUE_MAXLEN): a longer interface name is cut, and refused all the
// same by the kernel, which compares at most 16 bytes.
constexpr size_t kCmpDataMaxBytes = 64;

// IPv4 and IPv6 header fields and the TCP destination port, as nft loads them.
constexpr uint32_t kIpv4SourceOffset = 12;
constexpr uint32_t kIpv4DestinationOffset = 16;
constexpr uint32_t kIpv6SourceOffset = 8;
constexpr uint32_t kIpv6DestinationOffset = 24;
constexpr uint32_t kTcpDestinationPortOffset = 2;

// nft's named chain priorities.
constexpr int32_t kFilterPriority = 0;       // "filter"
constexpr int32_t kSourceNatPriority = 100;  // "srcnat"

struct Freer {
  void operator()(const nftnl_table* table) const { nftnl_table_free(table); }
  void operator()(const nftnl_chain* chain) const { nftnl_chain_free(chain); }
  void operator()(const nftnl_rule* rule) const { nftnl_rule_free(rule); }
  void operator()(const nftnl_set* set) const { nftnl_set_free(set); }
  void operator()(const nftnl_obj* object) const { nftnl_obj_free(object); }
  void operator()(const nftnl_udata_buf* buffer) const { nftnl_udata_buf_free(buffer); }
};
using TablePtr = std::unique_ptr<nftnl_table, Freer>;
using ChainPtr = std::unique_ptr<nftnl_chain, Freer>;
using RulePtr = std::unique_ptr<nftnl_rule, Freer>;
using SetPtr = std::unique_ptr<nftnl_set, Freer>;
using ObjectPtr = std::unique_ptr<nftnl_obj, Freer>;
using UserdataPtr = std::unique_ptr<nftnl_udata_buf, Freer>;

template <typename T>
T* checked(T* allocated) {
  if (allocated == nullptr) throw std::bad_alloc();
  return allocated;
}

// One netlink message of a batch: the libnftnl object that both serializes and prints it.
struct BatchMessage {
  uint16_t type = 0;                                                    // NFT_MSG_*
  uint16_t flags = 0;                                                   // besides NLM_F_REQUEST
  std::variant<TablePtr, ObjectPtr, SetPtr, ChainPtr, RulePtr> object;  // NEWSETELEM: the set with elements
  std::string what;                                                     // the object, for error messages
};
using Batch = std::vector<BatchMessage>;

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

// Cut to what nft accepts, never inside a UTF-8 sequence.
std::string comment_text(std::string text) {
  if (text.size() <= kCommentMaxBytes) return text;
  size_t end = kCommentMaxBytes;
  while (end > 0 && (static_cast<uint8_t>(text[end]) & 0xC0) == 0x80) --end;
  text.resize(end);
  return text;
}

// Userdata TLVs as nft writes them: where `nft list` finds comments (and a set's key byte order).
class Userdata {
 public:
  Userdata() : buffer_(checked(nftnl_udata_buf_alloc(NFT_USERDATA_MAXLEN))) {}

  Userdata& put_u32(uint8_t type, uint32_t value) {
    if (!nftnl_udata_put_u32(buffer_.get(), type, value)) throw std::bad_alloc();
    return *this;
  }
  Userdata& put_comment(uint8_t type, const std::string& comment) {
    if (!nftnl_udata_put_strz(buffer_.get(), type, comment_text(comment).c_str())) throw std::bad_alloc();
    return *this;
  }
  const void* data() const { return nftnl_udata_buf_data(buffer_.get()); }
  uint32_t size() const { return nftnl_udata_buf_len(buffer_.get()); }

 private:
  UserdataPtr buffer_;
};

// ---- Values: addresses and ports as big-endian bytes, and the intervals of sets ----

using Bytes = std::vector<uint8_t>;

size_t width_bytes(policy::IpFamily family) {
  return family == policy::IpFamily::v4 ? 4 : 16;
}

Bytes address_bytes(const policy::IpAddress& address) {
  return Bytes(address.bytes.begin(), address.bytes.begin() + static_cast<ptrdiff_t>(width_bytes(address.family)));
}

Bytes port_bytes(uint16_t port) {
  return {static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port & 0xff)};
}

// Both ends included; lo and hi have the same width, and compare as numbers do.
struct ValueRange {
  Bytes lo;
  Bytes hi;
};

ValueRange range_of(const policy::Cidr& cidr) {
  const policy::IpAddress network = policy::mask_address(cidr.network, cidr.prefix_len);
  ValueRange range{address_bytes(network), address_bytes(network)};
  for (size_t bit = cidr.prefix_len; bit < range.hi.size() * 8; ++bit) {
    range.hi[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
  }
  return range;
}

ValueRange range_of(const PortRange& ports) {
  const auto [lo, hi] = std::minmax(ports.lo, ports.hi);
  return {port_bytes(lo), port_bytes(hi)};
}

// value + 1; false when it wraps past the largest value.
bool increment(Bytes& value) {
  for (size_t i = value.size(); i-- > 0;) {
    if (++value[i] != 0) return true;
  }
  return false;
}

// Sorted, with overlapping ranges joined: the kernel refuses overlapping intervals in a set. Adjacent ones stay
// apart, as nft keeps them, so that a listing shows the prefixes the policy named.
std::vector<ValueRange> merged(std::vector<ValueRange> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const ValueRange& a, const ValueRange& b) { return a.lo < b.lo; });
  std::vector<ValueRange> out;
  for (ValueRange& range : ranges) {
    if (!out.empty() && range.lo <= out.back().hi) {
      if (range.hi > out.back().hi) out.back().hi = std::move(range.hi);
      continue;
    }
    out.push_back(std::move(range));
  }
  return out;
}

struct SetElement {
  Bytes key;
  bool interval_end = false;
};

// nft's encoding of an interval set: each range's start, and an end element at the value after it (none
// after the largest value); an end element at zero before a first range that starts above it.
std::vector<SetElement> interval_elements(const std::vector<ValueRange>& ranges) {
  std::vector<SetElement> elements;
  if (ranges.empty()) return elements;
  const Bytes zero(ranges.front().lo.size(), 0);
  if (ranges.front().lo != zero) elements.push_back({zero, true});
  for (const ValueRange& range : ranges) {
    elements.push_back({range.lo, false});
    Bytes after = range.hi;
    if (increment(after)) elements.push_back({std::move(after), true});
  }
  return elements;
}

std::vector<ValueRange> ranges_of(const std::vector<policy::Cidr>& prefixes, policy::IpFamily family) {
  std::vector<ValueRange> ranges;
  for (const policy::Cidr& prefix : prefixes) {
    if (prefix.network.family == family) ranges.push_back(range_of(prefix));
  }
  return merged(std::move(ranges));
}

const char* family_name(policy::IpFamily family) {
  return family == policy::IpFamily::v4 ? "v4" : "v6";
}

// ---- The batch ----

// Builds the messages of one batch, in an order the kernel can resolve: what a message names comes before it.
class BatchBuilder {
 public:
  void add_table(uint16_t type, const std::string& comment = {}) {
    TablePtr table(checked(nftnl_table_alloc()));
    nftnl_table_set_u32(table.get(), NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, kTableName);
    if (type == NFT_MSG_NEWTABLE) nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, 0);
    if (!comment.empty()) {
      Userdata userdata;
      userdata.put_comment(NFTNL_UDATA_TABLE_COMMENT, comment);
      nftnl_table_set_data(table.get(), NFTNL_TABLE_USERDATA, userdata.data(), userdata.size());
    }
    push(type, type == NFT_MSG_NEWTABLE ? NLM_F_CREATE : 0, std::move(table), std::string("table inet ") + kTableName);
  }

  void add_ftp_helper() {
    ObjectPtr helper(checked(nftnl_obj_alloc()));
    nftnl_obj_set_u32(helper.get(), NFTNL_OBJ_FAMILY, NFPROTO_INET);
    nftnl_obj_set_str(helper.get(), NFTNL_OBJ_TABLE, kTableName);
    nftnl_obj_set_str(helper.get(), NFTNL_OBJ_NAME, kHelperName);
    nftnl_obj_set_u32(helper.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_CT_HELPER);
    Userdata userdata;
    userdata.put_comment(NFTNL_UDATA_OBJ_COMMENT,
                         "portcullis: the kernel's FTP helper, which expects the data connections a control "
                         "connection announces");
    nftnl_obj_set_data(helper.get(), NFTNL_OBJ_USERDATA, userdata.data(), userdata.size());
    nftnl_obj_set_str(helper.get(), NFTNL_OBJ_CT_HELPER_NAME, kHelperName);
    nftnl_obj_set_u8(helper.get(), NFTNL_OBJ_CT_HELPER_L4PROTO, IPPROTO_TCP);
    nftnl_obj_set_u16(helper.get(), NFTNL_OBJ_CT_HELPER_L3PROTO, NFPROTO_INET);
    push(NFT_MSG_NEWOBJ, NLM_F_CREATE, std::move(helper), std::string("ct helper ") + kHelperName);
  }

  // A named set of addresses; returns its id, which rules and elements in the same batch refer to it by.
  uint32_t add_address_set(const std::string& name, policy::IpFamily family, uint32_t flags,
                           const std::string& comment) {
    const uint32_t id = next_set_id_++;
    SetPtr set = new_set(name, id, flags, family == policy::IpFamily::v4 ? kTypeIpv4Address : kTypeIpv6Address,
                         static_cast<uint32_t>(width_bytes(family)), comment);
    push(NFT_MSG_NEWSET, NLM_F_CREATE, std::move(set), "set " + name);
    return id;
  }

  void add_elements(const std::string& set_name, uint32_t set_id, const std::vector<SetElement>& elements) {
    for (size_t first = 0; first < elements.size(); first += kElementsPerMessage) {
      SetPtr set(checked(nftnl_set_alloc()));
      nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
      nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTableName);
      nftnl_set_set_str(set.get(), NFTNL_SET_NAME, set_name.c_str());
      nftnl_set_set_u32(set.get(), NFTNL_SET_ID, set_id);
      const size_t last = std::min(elements.size(), first + kElementsPerMessage);
      for (size_t i = first; i < last; ++i) {
        nftnl_set_elem* element = checked(nftnl_set_elem_alloc());
        nftnl_set_elem_set(element, NFTNL_SET_ELEM_KEY, elements[i].key.data(),
                           static_cast<uint32_t>(elements[i].key.size()));
        if (elements[i].interval_end) nftnl_set_elem_set_u32(element, NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
        nftnl_set_elem_add(set.get(), element);
      }
      push(NFT_MSG_NEWSETELEM, NLM_F_CREATE, std::move(set),
           "elements of set " + (set_name == kAnonymousSetName ? "{ ... }" : set_name));
    }
  }

  void add_chain(const char* name, const char* type, uint32_t hook, int32_t priority, const std::string& comment) {
    ChainPtr chain(checked(nftnl_chain_alloc()));
    nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, kTableName);
    nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, name);
    nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TYPE, type);
    nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(chain.get(), NFTNL_CHAIN_PRIO, priority);
    nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
    Userdata userdata;
    userdata.put_comment(NFTNL_UDATA_CHAIN_COMMENT, comment);
    nftnl_chain_set_data(chain.get(), NFTNL_CHAIN_USERDATA, userdata.data(), userdata.size());
    push(NFT_MSG_NEWCHAIN, NLM_F_CREATE, std::move(chain), std::string("chain ") + name);
  }

  // An anonymous constant set, sent just before the rule that looks it up; returns its id.
  uint32_t add_anonymous_set(uint32_t key_type, uint32_t key_len, bool interval,
                             const std::vector<SetElement>& elements) {
    const uint32_t id = next_set_id_++;
    uint32_t flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT;
    if (interval) flags |= NFT_SET_INTERVAL;
    SetPtr set = new_set(kAnonymousSetName, id, flags, key_type, key_len, {});
    nftnl_set_set_u32(set.get(), NFTNL_SET_DESC_SIZE, static_cast<uint32_t>(elements.size()));
    push(NFT_MSG_NEWSET, NLM_F_CREATE, std::move(set), "anonymous set");
    add_elements(kAnonymousSetName, id, elements);
    return id;
  }

  void add_rule(RulePtr rule, std::string what) {
    push(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, std::move(rule), std::move(what));
  }

  Batch take() { return std::move(batch_); }

 private:
  SetPtr new_set(const std::string& name, uint32_t id, uint32_t flags, uint32_t key_type, uint32_t key_len,
                 const std::string& comment) {
    SetPtr set(checked(nftnl_set_alloc()));
    nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTableName);
    nftnl_set_set_str(set.get(), NFTNL_SET_NAME, name.c_str());
    nftnl_set_set_u32(set.get(), NFTNL_SET_ID, id);
    nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, key_type);
    nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, key_len);
    Userdata userdata;
    userdata.put_u32(NFTNL_UDATA_SET_KEYBYTEORDER, kBigEndian);
    if (!comment.empty()) userdata.put_comment(NFTNL_UDATA_SET_COMMENT, comment);
    nftnl_set_set_data(set.get(), NFTNL_SET_USERDATA, userdata.data(), userdata.size());
    return set;
  }

  template <typename Object>
  void push(uint16_t type, uint16_t flags, Object object, std::string what) {
    batch_.push_back(BatchMessage{type, flags, std::move(object), std::move(what)});
  }

  Batch batch_;
  uint32_t next_set_id_ = 1;
};

// The expressions of one rule, as nft linearizes the matches and statements it reads the same as.
class RuleBuilder {
 public:
  RuleBuilder(BatchBuilder& batch, const char* chain) : batch_(batch), rule_(checked(nftnl_rule_alloc())) {
    nftnl_rule_set_u32(rule_.get(), NFTNL_RULE_FAMILY, NFPROTO_INET);
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_TABLE, kTableName);
    nftnl_rule_set_str(rule_.get(), NFTNL_RULE_CHAIN, chain);
  }

  // `meta nfproto ipv4|ipv6`: what `ip`/`ip6` matches in an inet table depend on.
  RuleBuilder& family(policy::IpFamily family) {
    meta(NFT_META_NFPROTO);
    const uint8_t nfproto = family == policy::IpFamily::v4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
    return cmp(NFT_CMP_EQ, Bytes{nfproto});
  }

  // `ip saddr { prefixes }` and such; `source` picks saddr or daddr.
  RuleBuilder& address_in_anonymous_set(policy::IpFamily family, bool source, const std::vector<ValueRange>& ranges) {
    load_address(family, source);
    const uint32_t key_type = family == policy::IpFamily::v4 ? kTypeIpv4Address : kTypeIpv6Address;
    const uint32_t id = batch_.add_anonymous_set(key_type, static_cast<uint32_t>(width_bytes(family)),
                                                 /*interval=*/true, interval_elements(ranges));
    return lookup(kAnonymousSetName, id);
  }

  // `ip daddr @set`.
  RuleBuilder& address_in_set(policy::IpFamily family, bool source, const std::string& set_name, uint32_t set_id) {
    load_address(family, source);
    return lookup(set_name, set_id);
  }

  // `tcp dport 21`, `tcp dport 21-25` or `tcp dport { 21, 2121 }`.
  RuleBuilder& tcp_destination_port(const std::vector<PortRange>& ports) {
    meta(NFT_META_L4PROTO);
    cmp(NFT_CMP_EQ, Bytes{IPPROTO_TCP});
    payload(NFT_PAYLOAD_TRANSPORT_HEADER, kTcpDestinationPortOffset, 2);
    std::vector<ValueRange> ranges;
    ranges.reserve(ports.size());
    for (const PortRange& range : ports) ranges.push_back(range_of(range));
    if (ranges.empty()) ranges.push_back(range_of(PortRange{kFtpControlPort, kFtpControlPort}));
    const bool singles = std::all_of(ranges.begin(), ranges.end(), [](const ValueRange& r) { return r.lo == r.hi; });
    if (singles) {
      std::sort(ranges.begin(), ranges.end(), [](const ValueRange& a, const ValueRange& b) { return a.lo < b.lo; });
      ranges.erase(std::unique(ranges.begin(), ranges.end(),
                               [](const ValueRange& a, const ValueRange& b) { return a.lo == b.lo; }),
                   ranges.end());
      if (ranges.size() == 1) return cmp(NFT_CMP_EQ, ranges.front().lo);
      std::vector<SetElement> elements;
      elements.reserve(ranges.size());
      for (const ValueRange& range : ranges) elements.push_back({range.lo, false});
      return lookup(kAnonymousSetName, batch_.add_anonymous_set(kTypeInetService, 2, /*interval=*/false, elements));
    }
    ranges = merged(std::move(ranges));
    if (ranges.size() == 1) {
      cmp(NFT_CMP_GTE, ranges.front().lo);
      return cmp(NFT_CMP_LTE, ranges.front().hi);
    }
    return lookup(kAnonymousSetName,
                  batch_.add_anonymous_set(kTypeInetService, 2, /*interval=*/true, interval_elements(ranges)));
  }

  // `oifname "IF"`: the name NUL-padded to IFNAMSIZ, as the kernel loads it.
  RuleBuilder& output_interface(const std::string& name) {
    meta(NFT_META_OIFNAME);
    Bytes padded(name.begin(), name.end());
    padded.resize(std::min(std::max<size_t>(name.size() + 1, IFNAMSIZ), kCmpDataMaxBytes), 0);
    return cmp(NFT_CMP_EQ, padded);
  }

  // `ct helper set "ftp"`.
  RuleBuilder& ct_helper(const char* name) {
    nftnl_expr* objref = expression("objref");
    nftnl_expr_set_u32(objref, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_CT_HELPER);
    nftnl_expr_set_str(objref, NFTNL_EXPR_OBJREF_IMM_NAME, name);
    return add(objref);
  }

  RuleBuilder& counter() { return add(expression("counter")); }
  RuleBuilder& masquerade() { return add(expression("masq")); }

  void finish(const std::string& comment, std::string what) {
    Userdata userdata;
    userdata.put_comment(NFTNL_UDATA_RULE_COMMENT, comment);
    nftnl_rule_set_data(rule_.get(), NFTNL_RULE_USERDATA, userdata.data(), userdata.size());
    batch_.add_rule(std::move(rule_), std::move(what));
  }

 private:
  static nftnl_expr* expression(const char* name) { return checked(nftnl_expr_alloc(name)); }

  RuleBuilder& add(nftnl_expr* expr) {
    nftnl_rule_add_expr(rule_.get(), expr);
    return *this;
  }

  RuleBuilder& meta(uint32_t key) {
    nftnl_expr* meta = expression("meta");
    nftnl_expr_set_u32(meta, NFTNL_EXPR_META_KEY, key);
    nftnl_expr_set_u32(meta, NFTNL_EXPR_META_DREG, NFT_REG_1);
    return add(meta);
  }

  RuleBuilder& cmp(uint32_t op, const Bytes& value) {
    nftnl_expr* cmp = expression("cmp");
    nftnl_expr_set_u32(cmp, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
    nftnl_expr_set_u32(cmp, NFTNL_EXPR_CMP_OP, op);
    nftnl_expr_set(cmp, NFTNL_EXPR_CMP_DATA, value.data(), static_cast<uint32_t>(value.size()));
    return add(cmp);
  }

  RuleBuilder& payload(uint32_t base, uint32_t offset, uint32_t length) {
    nftnl_expr* payload = expression("payload");
    nftnl_expr_set_u32(payload, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
    nftnl_expr_set_u32(payload, NFTNL_EXPR_PAYLOAD_BASE, base);
    nftnl_expr_set_u32(payload, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
    nftnl_expr_set_u32(payload, NFTNL_EXPR_PAYLOAD_LEN, length);
    return add(payload);
  }

  RuleBuilder& load_address(policy::IpFamily family, bool source) {
    const bool v4 = family == policy::IpFamily::v4;
    const uint32_t offset = v4 ? (source ? kIpv4SourceOffset : kIpv4DestinationOffset)
                               : (source ? kIpv6SourceOffset : kIpv6DestinationOffset);
    return payload(NFT_PAYLOAD_NETWORK_HEADER, offset, static_cast<uint32_t>(width_bytes(family)));
  }

  RuleBuilder& lookup(const std::string& set_name, uint32_t set_id) {
    nftnl_expr* lookup = expression("lookup");
    nftnl_expr_set_u32(lookup, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
    nftnl_expr_set_str(lookup, NFTNL_EXPR_LOOKUP_SET, set_name.c_str());
    nftnl_expr_set_u32(lookup, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    return add(lookup);
  }

  BatchBuilder& batch_;
  RulePtr rule_;
};

constexpr std::array<policy::IpFamily, 2> kFamilies = {policy::IpFamily::v4, policy::IpFamily::v6};

// A named set of one rule's destinations of one family: one nft rule matches against it.
struct DestinationSet {
  policy::IpFamily family = policy::IpFamily::v4;
  std::string name;
  uint32_t id = 0;
};

void add_ftp_rules(BatchBuilder& batch, const TableSpec& spec) {
  std::vector<std::vector<DestinationSet>> sets_of_rule(spec.ftp_rules.size());
  for (size_t i = 0; i < spec.ftp_rules.size(); ++i) {
    const FtpRule& rule = spec.ftp_rules[i];
    for (const policy::IpFamily family : kFamilies) {
      // Sources, none of them of this family: no connection of this family may have the helper.
      if (!rule.sources.empty() && ranges_of(rule.sources, family).empty()) continue;
      const std::vector<ValueRange> destinations = ranges_of(rule.destinations, family);
      if (!destinations.empty()) {
        const std::string name = address_set_name(i, family);
        const uint32_t id = batch.add_address_set(name, family, NFT_SET_INTERVAL,
                                                  "portcullis rule " + rule.name + ": FTP servers by address");
        batch.add_elements(name, id, interval_elements(destinations));
        sets_of_rule[i].push_back({family, name, id});
      }
      if (rule.by_name) {
        const std::string name = dns_set_name(i, family);
        const uint32_t id = batch.add_address_set(
            name, family, NFT_SET_TIMEOUT,
            "portcullis rule " + rule.name + ": FTP servers by name, addresses from DNS answers until their TTL");
        sets_of_rule[i].push_back({family, name, id});
      }
    }
  }

  const bool gateway = spec.hook == TableSpec::Hook::prerouting;
  batch.add_chain(kHelperChain, "filter", gateway ? NF_INET_PRE_ROUTING : NF_INET_LOCAL_OUT, kFilterPriority,
                  gateway ? "portcullis: the FTP helper on forwarded control connections of ftp rules"
                          : "portcullis: the FTP helper on this host's control connections of ftp rules");
  for (size_t i = 0; i < spec.ftp_rules.size(); ++i) {
    const FtpRule& rule = spec.ftp_rules[i];
    for (const DestinationSet& set : sets_of_rule[i]) {
      const std::vector<ValueRange> sources = ranges_of(rule.sources, set.family);
      RuleBuilder nft_rule(batch, kHelperChain);
      nft_rule.family(set.family);
      if (!sources.empty()) nft_rule.address_in_anonymous_set(set.family, /*source=*/true, sources);
      nft_rule.address_in_set(set.family, /*source=*/false, set.name, set.id)
          .tcp_destination_port(rule.ports)
          .ct_helper(kHelperName)
          .counter();
      nft_rule.finish("portcullis rule " + rule.name + ": FTP control, its data connections follow the helper",
                      "rule for " + quoted(rule.name) + " to @" + set.name + " in chain " + kHelperChain);
    }
  }
}

void add_masquerade(BatchBuilder& batch, const std::string& iface, const std::vector<policy::Cidr>& sources) {
  batch.add_chain(kMasqueradeChain, "nat", NF_INET_POST_ROUTING, kSourceNatPriority,
                  "portcullis: the sandboxes' traffic leaving through " + iface + " takes its address");
  const std::string comment = "portcullis: masquerade through " + iface;
  const auto what = [&](const std::string& which_sources) {
    return "masquerade rule through " + quoted(iface) + which_sources + " in chain " + kMasqueradeChain;
  };
  if (sources.empty()) {
    RuleBuilder(batch, kMasqueradeChain).output_interface(iface).counter().masquerade().finish(comment, what(""));
    return;
  }
  for (const policy::IpFamily family : kFamilies) {
    const std::vector<ValueRange> ranges = ranges_of(sources, family);
    if (ranges.empty()) continue;
    RuleBuilder(batch, kMasqueradeChain)
        .output_interface(iface)
        .family(family)
        .address_in_anonymous_set(family, /*source=*/true, ranges)
        .counter()
        .masquerade()
        .finish(comment, what(std::string(" for IP") + family_name(family) + " sources"));
  }
}

// Creating the table first makes deleting it succeed whether or not it was there; the kernel applies the
// whole batch or none of it.
Batch replacement_batch(const TableSpec& spec) {
  BatchBuilder batch;
  batch.add_table(NFT_MSG_NEWTABLE);
  batch.add_table(NFT_MSG_DELTABLE);
  batch.add_table(NFT_MSG_NEWTABLE,
                  "owned by portcullis: FTP helper assignment and gateway NAT, replaced whole on each reload");
  batch.add_ftp_helper();
  add_ftp_rules(batch, spec);
  if (spec.masquerade_iface) add_masquerade(batch, *spec.masquerade_iface, spec.masquerade_sources);
  return batch.take();
}

Batch removal_batch() {
  BatchBuilder batch;
  batch.add_table(NFT_MSG_NEWTABLE);
  batch.add_table(NFT_MSG_DELTABLE);
  return batch.take();
}

const char* message_name(uint16_t type) {
  switch (type) {
    case NFT_MSG_NEWTABLE:
      return "NEWTABLE";
    case NFT_MSG_DELTABLE:
      return "DELTABLE";
    case NFT_MSG_NEWOBJ:
      return "NEWOBJ";
    case NFT_MSG_NEWSET:
      return "NEWSET";
    case NFT_MSG_NEWSETELEM:
      return "NEWSETELEM";
    case NFT_MSG_NEWCHAIN:
      return "NEWCHAIN";
    case NFT_MSG_NEWRULE:
      return "NEWRULE";
    default:
      return "?";
  }
}

std::string render(const BatchMessage& message) {
  std::array<char, 16384> text{};
  const int length = std::visit(
      [&](const auto& object) -> int {
        using Object = std::decay_t<decltype(object)>;
        if constexpr (std::is_same_v<Object, TablePtr>) {
          return nftnl_table_snprintf(text.data(), text.size(), object.get(), NFTNL_OUTPUT_DEFAULT, 0);
        } else if constexpr (std::is_same_v<Object, ObjectPtr>) {
          return nftnl_obj_snprintf(text.data(), text.size(), object.get(), NFTNL_OUTPUT_DEFAULT, 0);
        } else if constexpr (std::is_same_v<Object, SetPtr>) {
          return nftnl_set_snprintf(text.data(), text.size(), object.get(), NFTNL_OUTPUT_DEFAULT, 0);
        } else if constexpr (std::is_same_v<Object, ChainPtr>) {
          return nftnl_chain_snprintf(text.data(), text.size(), object.get(), NFTNL_OUTPUT_DEFAULT, 0);
        } else {
          return nftnl_rule_snprintf(text.data(), text.size(), object.get(), NFTNL_OUTPUT_DEFAULT, 0);
        }
      },
      message.object);
  const std::string printed(text.data(), static_cast<size_t>(std::clamp<int>(length, 0, text.size() - 1)));
  // libnftnl separates a set's elements with tabs: one a line instead, indented like a rule's expressions.
  std::string lines = std::string(message_name(message.type)) + " ";
  for (size_t i = 0; i < printed.size(); ++i) {
    if (printed[i] == '\t') {
      if (lines.back() != '\n') lines += '\n';
      lines += "  ";
    } else {
      lines += printed[i];
    }
  }
  while (lines.back() == '\n' || lines.back() == ' ') lines.pop_back();
  return lines;
}

// ---- Sending ----

// Appends one message built in place by `build` (given where to write, it returns the header it wrote).
template <typename Build>
void append_message(std::vector<char>& buffer, Build build) {
  const size_t at = buffer.size();
  buffer.resize(at + kMessageBufferBytes);
  const nlmsghdr* header = build(buffer.data() + at);
  buffer.resize(at + NLMSG_ALIGN(header->nlmsg_len));
}

std::vector<char> serialize(const Batch& batch, uint32_t first_seq) {
  std::vector<char> buffer;
  append_message(buffer, [&](char* at) { return nftnl_batch_begin(at, first_seq); });
  uint32_t seq = first_seq + 1;
  for (const BatchMessage& message : batch) {
    append_message(buffer, [&](char* at) {
      nlmsghdr* header = nftnl_nlmsg_build_hdr(at, message.type, NFPROTO_INET, message.flags, seq++);
      std::visit(
          [&](const auto& object) {
            using Object = std::decay_t<decltype(object)>;
            if constexpr (std::is_same_v<Object, TablePtr>) {
              nftnl_table_nlmsg_build_payload(header, object.get());
            } else if constexpr (std::is_same_v<Object, ObjectPtr>) {
              nftnl_obj_nlmsg_build_payload(header, object.get());
            } else if constexpr (std::is_same_v<Object, SetPtr>) {
              if (message.type == NFT_MSG_NEWSETELEM) {
                nftnl_set_elems_nlmsg_build_payload(header, object.get());
              } else {
                nftnl_set_nlmsg_build_payload(header, object.get());
              }
            } else if constexpr (std::is_same_v<Object, ChainPtr>) {
              nftnl_chain_nlmsg_build_payload(header, object.get());
            } else {
              nftnl_rule_nlmsg_build_payload(header, object.get());
            }
          },
          message.object);
      return header;
    });
  }
  append_message(buffer, [&](char* at) { return nftnl_batch_end(at, seq); });
  return buffer;
}

// The text of an extended ack (NLMSGERR_ATTR_MSG), when the kernel gave one.
std::string extended_ack_text(const nlmsghdr* header) {
  if ((header->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return {};
  const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
  size_t offset = sizeof(nlmsgerr);
  if ((header->nlmsg_flags & NLM_F_CAPPED) == 0) offset += mnl_nlmsg_get_payload_len(&error->msg);
  std::string text;
  mnl_attr_parse(
      header, static_cast<unsigned int>(offset),
      [](const nlattr* attribute, void* found) {
        if (mnl_attr_get_type(attribute) == NLMSGERR_ATTR_MSG &&
            mnl_attr_validate(attribute, MNL_TYPE_NUL_STRING) == 0) {
          *static_cast<std::string*>(found) = mnl_attr_get_str(attribute);
        }
        return MNL_CB_OK;
      },
      &text);
  return text;
}

// Reads what is waiting on the socket without blocking, and hands each message to `on_message`.
template <typename OnMessage>
std::string read_pending(mnl_socket* socket, OnMessage on_message) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  const int fd = mnl_socket_get_fd(socket);
  while (true) {
    const ssize_t received = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (received < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return {};
      if (errno == EINTR) continue;
      return std::string("cannot read the kernel's answer: ") + std::strerror(errno);
    }
    int left = static_cast<int>(received);
    for (const auto* header = reinterpret_cast<const nlmsghdr*>(buffer.data()); mnl_nlmsg_ok(header, left);
         header = mnl_nlmsg_next(header, &left)) {
      on_message(header);
    }
  }
}

}  // namespace

std::string address_set_name(size_t rule_index, policy::IpFamily family) {
  return "ftp" + std::to_string(rule_index) + "_" + family_name(family);
}

std::string dns_set_name(size_t rule_index, policy::IpFamily family) {
  return "ftp" + std::to_string(rule_index) + "_dns_" + family_name(family);
}

std::vector<std::string> render_batch(const TableSpec& spec) {
  std::vector<std::string> lines;
  for (const BatchMessage& message : replacement_batch(spec)) lines.push_back(render(message));
  return lines;
}

FtpTable::FtpTable() {
  socket_ = mnl_socket_open(NETLINK_NETFILTER);
  if (socket_ == nullptr) {
    throw std::runtime_error(std::string("cannot open a netfilter netlink socket: ") + std::strerror(errno));
  }
  // Short acks (no copy of the request) and the kernel's words on what it refused.
  int one = 1;
  mnl_socket_setsockopt(socket_, NETLINK_CAP_ACK, &one, sizeof(one));
  mnl_socket_setsockopt(socket_, NETLINK_EXT_ACK, &one, sizeof(one));
  if (mnl_socket_bind(socket_, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int error = errno;
    mnl_socket_close(socket_);
    throw std::runtime_error(std::string("cannot bind a netfilter netlink socket: ") + std::strerror(error));
  }
  port_id_ = mnl_socket_get_portid(socket_);
  next_seq_ = static_cast<uint32_t>(::time(nullptr));
}

FtpTable::~FtpTable() {
  mnl_socket_close(socket_);
}

namespace {

// Sends the batch and collects the kernel's errors. The kernel handles a batch within the send, so its
// answers are waiting once the send returns; it answers a batch it applied with nothing.
std::string send_batch(mnl_socket* socket, uint32_t& next_seq, const Batch& batch) {
  // Answers left from an earlier request would be read as this one's.
  (void)read_pending(socket, [](const nlmsghdr*) {});
  const uint32_t first_seq = next_seq;
  next_seq += static_cast<uint32_t>(batch.size()) + 2;
  const std::vector<char> buffer = serialize(batch, first_seq);

  const int fd = mnl_socket_get_fd(socket);
  int send_buffer = 0;
  socklen_t length = sizeof(send_buffer);
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send_buffer, &length) == 0 &&
      static_cast<size_t>(send_buffer) < buffer.size() + 4096) {
    // A batch goes in one datagram, which must fit the socket's send buffer.
    const int wanted = static_cast<int>(buffer.size() + 4096);
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &wanted, sizeof(wanted)) != 0) {
      (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &wanted, sizeof(wanted));
    }
  }
  if (mnl_socket_sendto(socket, buffer.data(), buffer.size()) < 0) {
    return std::string("cannot send the nftables batch: ") + std::strerror(errno);
  }

  std::string errors;
  const std::string read_error = read_pending(socket, [&](const nlmsghdr* header) {
    if (header->nlmsg_type != NLMSG_ERROR) return;
    const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
    if (error->error == 0) return;
    std::string refused = "the kernel refused ";
    const uint32_t seq = header->nlmsg_seq;
    if (seq > first_seq && seq <= first_seq + batch.size()) {
      refused += "the " + batch[seq - first_seq - 1].what;
    } else {
      refused += "the batch";
    }
    refused += std::string(": ") + std::strerror(-error->error);
    const std::string detail = extended_ack_text(header);
    if (!detail.empty()) refused += " (" + detail + ")";
    errors += (errors.empty() ? "" : "; ") + refused;
  });
  if (!read_error.empty()) errors += (errors.empty() ? "" : "; ") + read_error;
  return errors;
}

}  // namespace

std::string FtpTable::apply(const TableSpec& spec) {
  std::string error = send_batch(socket_, next_seq_, replacement_batch(spec));
  if (!error.empty()) return "cannot replace table inet " + std::string(kTableName) + ": " + error;
  by_name_rules_.clear();
  for (const FtpRule& rule : spec.ftp_rules) by_name_rules_.push_back(rule.by_name);
  return {};
}

std::string FtpTable::add_bound_address(size_t rule_index, const policy::IpAddress& address, uint32_t ttl_seconds) {
  if (rule_index >= by_name_rules_.size() || !by_name_rules_[rule_index]) {
    return "rule " + std::to_string(rule_index) + " of the FTP table names no servers by DNS name";
  }
  const policy::IpAddress bound = address.unmapped();
  const std::string set_name = dns_set_name(rule_index, bound.family);
  SetPtr set(checked(nftnl_set_alloc()));
  nftnl_set_set_u32(set.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, kTableName);
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, set_name.c_str());
  nftnl_set_elem* element = checked(nftnl_set_elem_alloc());
  const Bytes key = address_bytes(bound);
  nftnl_set_elem_set(element, NFTNL_SET_ELEM_KEY, key.data(), static_cast<uint32_t>(key.size()));
  // A timeout of zero would mean none: the binding would never expire.
  nftnl_set_elem_set_u64(element, NFTNL_SET_ELEM_TIMEOUT, uint64_t{std::max<uint32_t>(ttl_seconds, 1)} * 1000);
  nftnl_set_elem_add(set.get(), element);
  Batch batch;
  batch.push_back(BatchMessage{NFT_MSG_NEWSETELEM, NLM_F_CREATE, std::move(set),
                               "element " + bound.to_string() + " of set " + set_name});
  std::string error = send_batch(socket_, next_seq_, batch);
  if (!error.empty()) return "cannot add " + bound.to_string() + " to set " + set_name + ": " + error;
  return {};
}

std::string FtpTable::remove() {
  std::string error = send_batch(socket_, next_seq_, removal_batch());
  if (!error.empty()) return "cannot delete table inet " + std::string(kTableName) + ": " + error;
  by_name_rules_.clear();
  return {};
}

bool FtpTable::exists() {
  (void)read_pending(socket_, [](const nlmsghdr*) {});
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  const uint32_t seq = next_seq_++;
  nlmsghdr* header = nftnl_nlmsg_build_hdr(buffer.data(), NFT_MSG_GETTABLE, NFPROTO_INET, NLM_F_ACK, seq);
  TablePtr table(checked(nftnl_table_alloc()));
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, kTableName);
  nftnl_table_nlmsg_build_payload(header, table.get());
  if (mnl_socket_sendto(socket_, header, header->nlmsg_len) < 0) {
    throw std::runtime_error(std::string("cannot ask for table inet portcullis: ") + std::strerror(errno));
  }
  while (true) {
    const ssize_t received = mnl_socket_recvfrom(socket_, buffer.data(), buffer.size());
    if (received < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("cannot read whether table inet portcullis exists: ") +
                               std::strerror(errno));
    }
    // The table comes back, then the ack; or an error alone.
    const int result = mnl_cb_run(buffer.data(), static_cast<size_t>(received), seq, port_id_, nullptr, nullptr);
    if (result == MNL_CB_STOP) return true;
    if (result == MNL_CB_ERROR) {
      if (errno == ENOENT) return false;
      throw std::runtime_error(std::string("cannot ask for table inet portcullis: ") + std::strerror(errno));
    }
  }
}

}  // namespace portcullis::nft
