// The rules a name a flow shows must follow, shared by the parsers that read one (TLS SNI, HTTP Host), so that
// a name means the same whether it came in SNI or in Host.
#pragma once

#include <arpa/inet.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace portcullis::parsers {

inline constexpr size_t kMaxHostNameLength = 253;
inline constexpr size_t kMaxLabelLength = 63;

constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool is_host_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// `name` is already lower-case. Underscore is allowed because real names carry it (service labels, some
// CDNs) and servers accept it.
constexpr bool is_dns_name(std::string_view name) {
  size_t label_length = 0;
  for (const char c : name) {
    if (c == '.') {
      if (label_length == 0) return false;
      label_length = 0;
    } else if (!is_host_name_char(c) || ++label_length > kMaxLabelLength) {
      return false;
    }
  }
  return label_length != 0;
}

// A dotted IPv4 address. `name` is not empty.
inline bool is_ipv4_literal(const std::string& name) {
  // Dotted quads end in a digit and DNS names almost never do: skip the libc call for them.
  in_addr address{};
  return name.back() >= '0' && name.back() <= '9' && inet_pton(AF_INET, name.c_str(), &address) == 1;
}

}  // namespace portcullis::parsers
