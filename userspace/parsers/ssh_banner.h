// SSH identification string parser: tells whether a TCP stream starts the way an SSH client
// starts it (RFC 4253 4.2), from the first bytes of the client-to-server direction.
//
//   SSH-protoversion-softwareversion [SP comments] CR LF
//
// The banner names no host, so there is no name for the firewall and a server to disagree on;
// what matters is that nothing but an SSH client's first line passes. Hence the strict shape: the
// line must be the first thing in the stream (only servers may send other lines before it),
// protocol 2.0 (or 1.99, "2.0 and 1.x"; SSH-1 alone is refused), at most 255 bytes, printable
// US-ASCII. A bare LF is accepted as the line end, as OpenSSH accepts it from peers: refusing it
// would block clients the servers serve, and accepting it lets nothing through that CRLF would not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "parsers/parse_result.h"

namespace portcullis::parsers {

enum class SshBannerReason : uint8_t {
  none,
  not_ssh,           // the stream does not start with "SSH-"
  proto_version,     // protoversion is neither "2.0" nor "1.99"
  software_version,  // softwareversion is empty
  not_printable,     // a byte outside printable US-ASCII (control characters, a CR not before LF, 8-bit)
  too_long,          // no line end within kMaxSshBannerLength bytes
};

[[nodiscard]] std::string_view to_string(SshBannerReason reason) noexcept;

// RFC 4253 4.2: the maximum length of the identification string, CR LF included.
inline constexpr size_t kMaxSshBannerLength = 255;

struct SshBannerResult {
  ParseStatus status = ParseStatus::need_more;
  SshBannerReason reason = SshBannerReason::none;
  // The fields below are set only when status is found.
  std::string proto_version;     // "2.0" or "1.99"
  std::string software_version;  // "OpenSSH_9.2p1"
  std::string comments;          // after the first space, possibly empty: "Debian-2+deb12u3"
  uint32_t banner_length = 0;    // through the line end: the key exchange starts here
};

// `stream` is the start of the client's direction of a TCP stream.
[[nodiscard]] SshBannerResult parse_ssh_banner(std::span<const uint8_t> stream);

}  // namespace portcullis::parsers
