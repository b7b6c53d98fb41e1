// The kernel's conntrack expectations, read and deleted through libnetfilter_conntrack (ctnetlink). The FTP
// helper (nf_conntrack_ftp), assigned to allowed FTP control connections, expects one data connection for each
// PASV/EPSV reply or PORT/EPRT command it sees; the daemon mirrors those expectations into the data plane so the
// data connections pass, and nothing else does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "policy/ip_address.h"

struct nfct_handle;

namespace portcullis::conntrack {

// Addresses and ports as the connection's originator sent them (the original direction).
struct ConntrackTuple {
  policy::IpAddress src, dst;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 6;

  // "10.0.0.1:40000 -> 10.0.0.2:21", "[fd00::1]:40000 -> [fd00::2]:21"
  std::string to_string() const;

  friend bool operator==(const ConntrackTuple&, const ConntrackTuple&) = default;
};

struct Expectation {
  ConntrackTuple master;        // the control connection (its original direction)
  ConntrackTuple expected;      // the data connection to come
  bool any_source_port = true;  // the mask leaves the source port free (FTP: always)
  uint32_t timeout_s = 0;       // seconds left when the kernel reported it
  std::string helper;           // "ftp"
  uint32_t id = 0;              // the kernel's CTA_EXPECT_ID, for logs
};

// Hears the kernel create and destroy expectations (ctnetlink multicast) in the network namespace it was made in.
// The handler's view follows the kernel's: it first hears of every expectation that exists when the listener
// starts (as created, from the constructor), then of each change, each expectation created once and destroyed
// once. An expectation ends (destroyed) when its data connection arrives, when it times out, when its control
// connection ends, or when a later announcement on the same control connection replaces it.
class ExpectationListener {
 public:
  enum class Event : uint8_t { created, destroyed };
  using Handler = std::function<void(Event, const Expectation&)>;

  // Throws std::runtime_error when ctnetlink cannot be opened (no privileges, no conntrack).
  explicit ExpectationListener(Handler handler);
  ~ExpectationListener();
  ExpectationListener(const ExpectationListener&) = delete;
  ExpectationListener& operator=(const ExpectationListener&) = delete;

  // Non-blocking; readable when events wait. For the daemon's epoll loop.
  int fd() const;
  // Hands every waiting event to the handler; never blocks. When the kernel dropped events for want of socket
  // buffer (ENOBUFS), the loss is counted and the handler's view is set right from a dump. Throws
  // std::runtime_error on any other socket error.
  void on_readable();
  // Every expectation now. Throws std::runtime_error when the kernel refuses the dump.
  std::vector<Expectation> dump();
  // Times events were lost (ENOBUFS).
  uint64_t lost() const { return lost_; }

 private:
  // Kernel IDs can repeat once an expectation is freed; with both tuples a key names one expectation.
  struct Key {
    uint32_t id = 0;
    ConntrackTuple master, expected;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  static Key key_of(const Expectation& expectation);

  struct HandleCloser {
    void operator()(nfct_handle* handle) const;
  };

  void deliver(Event event, const Expectation& expectation);
  void discard_waiting();
  void resynchronize();

  Handler handler_;
  std::unique_ptr<nfct_handle, HandleCloser> events_;
  std::unique_ptr<nfct_handle, HandleCloser> queries_;
  // Filled by libnetfilter_conntrack's callback, handed on once it returns: a throwing handler must not unwind
  // through C.
  std::vector<std::pair<Event, Expectation>> arrived_;
  // What the handler was told exists.
  std::unordered_map<Key, Expectation, KeyHash> live_;
  uint64_t lost_ = 0;
};

// Deletes every expectation whose master is `master` (dump, filter, delete each). Returns what went wrong, or
// empty; none to delete is no error. Works in the calling thread's network namespace.
std::string delete_expectations_of(const ConntrackTuple& master);

// Deletes the kernel conntrack entry of `tuple` (original direction), e.g. an FTP data connection's. Returns what
// went wrong, or empty; an entry the kernel does not track is no error.
std::string delete_conntrack_entry(const ConntrackTuple& tuple);

}  // namespace portcullis::conntrack
