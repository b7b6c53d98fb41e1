// libFuzzer target: the QUIC Initial path on arbitrary bytes, read twice. As a client datagram
// it reaches the header walk, key derivation, header protection and the AEAD; random bytes
// almost never authenticate, so it is also read as an already decrypted Initial payload to reach
// the frame walk, the CRYPTO reassembly and the ClientHello behind them.
// Besides memory errors it traps on broken promises: reassembly must not depend on the order
// frames arrive in, and a found flow must hold a found ClientHello.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "parsers/quic_crypto_stream.h"
#include "parsers/quic_initial.h"
#include "parsers/tls_client_hello.h"

namespace {

using portcullis::parsers::CryptoFrame;
using portcullis::parsers::CryptoStreamAssembler;
using portcullis::parsers::ParseStatus;
using AddResult = CryptoStreamAssembler::AddResult;

void check_datagram(portcullis::parsers::QuicInitialDecryptor& decryptor, std::span<const uint8_t> datagram) {
  portcullis::parsers::QuicClientHelloReader reader(decryptor);
  const auto& result = reader.add_datagram(datagram);
  if (result.status == ParseStatus::found && result.client_hello.status != ParseStatus::found) {
    __builtin_trap();
  }
}

// Adds every frame in turn: stored when all were, else the first refusal.
CryptoStreamAssembler::AddResult assemble(CryptoStreamAssembler& assembler, const std::vector<CryptoFrame>& frames) {
  for (const CryptoFrame& frame : frames) {
    if (const auto added = assembler.add(frame.offset, frame.data); added != AddResult::stored) {
      return added;
    }
  }
  return AddResult::stored;
}

void check_payload(std::span<const uint8_t> payload) {
  std::vector<CryptoFrame> frames;
  if (portcullis::parsers::walk_initial_frames(payload, frames).status != ParseStatus::found) {
    return;
  }
  CryptoStreamAssembler forward(CryptoStreamAssembler::kMinCapacity);
  CryptoStreamAssembler backward(CryptoStreamAssembler::kMinCapacity);
  const AddResult forward_result = assemble(forward, frames);
  std::reverse(frames.begin(), frames.end());
  const AddResult backward_result = assemble(backward, frames);
  // A conflict is between two frames, whichever comes first; gaps may fill in either order.
  if ((forward_result == AddResult::conflict) != (backward_result == AddResult::conflict) &&
      forward_result != AddResult::too_fragmented && backward_result != AddResult::too_fragmented) {
    __builtin_trap();
  }
  if (forward_result == AddResult::stored && backward_result == AddResult::stored &&
      !std::ranges::equal(forward.contiguous_prefix(), backward.contiguous_prefix())) {
    __builtin_trap();
  }
  (void)portcullis::parsers::parse_client_hello_message(forward.contiguous_prefix());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static portcullis::parsers::QuicInitialDecryptor decryptor;
  const std::span<const uint8_t> input(data, size);
  check_datagram(decryptor, input);
  check_payload(input);
  return 0;
}
