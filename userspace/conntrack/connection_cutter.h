// Ends an open flow that a reload no longer allows, once the data plane holds it as denied (revoked):
// - the kernel's conntrack entry goes (libnetfilter_conntrack), and with it any NAT mapping and FTP
//   expectation it carried;
// - a TCP client gets an ACK probe from the server's address with a sequence number outside its window. It
//   answers with an ACK at its exact sequence numbers, which meets the data plane's deny: the client gets a
//   reset and a copy resets the server. So an idle connection, or one whose server alone was sending, is cut
//   at once instead of at its next packet. UDP and ICMP flows are cut at their next packet (ICMP
//   administratively prohibited).
#pragma once

#include <cstdint>
#include <string>

#include "conntrack/flow_table.h"

struct nfct_handle;

namespace portcullis::conntrack {

class ConnectionCutter {
 public:
  ConnectionCutter() = default;
  ~ConnectionCutter();
  ConnectionCutter(const ConnectionCutter&) = delete;
  ConnectionCutter& operator=(const ConnectionCutter&) = delete;

  // Returns what went wrong, or empty. A flow the kernel does not track is no error.
  std::string cut(const TrackedFlow& flow);

 private:
  std::string delete_conntrack_entry(const pc_verdict_event& event);
  std::string send_probe(const pc_verdict_event& event);

  nfct_handle* conntrack_ = nullptr;
  int raw_v4_ = -1;
  int raw_v6_ = -1;
  uint32_t probe_seq_ = 0x9e3779b9;
};

}  // namespace portcullis::conntrack
