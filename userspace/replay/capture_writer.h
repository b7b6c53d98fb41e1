// A pcap file written with libpcap, nanosecond timestamps: what `replay --write-allowed/--write-denied` split a
// capture into, and what `run --pcap-denied` keeps of each denied flow.
#pragma once

#include <cstdint>
#include <span>
#include <string>

struct pcap;
struct pcap_dumper;
struct pcap_pkthdr;

namespace portcullis::replay {

class CaptureWriter {
 public:
  static constexpr int kEthernet = 1;  // DLT_EN10MB

  enum class Open : uint8_t {
    truncate,
    append,  // a capture there already goes on (its link type must be `link_type`): a restart loses nothing
  };
  // Creates `path`, or opens it as `open` says. Throws std::runtime_error when it cannot.
  CaptureWriter(const std::string& path, int link_type, Open open = Open::truncate);
  ~CaptureWriter();
  CaptureWriter(const CaptureWriter&) = delete;
  CaptureWriter& operator=(const CaptureWriter&) = delete;

  int link_type() const { return link_type_; }
  void write(const pcap_pkthdr& header, const uint8_t* data);
  // A whole frame, stamped with `wall_ns` (nanoseconds since the epoch).
  void write(std::span<const uint8_t> frame, uint64_t wall_ns);
  void flush();

 private:
  int link_type_;
  pcap* dead_ = nullptr;
  pcap_dumper* dumper_ = nullptr;
};

}  // namespace portcullis::replay
