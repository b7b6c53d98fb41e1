// Identification cost per flow: SNI from a real ClientHello (Chrome's post-quantum one, 1.7 KB),
// from a QUIC client Initial (RFC 9001 A.2), with and without the Initial key cache, and Host from
// plain-HTTP request heads (curl's and Firefox's).
#include <benchmark/benchmark.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "parsers/http_request.h"
#include "parsers/quic_initial.h"
#include "parsers/tls_client_hello.h"

namespace {

using namespace portcullis::parsers;

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> read_hex(const std::string& path) {
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i + 1 < text.size(); i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoi(text.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

void report_name(benchmark::State& state, const std::optional<std::string>& sni) {
  if (!sni) state.SkipWithError("no SNI found");
}

void BM_ClientHelloSni(benchmark::State& state, const char* seed) {
  const std::vector<uint8_t> stream =
      read_file(std::string(PORTCULLIS_SOURCE_DIR "/fuzz/corpus/tls_client_hello/") + seed);
  for (auto _ : state) {
    ClientHelloResult result = parse_client_hello(stream);
    benchmark::DoNotOptimize(result);
  }
  report_name(state, parse_client_hello(stream).sni);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK_CAPTURE(BM_ClientHelloSni, chrome_post_quantum, "chrome-x25519-kyber");
BENCHMARK_CAPTURE(BM_ClientHelloSni, ech_outer_name, "ech-outer-name");

void BM_HttpRequestHost(benchmark::State& state, const char* seed) {
  const std::vector<uint8_t> stream = read_file(std::string(PORTCULLIS_SOURCE_DIR "/fuzz/corpus/http_request/") + seed);
  for (auto _ : state) {
    HttpRequestResult result = parse_http_request(stream);
    benchmark::DoNotOptimize(result);
  }
  report_name(state, parse_http_request(stream).host);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK_CAPTURE(BM_HttpRequestHost, curl, "curl-get");
BENCHMARK_CAPTURE(BM_HttpRequestHost, firefox, "firefox-get");

void BM_QuicInitialSni(benchmark::State& state, size_t cached_keys) {
  const std::vector<uint8_t> datagram = read_hex(PORTCULLIS_CORPUS_DIR "/rfc_v1_client_initial.hex");
  QuicInitialDecryptor decryptor(cached_keys);
  for (auto _ : state) {
    QuicClientHelloReader reader(decryptor);
    benchmark::DoNotOptimize(reader.add_datagram(datagram));
  }
  QuicClientHelloReader reader(decryptor);
  report_name(state, reader.add_datagram(datagram).client_hello.sni);
}
// A new flow has a new connection ID: its first Initial always derives keys (cache miss).
BENCHMARK_CAPTURE(BM_QuicInitialSni, new_connection_id, 0);
BENCHMARK_CAPTURE(BM_QuicInitialSni, cached_keys, QuicInitialDecryptor::kDefaultCachedKeys);

}  // namespace

BENCHMARK_MAIN();
