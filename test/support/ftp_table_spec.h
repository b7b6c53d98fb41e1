// The nftables table spec the unit and kernel tests of nft/ftp_table build: a gateway with one ftp rule naming its
// servers by address (ports 21 and 2121, an IPv4 prefix and an IPv6 address) and one by name, both for a group
// whose sources are two adjacent IPv4 prefixes and an IPv6 one, masqueraded through eth0.
#pragma once

#include <vector>

#include "nft/ftp_table.h"
#include "policy/ip_address.h"

namespace portcullis::test {

inline policy::Cidr cidr(const char* text) {
  return *policy::Cidr::parse(text).cidr;
}

inline const std::vector<policy::Cidr>& group_sources() {
  static const std::vector<policy::Cidr> sources = {cidr("10.88.1.0/24"), cidr("10.88.2.0/24"), cidr("fd88:1::/64")};
  return sources;
}

inline nft::TableSpec gateway_spec() {
  nft::TableSpec spec;
  spec.hook = nft::TableSpec::Hook::prerouting;
  spec.ftp_rules = {
      {"files", {{21, 21}, {2121, 2121}}, {cidr("198.18.0.0/24"), cidr("2001:db8::21")}, false, group_sources()},
      {"mirror", {}, {}, true, {}},
  };
  spec.masquerade_iface = "eth0";
  spec.masquerade_sources = group_sources();
  return spec;
}

}  // namespace portcullis::test
