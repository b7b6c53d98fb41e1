#include "support/sni_corpus.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#ifndef PORTCULLIS_CORPUS_DIR
#define PORTCULLIS_CORPUS_DIR ""
#endif

namespace portcullis::test {

std::filesystem::path corpus_dir() {
  const char* from_environment = std::getenv("PORTCULLIS_CORPUS_DIR");
  return (from_environment != nullptr && *from_environment != '\0') ? from_environment : PORTCULLIS_CORPUS_DIR;
}

std::vector<SniRow> read_sni_rows() {
  std::ifstream tsv(corpus_dir() / "expected-sni.tsv");
  std::vector<SniRow> rows;
  std::string line;
  std::getline(tsv, line);  // header
  while (std::getline(tsv, line)) {
    std::istringstream fields(line);
    SniRow row;
    std::getline(fields, row.capture, '\t');
    std::getline(fields, row.l4, '\t');
    std::getline(fields, row.client, '\t');
    std::getline(fields, row.server, '\t');
    std::getline(fields, row.quic_version, '\t');
    std::getline(fields, row.expected_sni, '\t');
    rows.push_back(std::move(row));
  }
  return rows;
}

const CaptureFlows& corpus_capture_flows(const std::string& capture) {
  static std::map<std::string, CaptureFlows> cache;
  auto [entry, inserted] = cache.try_emplace(capture);
  if (inserted) entry->second = read_capture_flows(corpus_dir() / capture);
  return entry->second;
}

}  // namespace portcullis::test
