// Result vocabulary shared by the traffic parsers (TLS, QUIC, HTTP, DNS). Each parser pairs a
// ParseStatus with a reason enum of its own, so counters and logs can name why input was refused
// without one enum having to know every protocol.
#pragma once

#include <cstdint>
#include <string_view>

namespace portcullis::parsers {

enum class ParseStatus : uint8_t {
  found,      // the message is complete and valid; its fields are set
  need_more,  // the input ends before the message does; call again with more bytes
  malformed,  // no continuation can make the input valid; the reason says why
};

[[nodiscard]] constexpr std::string_view to_string(ParseStatus status) noexcept {
  switch (status) {
    case ParseStatus::found:
      return "found";
    case ParseStatus::need_more:
      return "need-more";
    case ParseStatus::malformed:
      return "malformed";
  }
  return "unknown";
}

}  // namespace portcullis::parsers
