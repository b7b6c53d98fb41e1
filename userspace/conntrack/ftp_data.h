// FTP data connections, as the kernel's FTP conntrack helper announces them. The helper is assigned to the
// control connections of the policy's `ftp` rules by the nftables table (nft/ftp_table.h); each expectation it
// makes for an allowed control connection is mirrored into the data plane's pc_expects, so exactly that data
// connection passes, once, as the control connection's rule. pc_ftp_peers holds the client and server of every
// allowed control connection: a connection between them that no mirrored expectation covers yet is held from its
// SYN, and resolve() asks the kernel.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conntrack/expectations.h"
#include "conntrack/flow_table.h"
#include "nft/ftp_table.h"
#include "policy/compiled_policy.h"
#include "portcullis/expect.h"
#include "punt/punt_handler.h"

namespace portcullis::conntrack {

// The table a policy needs: the helper on each `ftp` allow rule's control ports and destinations (names through
// the DNS sets), for its group's sources, at prerouting in gateway mode, output in host mode; and with
// `masquerade` (gateway mode) NAT for every group's sources leaving through that interface. `rule_of_entry`
// gets, per entry of the spec's ftp_rules, the policy rule's index.
nft::TableSpec ftp_table_spec(const policy::CompiledPolicy& policy, policy::Mode mode,
                              const std::optional<std::string>& masquerade = std::nullopt,
                              std::vector<size_t>* rule_of_entry = nullptr);

// The connection `expectation` announces as the data plane sees it (behind NAT: to the client, not the gateway).
ConntrackTuple seen_by_data_plane(const Expectation& expectation);

// Whether `rule_id` is an allow rule of proto ftp in `policy`.
bool is_ftp_allow_rule(const policy::CompiledPolicy& policy, uint32_t rule_id);

// The data plane's key for the connection `expected` announces, and the flow key of a tuple.
pc_expect_key expect_key_of(const ConntrackTuple& expected);
pc_flow_key flow_key_of(const ConntrackTuple& tuple);

class FtpDataConnections {
 public:
  struct Stats {
    uint64_t mirrored = 0;    // expectations copied into the data plane
    uint64_t refused = 0;     // expectations of control connections no ftp rule allows now
    uint64_t resolved = 0;    // held connections allowed from the kernel's expectations
    uint64_t unresolved = 0;  // held connections no expectation covers: denied
    uint64_t lost_events = 0;
  };

  // Throws std::runtime_error when nftables or ctnetlink cannot be opened.
  FtpDataConnections(int expects_fd, int peers_fd, int flows_fd, policy::Mode mode,
                     std::optional<std::string> masquerade = std::nullopt);

  // The policy in force: the table is replaced (atomically; on error the old one stays and the error is returned),
  // and DNS-bound addresses come back as they are bound again.
  std::string set_policy(std::shared_ptr<const policy::CompiledPolicy> policy, uint32_t generation);

  // The expectation events' descriptor, for the daemon's loop; -1 until a policy has ftp rules.
  int fd() const { return listener_ ? listener_->fd() : -1; }
  void on_readable();

  // DNS bound `names` to `address` for `group` for `seconds` (DnsBindings::Observer): the ftp rules naming one of
  // them take the address for as long.
  void on_bound(std::optional<size_t> group, const std::vector<std::string>& names, const policy::IpAddress& address,
                uint32_t seconds);
  // A flow was decided: an allowed control connection of an ftp rule makes its client and server FTP peers.
  void on_verdict(const pc_verdict_event& event);
  // The peers of the control connections `flows` holds now; the others are forgotten.
  void refresh_peers(const FlowTable& flows);
  // Whether the connection held from its SYN (`facts`) is one a control connection announced: the kernel is
  // asked when no mirrored expectation covers it. (Expectations leave the source port free.)
  std::optional<punt::PuntHandler::ExpectedConnection> resolve(const punt::PendingFlowFacts& facts);
  // A control connection was cut: its expectations go, in the kernel and here.
  std::string forget_control(const pc_verdict_event& control);

  // Whether `rule_id` is an allow rule of proto ftp in the policy in force.
  bool is_ftp_rule(uint32_t rule_id) const;

  // Takes the table away (SIGTERM).
  std::string remove();
  const Stats& stats() const { return stats_; }
  std::vector<std::string> take_errors();

 private:
  void on_expectation(ExpectationListener::Event event, const Expectation& expectation);
  bool table_exists();
  // Drops the copies of expectations the kernel destroyed more than a few seconds ago (at each refresh_peers).
  void forget_destroyed(uint64_t now_ns);
  // The allowed ftp control connection `master` names, as the data plane holds it; nullopt when there is none.
  std::optional<pc_flow> allowed_control(const ConntrackTuple& master) const;
  void error(std::string message);

  int expects_fd_;
  int peers_fd_;
  int flows_fd_;
  policy::Mode mode_;
  std::optional<std::string> masquerade_;
  std::shared_ptr<const policy::CompiledPolicy> policy_;
  uint32_t generation_ = 0;
  std::unique_ptr<nft::FtpTable> table_;
  std::vector<size_t> rule_of_entry_;  // per ftp_rules entry of the applied spec: the policy rule
  std::unique_ptr<ExpectationListener> listener_;
  // The mirrored expectations by their data plane key, with their control connection. One the kernel has
  // destroyed stays a few seconds, here and in the data plane: in host mode (output) and behind NAT
  // (prerouting) the kernel's conntrack sees a data connection's SYN, consuming the expectation, before the
  // data plane does.
  struct Mirrored {
    ConntrackTuple master;
    uint64_t destroyed_ns = 0;  // 0 while the kernel still expects it
  };
  std::map<std::vector<uint8_t>, Mirrored> mirrored_;
  std::map<std::vector<uint8_t>, uint32_t> peers_;  // pc_ftp_peer_key bytes written, with the count written
  Stats stats_;
  std::vector<std::string> errors_;
};

}  // namespace portcullis::conntrack
