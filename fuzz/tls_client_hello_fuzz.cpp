// libFuzzer target: the ClientHello parser on arbitrary stream bytes, through both entry points.
// Besides memory errors it traps on broken promises: a found result must lie within the input,
// carry a normalized name, and every shorter prefix of that input must be need_more (a
// firewall must never refuse a valid ClientHello for arriving in pieces).
#include <cstddef>
#include <cstdint>
#include <span>

#include "parsers/tls_client_hello.h"

namespace {

using portcullis::parsers::ClientHelloResult;
using portcullis::parsers::ParseStatus;

constexpr size_t kMaxHostNameLength = 253;

void check_name(const ClientHelloResult& result) {
  if (!result.sni) {
    return;
  }
  const std::string& name = *result.sni;
  if (name.empty() || name.size() > kMaxHostNameLength || name.back() == '.') {
    __builtin_trap();
  }
  for (const char c : name) {
    if (c >= 'A' && c <= 'Z') {
      __builtin_trap();
    }
  }
}

void check_stream(std::span<const uint8_t> stream) {
  const ClientHelloResult result = portcullis::parsers::parse_client_hello(stream);
  if (result.status != ParseStatus::found) {
    return;
  }
  check_name(result);
  if (result.stream_length > stream.size() || result.handshake_length > result.stream_length) {
    __builtin_trap();
  }
  const auto shorter = stream.first(result.stream_length - 1);
  if (portcullis::parsers::parse_client_hello(shorter).status != ParseStatus::need_more) {
    __builtin_trap();
  }
}

void check_message(std::span<const uint8_t> message) {
  const ClientHelloResult result = portcullis::parsers::parse_client_hello_message(message);
  if (result.status != ParseStatus::found) {
    return;
  }
  check_name(result);
  if (result.handshake_length > message.size() ||
      portcullis::parsers::parse_client_hello_message(message.first(result.handshake_length - 1)).status !=
          ParseStatus::need_more) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  check_stream(input);
  check_message(input);
  return 0;
}
