// libFuzzer target: the SSH banner parser on arbitrary stream bytes.
// Besides memory errors it traps on broken promises: a found banner lies within the input and
// 255 bytes and has the fields RFC 4253 4.2 allows; every shorter prefix of it is need_more; and a
// verdict on a prefix of the input stands for the whole input, since the caller parses again as
// segments arrive.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "parsers/ssh_banner.h"

namespace {

using portcullis::parsers::kMaxSshBannerLength;
using portcullis::parsers::ParseStatus;
using portcullis::parsers::SshBannerResult;

bool is_printable(char c) {
  return c >= 0x20 && c <= 0x7e;
}

void check_fields(const SshBannerResult& result) {
  if (result.proto_version != "2.0" && result.proto_version != "1.99") {
    __builtin_trap();
  }
  if (result.software_version.empty()) {
    __builtin_trap();
  }
  for (const char c : result.software_version) {
    if (!is_printable(c) || c == ' ') {
      __builtin_trap();
    }
  }
  for (const char c : result.comments) {
    if (!is_printable(c)) {
      __builtin_trap();
    }
  }
}

bool same(const SshBannerResult& a, const SshBannerResult& b) {
  return a.status == b.status && a.reason == b.reason && a.proto_version == b.proto_version &&
         a.software_version == b.software_version && a.comments == b.comments && a.banner_length == b.banner_length;
}

// `longer` starts with `shorter`: a verdict on the shorter input must stand.
void check_stable(const SshBannerResult& shorter, const SshBannerResult& longer) {
  if (shorter.status != ParseStatus::need_more && !same(shorter, longer)) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  const SshBannerResult result = portcullis::parsers::parse_ssh_banner(input);
  if (result.status == ParseStatus::found) {
    check_fields(result);
    // "SSH-" + proto + "-" + software + line end: no banner is shorter than 10 bytes.
    if (result.banner_length < 10 || result.banner_length > size || result.banner_length > kMaxSshBannerLength) {
      __builtin_trap();
    }
    const auto banner = input.first(result.banner_length);
    if (portcullis::parsers::parse_ssh_banner(banner.first(banner.size() - 1)).status != ParseStatus::need_more ||
        !same(portcullis::parsers::parse_ssh_banner(banner), result)) {
      __builtin_trap();
    }
  }
  const size_t cut = size == 0 ? 0 : data[0] % size;
  check_stable(portcullis::parsers::parse_ssh_banner(input.first(cut)), result);
  check_stable(portcullis::parsers::parse_ssh_banner(input.first(size / 2)), result);
  return 0;
}
