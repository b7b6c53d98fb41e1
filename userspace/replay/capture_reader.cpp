#include "replay/capture_reader.h"

#include <pcap/pcap.h>

#include <stdexcept>

namespace portcullis::replay {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr size_t kEthernetHeader = 14;
constexpr size_t kSllHeader = 16;
constexpr size_t kSll2Header = 20;
constexpr size_t kNullHeader = 4;

bool readable_link_type(int link_type) {
  switch (link_type) {
    case DLT_EN10MB:
    case DLT_LINUX_SLL:
    case DLT_LINUX_SLL2:
    case DLT_NULL:
    case DLT_LOOP:
    case DLT_PPP:
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6:
      return true;
    default:
      return false;
  }
}

uint16_t load16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// The EtherType an IP packet's version nibble says, or 0.
uint16_t ethertype_of_ip(std::span<const uint8_t> packet) {
  if (packet.empty()) return 0;
  const uint8_t version = packet[0] >> 4;
  return version == 4 ? kEtherTypeIpv4 : version == 6 ? kEtherTypeIpv6 : 0;
}

}  // namespace

std::unique_ptr<CaptureReader> CaptureReader::open(const std::string& path) {
  char error[PCAP_ERRBUF_SIZE] = {};
  pcap* handle = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, error);
  if (handle == nullptr) throw std::runtime_error(path + ": " + error);
  return std::unique_ptr<CaptureReader>(new CaptureReader(handle, path));
}

std::unique_ptr<CaptureReader> CaptureReader::open(std::FILE* file, const std::string& name) {
  char error[PCAP_ERRBUF_SIZE] = {};
  pcap* handle = pcap_fopen_offline_with_tstamp_precision(file, PCAP_TSTAMP_PRECISION_NANO, error);
  if (handle == nullptr) {
    std::fclose(file);
    throw std::runtime_error(name + ": " + error);
  }
  return std::unique_ptr<CaptureReader>(new CaptureReader(handle, name));
}

CaptureReader::CaptureReader(pcap* handle, std::string name) : handle_(handle), name_(std::move(name)) {
  link_type_ = pcap_datalink(handle_);
  if (!readable_link_type(link_type_)) {
    const char* link_name = pcap_datalink_val_to_name(link_type_);
    pcap_close(handle_);
    throw std::runtime_error(name_ + ": link type " + (link_name != nullptr ? link_name : std::to_string(link_type_)) +
                             " is not one portcullis reads (Ethernet, Linux cooked v1/v2, raw IP, BSD loopback, PPP)");
  }
}

CaptureReader::~CaptureReader() {
  pcap_close(handle_);
}

std::optional<CapturedPacket> CaptureReader::next() {
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  const int status = pcap_next_ex(handle_, &header, &data);
  if (status == PCAP_ERROR_BREAK) return std::nullopt;
  if (status != 1) {
    error_ = pcap_geterr(handle_);
    return std::nullopt;
  }
  CapturedPacket packet;
  packet.timestamp_ns = static_cast<uint64_t>(header->ts.tv_sec) * 1'000'000'000ULL +
                        static_cast<uint64_t>(header->ts.tv_usec);  // nanoseconds at this precision
  packet.wire_length = header->len;
  packet.truncated = header->caplen < header->len;
  const std::span<const uint8_t> bytes(data, header->caplen);

  // What follows the link header, and its EtherType.
  std::span<const uint8_t> payload;
  uint16_t ethertype = 0;
  switch (link_type_) {
    case DLT_EN10MB:
      packet.frame = bytes;  // the parser reads Ethernet and its VLAN tags itself
      return packet;
    case DLT_LINUX_SLL:
      if (bytes.size() < kSllHeader) break;
      ethertype = load16(bytes.data() + 14);
      payload = bytes.subspan(kSllHeader);
      break;
    case DLT_LINUX_SLL2:
      if (bytes.size() < kSll2Header) break;
      ethertype = load16(bytes.data());
      payload = bytes.subspan(kSll2Header);
      break;
    case DLT_NULL:
    case DLT_LOOP:
      // The family is in the capturing host's byte order, with values that differ between systems; the IP
      // version that follows says the same portably.
      if (bytes.size() < kNullHeader) break;
      payload = bytes.subspan(kNullHeader);
      ethertype = ethertype_of_ip(payload);
      break;
    case DLT_PPP: {
      // Address and control (0xff 0x03) are left out under address/control field compression.
      size_t at = bytes.size() >= 2 && bytes[0] == 0xff && bytes[1] == 0x03 ? 2 : 0;
      if (bytes.size() < at + 2) break;
      const uint16_t protocol = load16(bytes.data() + at);
      at += 2;
      payload = bytes.subspan(at);
      ethertype = protocol == 0x0021 ? kEtherTypeIpv4 : protocol == 0x0057 ? kEtherTypeIpv6 : 0;
      break;
    }
    default:  // raw IP
      payload = bytes;
      ethertype = ethertype_of_ip(payload);
      break;
  }
  packet.not_ip = ethertype != kEtherTypeIpv4 && ethertype != kEtherTypeIpv6;
  frame_.assign(kEthernetHeader, 0);
  frame_[12] = static_cast<uint8_t>(ethertype >> 8);
  frame_[13] = static_cast<uint8_t>(ethertype);
  frame_.insert(frame_.end(), payload.begin(), payload.end());
  packet.frame = frame_;
  return packet;
}

}  // namespace portcullis::replay
