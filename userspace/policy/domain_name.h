// Domain names as the policy compares them: lower-case ASCII, no trailing dot, internationalized
// names as punycode A-labels.
#pragma once

#include <string>
#include <string_view>

namespace portcullis::policy {

struct NormalizedName {
  std::string name;   // empty when `error` is set
  std::string error;  // why the text is not a valid host name
};

// Normalizes and validates a host name: case folded, one trailing dot dropped, U-labels converted to
// A-labels (IDNA2008, non-transitional), then checked label by label: 1-63 octets of letters, digits,
// '-' or '_', not starting or ending with '-'; at most 253 octets in all.
NormalizedName normalize_domain_name(std::string_view text);

// The name without its first label ("a.b.c" -> "b.c"), or an empty view for a single label.
std::string_view parent_domain(std::string_view name);

// True when `name` equals `suffix` or ends with "." + `suffix`.
bool is_same_or_subdomain(std::string_view name, std::string_view suffix);

}  // namespace portcullis::policy
