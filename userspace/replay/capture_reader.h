// Reads a capture (pcap or pcapng, through libpcap) packet by packet, each as the Ethernet frame the data
// plane's parser reads: Ethernet frames (802.1Q tags included) as they are; Linux cooked v1 and v2, raw IP, BSD
// loopback/null and PPP frames behind a synthesized Ethernet header carrying their EtherType.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

struct pcap;

namespace portcullis::replay {

struct CapturedPacket {
  uint64_t timestamp_ns = 0;
  std::span<const uint8_t> frame;  // valid until the next call to next()
  uint32_t wire_length = 0;        // as it was on the wire
  bool truncated = false;          // the capture kept fewer bytes (its snap length)
  bool not_ip = false;             // a link-layer frame that carries no IP (ARP, LLDP, ...)
};

class CaptureReader {
 public:
  // Throws std::runtime_error naming the file and what is wrong (unreadable, not a capture, a link type
  // portcullis does not read).
  static std::unique_ptr<CaptureReader> open(const std::string& path);
  // The same, over a capture file already open (`file` is closed by the reader); for fuzzing from memory.
  static std::unique_ptr<CaptureReader> open(std::FILE* file, const std::string& name);
  ~CaptureReader();
  CaptureReader(const CaptureReader&) = delete;
  CaptureReader& operator=(const CaptureReader&) = delete;

  // The next packet, or nullopt at the end. A damaged record ends the capture: error() says why.
  std::optional<CapturedPacket> next();
  const std::string& error() const { return error_; }
  int link_type() const { return link_type_; }

 private:
  CaptureReader(pcap* handle, std::string name);

  pcap* handle_;
  std::string name_;
  int link_type_ = 0;
  std::vector<uint8_t> frame_;  // the current packet, normalized to Ethernet
  std::string error_;
};

}  // namespace portcullis::replay
