// The shared corpus of real captures (../shared/corpus): where it is, its expected-sni.tsv rows, and each
// capture read once per test process.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "support/pcap_flows.h"

namespace portcullis::test {

// PORTCULLIS_CORPUS_DIR from the environment, else the directory the build was configured with.
std::filesystem::path corpus_dir();

// One ClientHello seen in the corpus (see the corpus README for the columns).
struct SniRow {
  std::string capture;
  std::string l4;  // "TCP" or "UDP"
  std::string client;
  std::string server;
  std::string quic_version;
  std::string expected_sni;  // "-": a ClientHello without SNI
};

// Every row of expected-sni.tsv, in file order; empty when the file cannot be read.
std::vector<SniRow> read_sni_rows();

// The flows of a capture (a path relative to the corpus), read on first use and kept.
const CaptureFlows& corpus_capture_flows(const std::string& capture);

}  // namespace portcullis::test
