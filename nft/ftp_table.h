// The nftables table `inet portcullis`, which portcullis owns whole: the kernel's FTP conntrack helper assigned
// to the control connections of the policy's `ftp` rules (so their data connections become expectations the
// data plane can allow), and in gateway mode the NAT of the sandboxes' traffic leaving the outside interface.
//
// One spec in, one netlink batch out. The batch creates the table (so that deleting it cannot fail), deletes
// it, and creates it again with everything in it: the kernel applies it as one transaction, so a reload
// replaces the table atomically and a batch the kernel refuses leaves the previous table as it was. What the
// batch holds, in `nft list ruleset` terms:
//
//   table inet portcullis {
//     ct helper ftp { type "ftp" protocol tcp; l3proto inet; }
//     set ftp0_v4 { type ipv4_addr; flags interval; elements = { the rule's IPv4 destinations } }
//     set ftp0_v6 { ... }                                     (a set per family that has destinations)
//     set ftp0_dns_v4 { type ipv4_addr; flags timeout; }      (by_name rules: add_bound_address fills them)
//     set ftp0_dns_v6 { ... }
//     chain ftp_helpers {
//       type filter hook prerouting (gateway) | output (host) priority filter; policy accept;
//       ip saddr { sources } ip daddr @ftp0_v4 tcp dport { ports } ct helper set "ftp" counter comment "..."
//       ...                                                   (a rule per set)
//     }
//     chain gateway_masquerade {                              (masquerade_iface only)
//       type nat hook postrouting priority srcnat; policy accept;
//       oifname "IF" ip saddr { sources } counter masquerade comment "..."
//     }
//   }
//
// The chain is not named `masquerade`: that is an nft keyword, and a ruleset listing with it would not load.
// Messages are built the way `nft` builds them for the same text (checked against `nft --debug=netlink`), so
// `nft list ruleset` shows the table as if nft had written it, comments included. One difference: sources stay
// an anonymous set of the prefixes named, where nft turns a single one into a comparison and joins adjacent ones
// into a range (`10.88.1.0-10.88.2.255`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/ip_address.h"

struct mnl_socket;

namespace portcullis::nft {

inline constexpr const char* kTableName = "portcullis";
inline constexpr uint16_t kFtpControlPort = 21;

// A port range, both ends included; lo > hi is read as hi..lo.
struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 0;
};

// One `ftp` rule of the policy.
struct FtpRule {
  std::string name;                        // the policy rule's name, shown in the nft rules' comments
  std::vector<PortRange> ports;            // the control ports; empty = 21
  std::vector<policy::Cidr> destinations;  // addresses and CIDRs, both families mixed
  bool by_name = false;                    // it names servers by DNS name: see FtpTable::add_bound_address
  // Its group's sources; empty = every source. A family that none of them is of gets no sets and no rules.
  std::vector<policy::Cidr> sources;
};

struct TableSpec {
  enum class Hook : uint8_t {
    prerouting,  // gateway mode: the sandboxes' forwarded traffic
    output,      // host mode: locally generated traffic
  };
  Hook hook = Hook::prerouting;
  std::vector<FtpRule> ftp_rules;
  // Gateway mode: masquerade the traffic of masquerade_sources (empty = every source) leaving through this
  // interface. A name of IFNAMSIZ bytes or more cannot be an interface: the kernel refuses the batch.
  std::optional<std::string> masquerade_iface;
  std::vector<policy::Cidr> masquerade_sources;
};

// The named sets of rule `rule_index` (its position in TableSpec::ftp_rules).
std::string address_set_name(size_t rule_index, policy::IpFamily family);  // ftp<i>_v4, ftp<i>_v6
std::string dns_set_name(size_t rule_index, policy::IpFamily family);      // ftp<i>_dns_v4, ftp<i>_dns_v6

// The batch apply() sends for `spec`, one entry per netlink message: its type and the object as libnftnl prints
// it (nftnl_*_snprintf, NFTNL_OUTPUT_DEFAULT), "NEWSET ftp0_v4 portcullis 4". Like `nft --debug=netlink`, a rule
// goes on with its expressions and a set's elements with its elements, one a line. Batch begin and end are
// left out.
std::vector<std::string> render_batch(const TableSpec& spec);

// The table in the kernel, through a netfilter netlink socket of its own (needs CAP_NET_ADMIN in the network
// namespace). Each call is one request and its answer; errors come back as text, empty meaning done.
// Not thread-safe.
class FtpTable {
 public:
  // Throws std::runtime_error when the socket cannot be opened.
  FtpTable();
  ~FtpTable();
  FtpTable(const FtpTable&) = delete;
  FtpTable& operator=(const FtpTable&) = delete;

  // Replaces the table with what `spec` says, atomically. On error the previous table stays, and the text
  // says what the kernel refused: its error and the object (set, chain, rule) it refused. The DNS sets start
  // empty: after a reload the caller adds the bindings that still hold.
  std::string apply(const TableSpec& spec);

  // Puts `address` (an IPv4-mapped IPv6 address counts as IPv4) into the DNS set of its family of rule
  // `rule_index` of the spec last applied, which must be a by_name rule, for `ttl_seconds`. An address already
  // there gets the new timeout.
  std::string add_bound_address(size_t rule_index, const policy::IpAddress& address, uint32_t ttl_seconds);

  // Deletes the table; a table that is not there is no error.
  std::string remove();

  // Whether the table is there. Throws std::runtime_error when the kernel cannot be asked.
  bool exists();

 private:
  mnl_socket* socket_ = nullptr;
  uint32_t port_id_ = 0;
  uint32_t next_seq_ = 0;
  std::vector<bool> by_name_rules_;  // of the spec last applied
};

}  // namespace portcullis::nft
