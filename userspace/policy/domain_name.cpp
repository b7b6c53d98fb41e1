#include "policy/domain_name.h"

#include <idn2.h>

#include <algorithm>
#include <memory>

namespace portcullis::policy {
namespace {

constexpr size_t kMaxNameLength = 253;
constexpr size_t kMaxLabelLength = 63;

bool is_ldh_or_underscore(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::string validate_ascii_name(std::string_view name) {
  if (name.empty()) return "empty name";
  if (name.size() > kMaxNameLength) return "name is longer than 253 characters";
  size_t start = 0;
  while (start <= name.size()) {
    const size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty()) return "empty label in '" + std::string(name) + "'";
    if (label.size() > kMaxLabelLength) return "label '" + std::string(label) + "' is longer than 63 characters";
    if (label.front() == '-' || label.back() == '-') {
      return "label '" + std::string(label) + "' starts or ends with '-'";
    }
    const auto bad = std::find_if_not(label.begin(), label.end(),
                                      [](char c) { return is_ldh_or_underscore(static_cast<unsigned char>(c)); });
    if (bad != label.end()) {
      return "character '" + std::string(1, *bad) + "' is not allowed in a host name";
    }
    start = dot + 1;
  }
  return {};
}

}  // namespace

NormalizedName normalize_domain_name(std::string_view text) {
  if (!text.empty() && text.back() == '.') text.remove_suffix(1);
  if (text.empty()) return {{}, "empty name"};

  const bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  std::string name;
  if (ascii) {
    name.assign(text);
  } else {
    char* converted = nullptr;
    const std::string input(text);
    const int rc = idn2_to_ascii_8z(input.c_str(), &converted, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    std::unique_ptr<char, decltype(&idn2_free)> owner(converted, &idn2_free);
    if (rc != IDN2_OK) return {{}, "not a valid internationalized name: " + std::string(idn2_strerror(rc))};
    name.assign(converted);
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; });
  std::string error = validate_ascii_name(name);
  if (!error.empty()) return {{}, std::move(error)};
  return {std::move(name), {}};
}

std::string_view parent_domain(std::string_view name) {
  const size_t dot = name.find('.');
  return dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
}

bool is_same_or_subdomain(std::string_view name, std::string_view suffix) {
  if (name.size() == suffix.size()) return name == suffix;
  return name.size() > suffix.size() && name.ends_with(suffix) && name[name.size() - suffix.size() - 1] == '.';
}

}  // namespace portcullis::policy
