// For the e2e tests: the programs on the TCX hooks of interfaces of the current network namespace, which the
// system's bpftool (7.1) and iproute2 (6.1) do not show. Prints one line per program, in the order they run:
//   IFACE ingress|egress PROG_ID PROG_NAME
// Usage: portcullis_tcx_programs IFACE...   exit 0, 1 on errors, 3 when the kernel has no TCX.
#include <bpf/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include "dataplane/tc_filters.h"
#include "dataplane/tcx_links.h"

namespace {

std::string program_name(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "?";
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  std::string name = bpf_obj_get_info_by_fd(fd, &info, &length) == 0 ? info.name : "?";
  ::close(fd);
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  using portcullis::dataplane::TcDirection;
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " IFACE...\n";
    return 1;
  }
  try {
    for (int i = 1; i < argc; ++i) {
      const auto ifindex = static_cast<int>(::if_nametoindex(argv[i]));
      if (ifindex == 0) {
        std::cerr << argv[i] << ": " << std::strerror(errno) << '\n';
        return 1;
      }
      if (!portcullis::dataplane::tcx_supported(ifindex)) {
        std::cerr << "the kernel has no TCX\n";
        return 3;
      }
      for (const TcDirection direction : {TcDirection::ingress, TcDirection::egress}) {
        for (const uint32_t id : portcullis::dataplane::list_tcx_programs(ifindex, direction)) {
          std::cout << argv[i] << (direction == TcDirection::ingress ? " ingress " : " egress ") << id << ' '
                    << program_name(id) << '\n';
        }
      }
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
  return 0;
}
