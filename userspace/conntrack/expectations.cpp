#include "conntrack/expectations.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter/nfnetlink_compat.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <unordered_set>
#include <utility>

namespace portcullis::conntrack {
namespace {

using policy::IpFamily;

struct CloseHandle {
  void operator()(nfct_handle* handle) const { nfct_close(handle); }
};
using Handle = std::unique_ptr<nfct_handle, CloseHandle>;

// An expectation callback's context is freed only by unregistering it, which is harmless when there is none. (Not
// for a CONNTRACK handle: it has no expectation subsystem.)
void close_expectation_handle(nfct_handle* handle) {
  nfexp_callback_unregister2(handle);
  nfct_close(handle);
}

struct CloseExpectationHandle {
  void operator()(nfct_handle* handle) const { close_expectation_handle(handle); }
};
using ExpectationHandle = std::unique_ptr<nfct_handle, CloseExpectationHandle>;

struct ConntrackDestroyer {
  void operator()(nf_conntrack* entry) const { nfct_destroy(entry); }
};
using ConntrackObject = std::unique_ptr<nf_conntrack, ConntrackDestroyer>;

struct ExpectDestroyer {
  void operator()(nf_expect* expect) const { nfexp_destroy(expect); }
};
using ExpectObject = std::unique_ptr<nf_expect, ExpectDestroyer>;

std::string with_errno(const std::string& what, int error) {
  return what + ": " + std::strerror(error);
}

std::string address_with_port(const policy::IpAddress& address, uint16_t port) {
  const std::string text = address.to_string();
  return (address.family == IpFamily::v6 ? "[" + text + "]" : text) + ":" + std::to_string(port);
}

ConntrackTuple tuple_of(const nf_conntrack* entry) {
  ConntrackTuple tuple;
  if (nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO) == AF_INET6) {
    tuple.src.family = tuple.dst.family = IpFamily::v6;
    const void* src = nfct_get_attr(entry, ATTR_ORIG_IPV6_SRC);
    const void* dst = nfct_get_attr(entry, ATTR_ORIG_IPV6_DST);
    if (src != nullptr) std::memcpy(tuple.src.bytes.data(), src, 16);
    if (dst != nullptr) std::memcpy(tuple.dst.bytes.data(), dst, 16);
  } else {
    // Network byte order, as the address bytes are.
    const uint32_t src = nfct_get_attr_u32(entry, ATTR_ORIG_IPV4_SRC);
    const uint32_t dst = nfct_get_attr_u32(entry, ATTR_ORIG_IPV4_DST);
    std::memcpy(tuple.src.bytes.data(), &src, 4);
    std::memcpy(tuple.dst.bytes.data(), &dst, 4);
  }
  tuple.proto = nfct_get_attr_u8(entry, ATTR_ORIG_L4PROTO);
  tuple.sport = ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_SRC));
  tuple.dport = ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_DST));
  return tuple;
}

ConntrackObject conntrack_of(const ConntrackTuple& tuple) {
  ConntrackObject entry(nfct_new());
  if (!entry) return entry;
  const bool v4 = tuple.src.family == IpFamily::v4;
  nfct_set_attr_u8(entry.get(), ATTR_ORIG_L3PROTO, v4 ? AF_INET : AF_INET6);
  if (v4) {
    uint32_t src = 0;
    uint32_t dst = 0;
    std::memcpy(&src, tuple.src.bytes.data(), 4);
    std::memcpy(&dst, tuple.dst.bytes.data(), 4);
    nfct_set_attr_u32(entry.get(), ATTR_ORIG_IPV4_SRC, src);
    nfct_set_attr_u32(entry.get(), ATTR_ORIG_IPV4_DST, dst);
  } else {
    nfct_set_attr(entry.get(), ATTR_ORIG_IPV6_SRC, tuple.src.bytes.data());
    nfct_set_attr(entry.get(), ATTR_ORIG_IPV6_DST, tuple.dst.bytes.data());
  }
  nfct_set_attr_u8(entry.get(), ATTR_ORIG_L4PROTO, tuple.proto);
  nfct_set_attr_u16(entry.get(), ATTR_ORIG_PORT_SRC, htons(tuple.sport));
  nfct_set_attr_u16(entry.get(), ATTR_ORIG_PORT_DST, htons(tuple.dport));
  return entry;
}

// libnetfilter_conntrack keeps no CTA_EXPECT_ID, so it is read from the message itself.
uint32_t expectation_id(const nlmsghdr* message) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(message);
  const size_t end = message->nlmsg_len;
  for (size_t at = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)); at + NLA_HDRLEN <= end;) {
    nlattr attribute{};
    std::memcpy(&attribute, bytes + at, sizeof(attribute));
    if (attribute.nla_len < NLA_HDRLEN || at + attribute.nla_len > end) break;
    if ((attribute.nla_type & NLA_TYPE_MASK) == CTA_EXPECT_ID && attribute.nla_len >= NLA_HDRLEN + 4) {
      uint32_t id = 0;
      std::memcpy(&id, bytes + at + NLA_HDRLEN, 4);
      return ntohl(id);
    }
    at += NLA_ALIGN(attribute.nla_len);
  }
  return 0;
}

Expectation expectation_of(const nlmsghdr* message, const nf_expect* expect) {
  Expectation expectation;
  if (nfexp_attr_is_set(expect, ATTR_EXP_MASTER)) {
    expectation.master = tuple_of(static_cast<const nf_conntrack*>(nfexp_get_attr(expect, ATTR_EXP_MASTER)));
  }
  if (nfexp_attr_is_set(expect, ATTR_EXP_EXPECTED)) {
    expectation.expected = tuple_of(static_cast<const nf_conntrack*>(nfexp_get_attr(expect, ATTR_EXP_EXPECTED)));
  }
  // Without a mask, claim no wildcard: a mirror that demands the exact port lets less through, never more.
  expectation.any_source_port = false;
  if (nfexp_attr_is_set(expect, ATTR_EXP_MASK)) {
    const auto* mask = static_cast<const nf_conntrack*>(nfexp_get_attr(expect, ATTR_EXP_MASK));
    expectation.any_source_port = nfct_get_attr_u16(mask, ATTR_ORIG_PORT_SRC) == 0;
  }
  expectation.timeout_s = nfexp_get_attr_u32(expect, ATTR_EXP_TIMEOUT);
  if (nfexp_attr_is_set(expect, ATTR_EXP_HELPER_NAME)) {
    expectation.helper = static_cast<const char*>(nfexp_get_attr(expect, ATTR_EXP_HELPER_NAME));
  }
  expectation.id = expectation_id(message);
  return expectation;
}

struct DumpEntry {
  Expectation expectation;
  // A deletion names the expectation by its tuple within its conntrack zone.
  std::optional<uint16_t> zone;
};

int collect_dump_entry(const nlmsghdr* message, nf_conntrack_msg_type, nf_expect* expect, void* data) {
  DumpEntry entry{expectation_of(message, expect), std::nullopt};
  if (nfexp_attr_is_set(expect, ATTR_EXP_ZONE)) entry.zone = nfexp_get_attr_u16(expect, ATTR_EXP_ZONE);
  static_cast<std::vector<DumpEntry>*>(data)->push_back(std::move(entry));
  return NFCT_CB_CONTINUE;
}

std::string dump_into(nfct_handle* handle, std::vector<DumpEntry>& entries) {
  if (nfexp_callback_register2(handle, NFCT_T_ALL, collect_dump_entry, &entries) != 0) {
    return with_errno("cannot register for the expectation dump", errno);
  }
  uint32_t every_family = AF_UNSPEC;
  const int result = nfexp_query(handle, NFCT_Q_DUMP, &every_family);
  const int error = errno;
  nfexp_callback_unregister2(handle);
  if (result != 0) return with_errno("cannot dump the conntrack expectations", error);
  return {};
}

using ArrivedEvents = std::vector<std::pair<ExpectationListener::Event, Expectation>>;

int collect_event(const nlmsghdr* message, nf_conntrack_msg_type type, nf_expect* expect, void* data) {
  const auto event =
      type == NFCT_T_DESTROY ? ExpectationListener::Event::destroyed : ExpectationListener::Event::created;
  static_cast<ArrivedEvents*>(data)->emplace_back(event, expectation_of(message, expect));
  return NFCT_CB_CONTINUE;
}

void hash_into(size_t& seed, size_t value) {
  seed ^= value + 0x9e3779b97f4a7c15ull + (seed << 6) + (seed >> 2);
}

void hash_tuple_into(size_t& seed, const ConntrackTuple& tuple) {
  const policy::IpAddressHash address_hash;
  hash_into(seed, address_hash(tuple.src));
  hash_into(seed, address_hash(tuple.dst));
  hash_into(seed, (size_t{tuple.sport} << 24) | (size_t{tuple.dport} << 8) | tuple.proto);
}

}  // namespace

std::string ConntrackTuple::to_string() const {
  return address_with_port(src, sport) + " -> " + address_with_port(dst, dport);
}

void ExpectationListener::HandleCloser::operator()(nfct_handle* handle) const {
  close_expectation_handle(handle);
}

size_t ExpectationListener::KeyHash::operator()(const Key& key) const {
  size_t seed = key.id;
  hash_tuple_into(seed, key.master);
  hash_tuple_into(seed, key.expected);
  return seed;
}

ExpectationListener::Key ExpectationListener::key_of(const Expectation& expectation) {
  return Key{expectation.id, expectation.master, expectation.expected};
}

ExpectationListener::ExpectationListener(Handler handler) : handler_(std::move(handler)) {
  events_.reset(nfct_open(EXPECT, NF_NETLINK_CONNTRACK_EXP_NEW | NF_NETLINK_CONNTRACK_EXP_DESTROY));
  if (!events_) {
    throw std::runtime_error(with_errno("cannot subscribe to conntrack expectation events (ctnetlink)", errno));
  }
  const int fd = nfct_fd(events_.get());
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    throw std::runtime_error(with_errno("cannot make the expectation event socket non-blocking", errno));
  }
  if (nfexp_callback_register2(events_.get(), static_cast<nf_conntrack_msg_type>(NFCT_T_NEW | NFCT_T_DESTROY),
                               collect_event, &arrived_) != 0) {
    throw std::runtime_error(with_errno("cannot register for expectation events", errno));
  }
  // Dumps get a socket of their own: their replies must not queue up behind events, nor events behind them.
  queries_.reset(nfct_open(EXPECT, 0));
  if (!queries_) throw std::runtime_error(with_errno("cannot open ctnetlink for expectation dumps", errno));
  // Subscribed first, dumped second: an expectation made in between is in the dump or among the events.
  resynchronize();
}

ExpectationListener::~ExpectationListener() = default;

int ExpectationListener::fd() const {
  return nfct_fd(events_.get());
}

void ExpectationListener::on_readable() {
  for (;;) {
    const int result = nfexp_catch(events_.get());
    const int error = errno;
    ArrivedEvents arrived = std::move(arrived_);
    arrived_.clear();
    for (const auto& [event, expectation] : arrived) deliver(event, expectation);
    if (result >= 0) continue;
    if (error == EAGAIN || error == EWOULDBLOCK) return;
    if (error == ENOBUFS) {
      // The kernel dropped events the socket had no room for; which ones is unknown, so compare with a dump. What
      // is still queued is older than that dump: applied after it, a stale creation would come back to life.
      ++lost_;
      discard_waiting();
      resynchronize();
      continue;
    }
    // A message from a process rather than the kernel: libnfnetlink refused it.
    if (error == ENOMSG) continue;
    throw std::runtime_error(with_errno("cannot read conntrack expectation events", error));
  }
}

std::vector<Expectation> ExpectationListener::dump() {
  std::vector<DumpEntry> entries;
  const std::string error = dump_into(queries_.get(), entries);
  if (!error.empty()) throw std::runtime_error(error);
  std::vector<Expectation> expectations;
  expectations.reserve(entries.size());
  for (DumpEntry& entry : entries) expectations.push_back(std::move(entry.expectation));
  return expectations;
}

void ExpectationListener::deliver(Event event, const Expectation& expectation) {
  const Key key = key_of(expectation);
  if (event == Event::created) {
    // Already told: a dump after lost events got there before the event did.
    if (!live_.try_emplace(key, expectation).second) return;
  } else if (live_.erase(key) == 0) {
    // Never told: it ended before a dump could show it.
    return;
  }
  handler_(event, expectation);
}

void ExpectationListener::discard_waiting() {
  // MSG_TRUNC drops each message whole, however small the buffer. Bounded: events that keep coming are newer than
  // the dump to come, and harmless.
  constexpr int kMostDiscarded = 4096;
  std::array<uint8_t, 64> buffer{};
  for (int discarded = 0; discarded < kMostDiscarded; ++discarded) {
    if (::recv(fd(), buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_TRUNC) >= 0) continue;
    if (errno != EINTR && errno != ENOBUFS) return;
  }
}

void ExpectationListener::resynchronize() {
  const std::vector<Expectation> now = dump();
  std::unordered_set<Key, KeyHash> present;
  for (const Expectation& expectation : now) present.insert(key_of(expectation));
  std::vector<Expectation> gone;
  for (const auto& [key, expectation] : live_) {
    if (!present.contains(key)) gone.push_back(expectation);
  }
  for (const Expectation& expectation : gone) deliver(Event::destroyed, expectation);
  for (const Expectation& expectation : now) deliver(Event::created, expectation);
}

std::string delete_expectations_of(const ConntrackTuple& master) {
  const ExpectationHandle handle(nfct_open(EXPECT, 0));
  if (!handle) return with_errno("cannot open ctnetlink", errno);
  std::vector<DumpEntry> entries;
  std::string problems = dump_into(handle.get(), entries);
  if (!problems.empty()) return problems;
  for (const DumpEntry& entry : entries) {
    if (!(entry.expectation.master == master)) continue;
    // The kernel finds an expectation to delete by its expected tuple (under its mask) and zone.
    const ExpectObject doomed(nfexp_new());
    const ConntrackObject expected = conntrack_of(entry.expectation.expected);
    if (!doomed || !expected) return "out of memory";
    nfexp_set_attr(doomed.get(), ATTR_EXP_EXPECTED, expected.get());
    if (entry.zone) nfexp_set_attr_u16(doomed.get(), ATTR_EXP_ZONE, *entry.zone);
    if (nfexp_query(handle.get(), NFCT_Q_DESTROY, doomed.get()) == 0) continue;
    const int error = errno;
    // Gone already: its data connection came, or it timed out.
    if (error == ENOENT) continue;
    if (!problems.empty()) problems += "; ";
    problems += with_errno("cannot delete the expectation of " + entry.expectation.expected.to_string(), error);
  }
  return problems;
}

std::string delete_conntrack_entry(const ConntrackTuple& tuple) {
  const Handle handle(nfct_open(CONNTRACK, 0));
  if (!handle) return with_errno("cannot open ctnetlink", errno);
  const ConntrackObject entry = conntrack_of(tuple);
  if (!entry) return "out of memory";
  if (nfct_query(handle.get(), NFCT_Q_DESTROY, entry.get()) == 0) return {};
  const int error = errno;
  if (error == ENOENT) return {};
  return with_errno("cannot delete the conntrack entry of " + tuple.to_string(), error);
}

}  // namespace portcullis::conntrack
