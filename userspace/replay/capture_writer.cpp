#include "replay/capture_writer.h"

#include <pcap/pcap.h>

#include <algorithm>
#include <stdexcept>

namespace portcullis::replay {
namespace {

constexpr int kSnapLength = 262144;

}  // namespace

CaptureWriter::CaptureWriter(const std::string& path, int link_type, Open open) : link_type_(link_type) {
  dead_ = pcap_open_dead_with_tstamp_precision(link_type, kSnapLength, PCAP_TSTAMP_PRECISION_NANO);
  if (dead_ == nullptr)
    throw std::runtime_error(path + ": libpcap cannot write link type " + std::to_string(link_type));
  dumper_ = open == Open::append ? pcap_dump_open_append(dead_, path.c_str()) : pcap_dump_open(dead_, path.c_str());
  if (dumper_ == nullptr) {
    const std::string error = pcap_geterr(dead_);
    pcap_close(dead_);
    throw std::runtime_error(path + ": " + error);
  }
}

CaptureWriter::~CaptureWriter() {
  pcap_dump_close(dumper_);
  pcap_close(dead_);
}

void CaptureWriter::write(const pcap_pkthdr& header, const uint8_t* data) {
  pcap_dump(reinterpret_cast<u_char*>(dumper_), &header, data);
}

void CaptureWriter::write(std::span<const uint8_t> frame, uint64_t wall_ns) {
  pcap_pkthdr header{};
  header.ts.tv_sec = static_cast<time_t>(wall_ns / 1'000'000'000ULL);
  header.ts.tv_usec = static_cast<suseconds_t>(wall_ns % 1'000'000'000ULL);  // nanoseconds: the file says so
  header.caplen = static_cast<bpf_u_int32>(std::min<size_t>(frame.size(), kSnapLength));
  header.len = static_cast<bpf_u_int32>(frame.size());
  write(header, frame.data());
}

void CaptureWriter::flush() {
  (void)pcap_dump_flush(dumper_);
}

}  // namespace portcullis::replay
