// Which names DNS bound to which addresses, per group, for as long as the answers' TTLs (clamped to the policy's
// min_ttl and max_ttl) say. Learned from the answers the data plane copies to the daemon (or that a capture
// holds, in replay); asked when a flow matched by the name it shows must also go to an address of that name
// (sni_ip_binding: dns). What one group resolved binds nothing for another. Bounded: past max_bindings the
// least recently confirmed binding goes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "dataplane/flow_key_hash.h"
#include "parsers/tcp_stream_prefix.h"
#include "policy/compiled_policy.h"
#include "portcullis/packet.h"
#include "punt/flow_identity.h"

namespace portcullis::punt {

struct DnsBindingLimits {
  uint32_t min_ttl = 30;    // seconds
  uint32_t max_ttl = 3600;  // seconds
  size_t max_bindings = 1 << 18;
};

class DnsBindings {
 public:
  explicit DnsBindings(DnsBindingLimits limits = {}) : limits_(limits) {}
  void set_limits(DnsBindingLimits limits) { limits_ = limits; }
  // Told of every binding made, with its life (the answer's TTL clamped to min_ttl..max_ttl) and its end: what
  // else must follow DNS (the FTP helper's address sets, the data plane's bound names) follows it from here.
  using Observer = std::function<void(std::optional<size_t> group, const std::vector<std::string>& names,
                                      const policy::IpAddress& address, uint32_t seconds, uint64_t expires_ns)>;
  void observe(Observer observer) { observers_.push_back(std::move(observer)); }

  // Binds each of `names` (a CNAME chain: the asked name first) to `address` for `ttl` seconds, clamped.
  void bind(std::optional<size_t> group, const std::vector<std::string>& names, const policy::IpAddress& address,
            uint32_t ttl, uint64_t now_ns);
  bool bound(std::optional<size_t> group, const std::string& name, const policy::IpAddress& address,
             uint64_t now_ns) const;
  // The names bound to `address` for `group` now, in no particular order.
  std::vector<std::string> names_of(std::optional<size_t> group, const policy::IpAddress& address,
                                    uint64_t now_ns) const;
  // Every binding held, live or not yet forgotten, in no particular order.
  using Visitor = std::function<void(std::optional<size_t> group, const std::string& name,
                                     const policy::IpAddress& address, uint64_t expires_ns)>;
  void for_each(const Visitor& visit) const;
  // Forgets the bindings whose time is up.
  void expire(uint64_t now_ns);
  size_t size() const { return bindings_.size(); }

 private:
  // A group's address: the bindings of one address are found together, and an address has few names.
  struct Owner {
    uint32_t scope = 0;  // group + 1, 0 for none
    policy::IpAddress address;
    friend bool operator==(const Owner&, const Owner&) = default;
  };
  struct OwnerHash {
    size_t operator()(const Owner& owner) const;
  };
  struct Binding {
    Owner owner;
    std::string name;
    uint64_t expires_ns = 0;
  };
  using Bindings = std::list<Binding>;  // least recently confirmed first
  static Owner owner_of(std::optional<size_t> group, const policy::IpAddress& address);
  // The binding of `name` among `owner`'s, or null.
  const Bindings::iterator* find(const Owner& owner, const std::string& name) const;
  void erase(Bindings::iterator binding);

  DnsBindingLimits limits_;
  std::vector<Observer> observers_;
  Bindings bindings_;
  std::unordered_map<Owner, std::vector<Bindings::iterator>, OwnerHash> by_owner_;
};

// What a DNS answer in `frame` (an Ethernet frame from port 53, UDP) binds, for the group of the client it goes
// to. Returns the number of bindings made, or nullopt when the frame holds no DNS answer that parses.
std::optional<size_t> learn_from_answer(DnsBindings& bindings, const policy::CompiledPolicy& policy,
                                        std::span<const uint8_t> frame, uint64_t now_ns);

// The same for one DNS message (no length prefix) going to `client`.
std::optional<size_t> learn_from_message(DnsBindings& bindings, const policy::CompiledPolicy& policy,
                                         std::span<const uint8_t> message, const policy::IpAddress& client,
                                         uint64_t now_ns);

// DNS answers over TCP, read message by message (each behind its 2-byte length) from the first 64 KiB of each
// connection's server side, put in order as segments come: what they bind is learned as each message completes.
class DnsTcpAnswers {
 public:
  struct Learned {
    size_t answers = 0;       // whole messages read that bound something or parsed
    size_t malformed = 0;     // whole messages that did not parse
    bool unreadable = false;  // the frame held no TCP segment of a flow
  };
  // A segment `pkt` (in `frame`) from a DNS server to a client.
  Learned add(DnsBindings& bindings, const policy::CompiledPolicy& policy, const pc_packet& pkt,
              std::span<const uint8_t> frame, uint64_t now_ns);
  // Forgets the connections idle since `idle_since_ns`.
  void expire(uint64_t idle_since_ns);

 private:
  struct Stream {
    std::optional<parsers::TcpStreamPrefix> bytes;
    size_t consumed = 0;  // stream bytes of the messages read so far
    uint64_t last_ns = 0;
  };
  std::unordered_map<pc_flow_key, Stream, dataplane::FlowKeyHash, dataplane::FlowKeyEqual> streams_;
};

// The verdict for a pending flow that showed `identity`, with what `bindings` know now: whether its address is
// bound to the name it shows, or, when it shows none, the names its address is bound to (decide_pending_flow,
// decide_by_bound_names). The one decision the daemon and replay both take.
PendingVerdict decide_with_bindings(const policy::CompiledPolicy& policy, policy::Mode mode,
                                    const PendingFlowFacts& flow, const FlowIdentity& identity,
                                    const DnsBindings& bindings, uint64_t now_ns);

// The verdict for a TCP flow held from its SYN because its address is bound to a name a deny rule names
// (PC_DROP_BOUND_NAME), by the names bound to its address; nullopt when the SYN is not enough: the flow is allowed
// as it stands, but a deny of ssh to one of those names would refuse it once its first bytes show SSH. It is then
// read as any flow pending its first bytes.
std::optional<PendingVerdict> decide_at_syn(const policy::CompiledPolicy& policy, policy::Mode mode,
                                            const PendingFlowFacts& flow, const DnsBindings& bindings, uint64_t now_ns);

}  // namespace portcullis::punt
