#include "policy/ip_address.h"

#include <gtest/gtest.h>

namespace portcullis::policy {
namespace {

TEST(IpAddress, ParsesBothFamiliesAndRejectsOtherText) {
  EXPECT_EQ(IpAddress::parse("192.0.2.1")->family, IpFamily::v4);
  EXPECT_EQ(IpAddress::parse("2001:db8::1")->family, IpFamily::v6);
  EXPECT_FALSE(IpAddress::parse("192.0.2").has_value());
  EXPECT_FALSE(IpAddress::parse("example.com").has_value());
  EXPECT_FALSE(IpAddress::parse("").has_value());
  EXPECT_FALSE(IpAddress::parse(std::string(100, '1')).has_value());
}

TEST(IpAddress, MappedIPv6UnmapsToIPv4) {
  const IpAddress mapped = *IpAddress::parse("::ffff:192.0.2.7");
  EXPECT_EQ(mapped.unmapped(), *IpAddress::parse("192.0.2.7"));
  EXPECT_EQ(IpAddress::parse("2001:db8::7")->unmapped(), *IpAddress::parse("2001:db8::7"));
}

TEST(IpAddress, LoopbackInBothFamilies) {
  EXPECT_TRUE(IpAddress::parse("127.1.2.3")->is_loopback());
  EXPECT_TRUE(IpAddress::parse("::1")->is_loopback());
  EXPECT_TRUE(IpAddress::parse("::ffff:127.0.0.1")->is_loopback());
  EXPECT_FALSE(IpAddress::parse("128.0.0.1")->is_loopback());
  EXPECT_FALSE(IpAddress::parse("::2")->is_loopback());
}

TEST(Cidr, ContainsAddressesAndPrefixesOfItsFamilyOnly) {
  const Cidr net = *Cidr::parse("10.1.0.0/16").cidr;
  EXPECT_TRUE(net.contains(*IpAddress::parse("10.1.255.255")));
  EXPECT_FALSE(net.contains(*IpAddress::parse("10.2.0.0")));
  EXPECT_TRUE(net.contains(*IpAddress::parse("::ffff:10.1.0.1")));
  EXPECT_TRUE(net.contains(*Cidr::parse("10.1.2.0/24").cidr));
  EXPECT_FALSE(net.contains(*Cidr::parse("10.0.0.0/8").cidr));
  EXPECT_TRUE(net.overlaps(*Cidr::parse("10.0.0.0/8").cidr));
  EXPECT_FALSE(Cidr::parse("::/0").cidr->contains(*IpAddress::parse("10.1.0.1")));
}

TEST(Cidr, OddPrefixLengthsMaskTheRightBits) {
  const Cidr net = *Cidr::parse("2001:db8:8000::/33").cidr;
  EXPECT_TRUE(net.contains(*IpAddress::parse("2001:db8:ffff::1")));
  EXPECT_FALSE(net.contains(*IpAddress::parse("2001:db8:7fff::1")));
  EXPECT_EQ(Cidr::parse("192.0.2.128/25").cidr->to_string(), "192.0.2.128/25");
  EXPECT_EQ(Cidr::parse("192.0.2.1").cidr->to_string(), "192.0.2.1/32");
}

TEST(Cidr, HostBitsAndBadLengthsAreErrors) {
  EXPECT_NE(Cidr::parse("192.0.2.1/24").error.find("did you mean 192.0.2.0/24"), std::string::npos);
  EXPECT_FALSE(Cidr::parse("192.0.2.0/").cidr.has_value());
  EXPECT_FALSE(Cidr::parse("192.0.2.0/-1").cidr.has_value());
  EXPECT_FALSE(Cidr::parse("192.0.2.0/24x").cidr.has_value());
  EXPECT_FALSE(Cidr::parse("::ffff:0.0.0.0/95").cidr.has_value());
}

}  // namespace
}  // namespace portcullis::policy
