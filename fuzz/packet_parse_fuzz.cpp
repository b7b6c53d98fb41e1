// libFuzzer target: the data plane's packet parser (include/portcullis/parse.h) in its userspace build,
// the same code the BPF programs run, with the flow-key functions. Beyond what ASan and UBSan catch (a
// read outside [data, data_end) would be one the verifier let through only by a bounds check that does
// not hold), it checks what the classifier relies on: offsets that lie in the frame, in order, and flow
// keys that are the same from both directions.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#include "portcullis/parse.h"

namespace {

void require(bool condition) {
  if (!condition) __builtin_trap();
}

bool same_endpoints(const pc_addr& a, __u16 a_port, const pc_addr& b, __u16 b_port) {
  return std::memcmp(&a, &b, sizeof(a)) == 0 && a_port == b_port;
}

// The tuple as a packet travelling the other way carries it.
pc_packet reversed(const pc_packet& pkt) {
  pc_packet back = pkt;
  std::swap(back.src, back.dst);
  std::swap(back.sport, back.dport);
  std::swap(back.inner_src, back.inner_dst);
  std::swap(back.inner_sport, back.inner_dport);
  return back;
}

using KeyFunction = int (*)(const pc_packet*, pc_flow_key*, __u8*);

void check_key_is_symmetric(const pc_packet& pkt, KeyFunction key_of, bool endpoints_equal) {
  pc_flow_key key{}, back_key{};
  __u8 direction = 0, back_direction = 0;
  if (key_of(&pkt, &key, &direction) != 0) return;
  const pc_packet back = reversed(pkt);
  require(key_of(&back, &back_key, &back_direction) == 0);
  require(std::memcmp(&key, &back_key, sizeof(key)) == 0);
  require(endpoints_equal || direction != back_direction);
  require(key.pad[0] == 0 && key.pad[1] == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pc_packet pkt;
  const pc_drop_reason reason = pc_parse_packet(data, data + size, &pkt);
  require(reason < PC_DROP_NEEDS_L7);  // the parser only ever gives parsing reasons
  require(std::strcmp(pc_drop_reason_name(reason), "unknown") != 0);
  require(pkt.pad[0] == 0 && pkt.pad[1] == 0 && pkt.pad[2] == 0);
  if (reason != PC_DROP_NONE) return 0;

  require(pkt.l3_off <= size);
  if (pkt.family != PC_FAMILY_NONE) {
    require(pkt.l3_off < pkt.l4_off && pkt.l4_off <= pkt.payload_off && pkt.payload_off <= size);
    require(!pkt.is_first_fragment || pkt.is_fragment);
  }
  check_key_is_symmetric(pkt, pc_flow_key_from_packet, same_endpoints(pkt.src, pkt.sport, pkt.dst, pkt.dport));
  check_key_is_symmetric(pkt, pc_flow_key_from_quoted,
                         same_endpoints(pkt.inner_src, pkt.inner_sport, pkt.inner_dst, pkt.inner_dport));
  return 0;
}
