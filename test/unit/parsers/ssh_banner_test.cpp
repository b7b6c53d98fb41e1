#include "parsers/ssh_banner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/parse_result.h"

namespace portcullis::parsers {
namespace {

using Reason = SshBannerReason;

// What `ssh` sends first on Debian 12 (OpenSSH 9.2p1, Debian package 1:9.2p1-2+deb12u3).
constexpr std::string_view kOpenSshBanner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";

SshBannerResult parse(std::string_view stream) {
  return parse_ssh_banner({reinterpret_cast<const uint8_t*>(stream.data()), stream.size()});
}

void expect_malformed(std::string_view stream, Reason reason) {
  const SshBannerResult result = parse(stream);
  EXPECT_EQ(to_string(result.status), to_string(ParseStatus::malformed)) << stream;
  EXPECT_EQ(to_string(result.reason), to_string(reason)) << stream;
}

// A banner line of exactly `length` bytes, line end included, padded out in the comments.
std::string banner_of_length(size_t length, std::string_view line_end = "\r\n") {
  const std::string start = "SSH-2.0-Portcullis_1.0 ";
  return start + std::string(length - start.size() - line_end.size(), 'c') + std::string(line_end);
}

TEST(SshBannerReason, EveryReasonHasADistinctKebabCaseName) {
  std::vector<std::string_view> names;
  for (auto value = static_cast<uint8_t>(Reason::none); value <= static_cast<uint8_t>(Reason::too_long); ++value) {
    const std::string_view name = to_string(static_cast<Reason>(value));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(std::ranges::all_of(name, [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; })) << name;
    names.push_back(name);
  }
  std::ranges::sort(names);
  EXPECT_EQ(std::ranges::adjacent_find(names), names.end());
  EXPECT_EQ(to_string(Reason::not_ssh), "not-ssh");
}

// ---- what real clients send --------------------------------------------------------------

TEST(SshBanner, FindsVersionsAndCommentsInOpenSshBanner) {
  const SshBannerResult result = parse(kOpenSshBanner);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.reason, Reason::none);
  EXPECT_EQ(result.proto_version, "2.0");
  EXPECT_EQ(result.software_version, "OpenSSH_9.2p1");
  EXPECT_EQ(result.comments, "Debian-2+deb12u3");
  EXPECT_EQ(result.banner_length, kOpenSshBanner.size());
}

TEST(SshBanner, BannerLengthStopsAtTheLineEndBeforeTheKeyExchange) {
  // The client's KEXINIT packet may follow in the same segment: packet length, padding, type 20.
  std::string stream(kOpenSshBanner);
  stream += std::string("\x00\x00\x05\xdc\x0a\x14", 6) + std::string(16, '\x5a');
  const SshBannerResult result = parse(stream);
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.banner_length, kOpenSshBanner.size());
}

TEST(SshBanner, NeedsMoreForEveryProperPrefixOfABanner) {
  for (const std::string_view banner : {kOpenSshBanner, std::string_view("SSH-1.99-x\r\n")}) {
    for (size_t length = 0; length < banner.size(); ++length) {
      const SshBannerResult result = parse(banner.substr(0, length));
      ASSERT_EQ(result.status, ParseStatus::need_more)
          << "prefix of " << length << " bytes of " << banner << ": " << to_string(result.reason);
    }
    EXPECT_EQ(parse(banner).status, ParseStatus::found) << banner;
  }
}

TEST(SshBanner, AcceptsBannersOfOtherClients) {
  for (const auto& [banner, software] :
       {std::pair<std::string_view, std::string_view>{"SSH-2.0-PuTTY_Release_0.78\r\n", "PuTTY_Release_0.78"},
        {"SSH-2.0-Go\r\n", "Go"},
        {"SSH-2.0-paramiko_3.4.0\r\n", "paramiko_3.4.0"},
        {"SSH-2.0-libssh2_1.10.0\r\n", "libssh2_1.10.0"},
        {"SSH-2.0-dropbear_2022.83\r\n", "dropbear_2022.83"},
        {"SSH-2.0-OpenSSH_for_Windows_8.1\r\n", "OpenSSH_for_Windows_8.1"}}) {
    const SshBannerResult result = parse(banner);
    ASSERT_EQ(result.status, ParseStatus::found) << banner << ": " << to_string(result.reason);
    EXPECT_EQ(result.software_version, software);
    EXPECT_EQ(result.comments, "");
  }
}

TEST(SshBanner, AcceptsProtoVersion199) {
  const SshBannerResult result = parse("SSH-1.99-OpenSSH_3.9p1\r\n");
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.proto_version, "1.99");
}

TEST(SshBanner, AcceptsBareLfLineEndAsOpenSshDoes) {
  const SshBannerResult result = parse("SSH-2.0-OpenSSH_9.2p1\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.software_version, "OpenSSH_9.2p1");
  EXPECT_EQ(result.banner_length, 22u);
}

TEST(SshBanner, AcceptsEmptyCommentsAfterTheSpace) {
  const SshBannerResult result = parse("SSH-2.0-OpenSSH_9.2p1 \r\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.software_version, "OpenSSH_9.2p1");
  EXPECT_EQ(result.comments, "");
}

TEST(SshBanner, KeepsSpacesAndMinusesInComments) {
  const SshBannerResult result = parse("SSH-2.0-x a - b  c\r\n");
  ASSERT_EQ(result.status, ParseStatus::found) << to_string(result.reason);
  EXPECT_EQ(result.comments, "a - b  c");
}

// ---- what is not an SSH client's first line ----------------------------------------------

TEST(SshBanner, RejectsTlsClientHelloAtItsFirstByte) {
  const std::vector<uint8_t> client_hello{0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
  const SshBannerResult result = parse_ssh_banner(std::span(client_hello).first(1));
  EXPECT_EQ(result.status, ParseStatus::malformed);
  EXPECT_EQ(result.reason, Reason::not_ssh);
}

TEST(SshBanner, RejectsHttpRequestAtItsFirstByte) {
  expect_malformed("G", Reason::not_ssh);
  expect_malformed("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", Reason::not_ssh);
}

TEST(SshBanner, RejectsPrefixOtherThanUpperCaseSshAtTheFirstDifferentByte) {
  expect_malformed("SSX", Reason::not_ssh);
  expect_malformed("ssh-2.0-OpenSSH_9.2p1\r\n", Reason::not_ssh);
  expect_malformed("SSH\r\n", Reason::not_ssh);
  expect_malformed("SSH_2.0-x\r\n", Reason::not_ssh);
}

TEST(SshBanner, RejectsLinesBeforeTheBanner) {
  // Only a server may send other lines first (RFC 4253 4.2).
  expect_malformed("\r\nSSH-2.0-OpenSSH_9.2p1\r\n", Reason::not_ssh);
  expect_malformed("Hello\r\nSSH-2.0-OpenSSH_9.2p1\r\n", Reason::not_ssh);
}

TEST(SshBanner, RejectsProtoVersionOtherThan20And199AsSoonAsItDiffers) {
  for (const std::string_view banner : {"SSH-1.5-OpenSSH_2.0\r\n", "SSH-1.5", "SSH-2.1-x\r\n", "SSH-2.00-x\r\n",
                                        "SSH-1.9-x\r\n", "SSH-3", "SSH--x\r\n", "SSH-\r\n", "SSH-2.0\r\n\r\n"}) {
    const SshBannerResult result = parse(banner);
    EXPECT_EQ(result.status, ParseStatus::malformed) << banner;
  }
  expect_malformed("SSH-1.5", Reason::proto_version);
  expect_malformed("SSH-2.1", Reason::proto_version);
  expect_malformed("SSH-2.00", Reason::proto_version);
  expect_malformed("SSH--x\r\n", Reason::proto_version);
  expect_malformed("SSH-\r\n", Reason::proto_version);
  expect_malformed("SSH-1.9\r\n", Reason::proto_version);
}

TEST(SshBanner, RejectsEmptySoftwareVersion) {
  expect_malformed("SSH-2.0-\r\n", Reason::software_version);
  expect_malformed("SSH-2.0- comment\r\n", Reason::software_version);
  expect_malformed("SSH-2.0\r\n", Reason::software_version);
}

TEST(SshBanner, AcceptsMinusInSoftwareVersionAsOpenSshDoes) {
  // RFC 4253 4.2 forbids it, but JSch up to 0.1.55 sends exactly this and OpenSSH's server accepts it.
  const SshBannerResult result = parse("SSH-2.0-JSCH-0.1.54\r\n");
  ASSERT_EQ(result.status, ParseStatus::found);
  EXPECT_EQ(result.software_version, "JSCH-0.1.54");
}

TEST(SshBanner, RejectsBytesOutsidePrintableAscii) {
  using namespace std::string_literals;
  for (const std::string& banner :
       {"SSH-2.0-Open\tSSH\r\n"s, "SSH-2.0-x comment\twith tab\r\n"s, "SSH-2.0-x\0\r\n"s, "SSH-2.0-caf\xc3\xa9\r\n"s,
        "SSH-2.0-x \x7f\r\n"s, "SSH-2.0-x\ry\r\n"s, "SSH-2.0-x\r\r\n"s}) {
    expect_malformed(banner, Reason::not_printable);
  }
}

TEST(SshBanner, AcceptsBannerOf255BytesAndRejectsLonger) {
  EXPECT_EQ(parse(banner_of_length(255)).status, ParseStatus::found);
  EXPECT_EQ(parse(banner_of_length(255, "\n")).status, ParseStatus::found);
  expect_malformed(banner_of_length(256), Reason::too_long);
  expect_malformed(banner_of_length(256, "\n"), Reason::too_long);
}

TEST(SshBanner, RejectsTooLongOnce255BytesCameWithoutALineEnd) {
  const std::string banner = banner_of_length(300);
  EXPECT_EQ(parse(std::string_view(banner).substr(0, 254)).status, ParseStatus::need_more);
  expect_malformed(std::string_view(banner).substr(0, 255), Reason::too_long);
}

}  // namespace
}  // namespace portcullis::parsers
