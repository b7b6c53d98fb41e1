#include "dataplane/tc_filters.h"

#include <libmnl/libmnl.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <stdexcept>

namespace portcullis::dataplane {
namespace {

constexpr size_t kReceiveBuffer = 32768;

struct SocketCloser {
  void operator()(mnl_socket* socket) const { mnl_socket_close(socket); }
};

int on_bpf_option(const nlattr* attr, void* data) {
  auto* filter = static_cast<TcFilter*>(data);
  if (mnl_attr_get_type(attr) == TCA_BPF_ID && mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
    filter->bpf_prog_id = mnl_attr_get_u32(attr);
  }
  return MNL_CB_OK;
}

int on_filter_attribute(const nlattr* attr, void* data) {
  auto* filter = static_cast<TcFilter*>(data);
  switch (mnl_attr_get_type(attr)) {
    case TCA_KIND:
      if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) filter->kind = mnl_attr_get_str(attr);
      break;
    case TCA_OPTIONS:
      // Options are read as cls_bpf's once TCA_KIND (which comes first) said so.
      if (filter->kind == "bpf") mnl_attr_parse_nested(attr, on_bpf_option, filter);
      break;
    default:
      break;
  }
  return MNL_CB_OK;
}

int on_filter(const nlmsghdr* message, void* data) {
  auto* filters = static_cast<std::vector<TcFilter>*>(data);
  const auto* tcm = static_cast<const tcmsg*>(mnl_nlmsg_get_payload(message));
  // A dump lists each priority once with handle 0 before its filters: that entry is no filter.
  if (tcm->tcm_handle == 0) return MNL_CB_OK;
  TcFilter filter;
  filter.handle = tcm->tcm_handle;
  filter.priority = static_cast<uint16_t>(TC_H_MAJ(tcm->tcm_info) >> 16);
  mnl_attr_parse(message, sizeof(*tcm), on_filter_attribute, &filter);
  filters->push_back(std::move(filter));
  return MNL_CB_OK;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("cannot list tc filters: " + what + ": " + std::strerror(errno));
}

}  // namespace

std::vector<TcFilter> list_tc_filters(int ifindex, TcDirection direction) {
  std::unique_ptr<mnl_socket, SocketCloser> socket(mnl_socket_open(NETLINK_ROUTE));
  if (!socket) fail("netlink socket");
  if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) fail("netlink bind");

  std::vector<char> buffer(kReceiveBuffer);
  nlmsghdr* request = mnl_nlmsg_put_header(buffer.data());
  request->nlmsg_type = RTM_GETTFILTER;
  request->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  const auto sequence = static_cast<uint32_t>(std::time(nullptr));
  request->nlmsg_seq = sequence;
  auto* tcm = static_cast<tcmsg*>(mnl_nlmsg_put_extra_header(request, sizeof(tcmsg)));
  tcm->tcm_family = AF_UNSPEC;
  tcm->tcm_ifindex = ifindex;
  tcm->tcm_parent = TC_H_MAKE(TC_H_CLSACT, direction == TcDirection::ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS);
  if (mnl_socket_sendto(socket.get(), request, request->nlmsg_len) < 0) fail("netlink send");

  std::vector<TcFilter> filters;
  const unsigned int port = mnl_socket_get_portid(socket.get());
  for (;;) {
    const ssize_t received = mnl_socket_recvfrom(socket.get(), buffer.data(), buffer.size());
    if (received < 0) fail("netlink receive");
    const int status = mnl_cb_run(buffer.data(), static_cast<size_t>(received), sequence, port, on_filter, &filters);
    if (status == MNL_CB_STOP) break;
    if (status < 0) {
      // No clsact qdisc: nothing is attached there.
      if (errno == EINVAL || errno == ENOENT) return {};
      fail("netlink dump");
    }
  }
  return filters;
}

}  // namespace portcullis::dataplane
