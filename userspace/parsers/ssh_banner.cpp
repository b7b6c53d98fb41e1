#include "parsers/ssh_banner.h"

#include <algorithm>

namespace portcullis::parsers {
namespace {

using Reason = SshBannerReason;

constexpr std::string_view kPrefix = "SSH-";
constexpr std::string_view kProtoVersion2 = "2.0";
// RFC 4253 5.1: "1.99" announces 2.0 with SSH-1 compatibility, which peers must read as 2.0.
constexpr std::string_view kProtoVersionCompatible = "1.99";

SshBannerResult make_result(ParseStatus status, Reason reason = Reason::none) {
  SshBannerResult result;
  result.status = status;
  result.reason = reason;
  return result;
}

constexpr bool is_printable(char c) {
  return c >= 0x20 && c <= 0x7e;
}

constexpr bool is_proto_version(std::string_view version) {
  return version == kProtoVersion2 || version == kProtoVersionCompatible;
}

constexpr bool may_become_proto_version(std::string_view start) {
  return kProtoVersion2.starts_with(start) || kProtoVersionCompatible.starts_with(start);
}

// `line` is the banner without its line end, or only its start (`complete` false: no CR or LF
// yet). Bytes are judged in order and the first bad one gives the reason, so a stream that cannot
// be SSH is refused at its first such byte and a verdict never changes as more bytes arrive.
Reason check_line(std::string_view line, bool complete, SshBannerResult& out) {
  const std::string_view prefix = line.substr(0, kPrefix.size());
  if (!kPrefix.starts_with(prefix) || (complete && prefix.size() < kPrefix.size())) {
    return Reason::not_ssh;
  }
  if (line.size() <= kPrefix.size()) {
    return complete ? Reason::proto_version : Reason::none;
  }
  const std::string_view rest = line.substr(kPrefix.size());
  const size_t proto_end = rest.find('-');
  const std::string_view proto = rest.substr(0, proto_end);
  if (proto_end == std::string_view::npos) {
    if (!may_become_proto_version(proto)) {
      return Reason::proto_version;
    }
    if (!complete) {
      return Reason::none;
    }
    return is_proto_version(proto) ? Reason::software_version : Reason::proto_version;
  }
  if (!is_proto_version(proto)) {
    return Reason::proto_version;
  }
  const std::string_view software_and_comments = rest.substr(proto_end + 1);
  const size_t software_end = software_and_comments.find(' ');
  const std::string_view software = software_and_comments.substr(0, software_end);
  // RFC 4253 forbids '-' here, but JSch (Jenkins, many Java tools) sends "SSH-2.0-JSCH-0.1.54" and OpenSSH's
  // server accepts it: the firewall recognises SSH as the servers do, and the banner carries no name.
  if (!std::ranges::all_of(software, is_printable)) {
    return Reason::not_printable;
  }
  if (software_end == 0 || (complete && software.empty())) {
    return Reason::software_version;
  }
  const std::string_view comments =
      software_end == std::string_view::npos ? std::string_view{} : software_and_comments.substr(software_end + 1);
  if (!std::ranges::all_of(comments, is_printable)) {
    return Reason::not_printable;
  }
  if (complete) {
    out.proto_version = proto;
    out.software_version = software;
    out.comments = comments;
  }
  return Reason::none;
}

}  // namespace

std::string_view to_string(SshBannerReason reason) noexcept {
  switch (reason) {
    case Reason::none:
      return "none";
    case Reason::not_ssh:
      return "not-ssh";
    case Reason::proto_version:
      return "proto-version";
    case Reason::software_version:
      return "software-version";
    case Reason::not_printable:
      return "not-printable";
    case Reason::too_long:
      return "too-long";
  }
  return "unknown";
}

SshBannerResult parse_ssh_banner(std::span<const uint8_t> stream) {
  const auto window = stream.first(std::min(stream.size(), kMaxSshBannerLength));
  const std::string_view bytes(reinterpret_cast<const char*>(window.data()), window.size());
  const size_t stop = bytes.find_first_of("\r\n");
  const std::string_view line = bytes.substr(0, stop);
  size_t banner_length = 0;
  if (stop != std::string_view::npos && bytes[stop] == '\n') {
    banner_length = stop + 1;
  } else if (stop != std::string_view::npos && stop + 1 < bytes.size() && bytes[stop + 1] == '\n') {
    banner_length = stop + 2;
  }
  SshBannerResult result = make_result(ParseStatus::found);
  if (const Reason reason = check_line(line, stop != std::string_view::npos, result); reason != Reason::none) {
    return make_result(ParseStatus::malformed, reason);
  }
  if (banner_length != 0) {
    result.banner_length = static_cast<uint32_t>(banner_length);
    return result;
  }
  // A CR that is neither the window's last byte nor followed by LF is a control character in the line.
  if (stop != std::string_view::npos && stop + 1 < bytes.size()) {
    return make_result(ParseStatus::malformed, Reason::not_printable);
  }
  return window.size() == kMaxSshBannerLength ? make_result(ParseStatus::malformed, Reason::too_long)
                                              : make_result(ParseStatus::need_more);
}

}  // namespace portcullis::parsers
