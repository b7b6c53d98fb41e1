#include "punt/reinjector.h"

#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "portcullis/punt.h"
#include "punt/frame_offloads.h"

namespace portcullis::punt {

Reinjector::~Reinjector() {
  for (const auto& [where, fd] : sockets_) ::close(fd);
}

std::string Reinjector::release(uint32_t ifindex, std::span<uint8_t> frame, uint16_t gso_size) {
  return send(ifindex, Purpose::release, frame, gso_size);
}

std::string Reinjector::reclassify(uint32_t ifindex, std::span<uint8_t> frame, uint16_t gso_size) {
  return send(ifindex, Purpose::reclassify, frame, gso_size);
}

std::string Reinjector::deliver(uint32_t ifindex, std::span<uint8_t> frame) {
  return send(ifindex, Purpose::deliver, frame, 0);
}

std::string Reinjector::pass_answer(uint32_t ifindex, std::span<uint8_t> frame, uint16_t gso_size,
                                    bool taken_at_egress) {
  if (taken_at_egress) return send(ifindex, Purpose::bypass, frame, gso_size);
  return send(ifindex, mode_ == policy::Mode::host ? Purpose::deliver : Purpose::release, frame, gso_size);
}

std::string Reinjector::send(uint32_t ifindex, Purpose purpose, std::span<uint8_t> frame, uint16_t gso_size) {
  std::string error;
  const int fd = socket_for(ifindex, purpose, error);
  if (fd < 0) return error;
  std::optional<VnetHeader> header = prepare_offloads(frame, gso_size);
  if (!header) return "a held frame whose headers do not parse";
  iovec parts[2] = {{&*header, sizeof(*header)}, {frame.data(), frame.size()}};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = 2;
  const ssize_t sent = ::sendmsg(fd, &message, 0);
  if (sent < 0) return std::string("sending a held frame: ") + std::strerror(errno);
  return {};
}

int Reinjector::socket_for(uint32_t ifindex, Purpose purpose, std::string& error) {
  const auto key = std::make_pair(ifindex, purpose);
  if (const auto it = sockets_.find(key); it != sockets_.end()) return it->second;
  // Protocol 0: the socket only sends, it receives nothing.
  const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("cannot open a packet socket: ") + std::strerror(errno);
    return -1;
  }
  const auto fail = [&](const char* what) {
    error = std::string(what) + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  };
  const int on = 1;
  if (::setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on)) != 0) return fail("PACKET_VNET_HDR");
  if (purpose == Purpose::bypass) {
    if (::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &on, sizeof(on)) != 0) return fail("PACKET_QDISC_BYPASS");
  } else if (purpose == Purpose::deliver) {
    // Gateway: out of the inside interface, unmarked, straight to the client. Host: up the local stack.
    const uint32_t mark = mode_ == policy::Mode::host ? PC_DELIVER_MARK : 0;
    if (mark != 0 && ::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) return fail("SO_MARK");
  } else if (mode_ == policy::Mode::gateway) {
    const uint32_t mark = purpose == Purpose::release ? PC_REINJECT_MARK : PC_RECLASSIFY_MARK;
    if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) != 0) return fail("SO_MARK");
  } else if (purpose == Purpose::release) {
    if (::setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &on, sizeof(on)) != 0) return fail("PACKET_QDISC_BYPASS");
  }
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_ifindex = static_cast<int>(ifindex);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0)
    return fail("binding a packet socket");
  sockets_.emplace(key, fd);
  return fd;
}

}  // namespace portcullis::punt
