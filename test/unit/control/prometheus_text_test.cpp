// The Prometheus text format as a scraper reads it: exact lines for each kind of family, escaping, and every
// line of a busy exposition in the grammar of format 0.0.4.
#include "control/prometheus_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace portcullis::control {
namespace {

TEST(PrometheusText, ACounterHasItsHelpTypeAndExactIntegers) {
  PrometheusText text;
  text.family("portcullis_flows_decided_total", "counter", "Flows the daemon decided.");
  text.sample("portcullis_flows_decided_total", {{"verdict", "allow"}}, uint64_t{9007199254740993});  // 2^53 + 1
  text.sample("portcullis_flows_decided_total", {{"verdict", "deny"}}, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(text.str(),
            "# HELP portcullis_flows_decided_total Flows the daemon decided.\n"
            "# TYPE portcullis_flows_decided_total counter\n"
            "portcullis_flows_decided_total{verdict=\"allow\"} 9007199254740993\n"
            "portcullis_flows_decided_total{verdict=\"deny\"} 18446744073709551615\n");
}

TEST(PrometheusText, AGaugeEscapesLabelValuesAndHelp) {
  PrometheusText text;
  text.family("portcullis_held_bytes", "gauge", "Bytes held\nper flow, in C:\\held \"now\".");
  text.sample("portcullis_held_bytes", {{"iface", "eth\"0\"\\\n"}, {"mode", "gateway"}}, 1.5);
  text.sample("portcullis_held_bytes", {}, 0.0);
  text.sample("portcullis_held_bytes", {{"kind", "inf"}}, -std::numeric_limits<double>::infinity());
  text.sample("portcullis_held_bytes", {{"kind", "nan"}}, std::nan(""));
  // Help keeps its quotes: only label values are quoted.
  EXPECT_EQ(text.str(),
            "# HELP portcullis_held_bytes Bytes held\\nper flow, in C:\\\\held \"now\".\n"
            "# TYPE portcullis_held_bytes gauge\n"
            "portcullis_held_bytes{iface=\"eth\\\"0\\\"\\\\\\n\",mode=\"gateway\"} 1.5\n"
            "portcullis_held_bytes 0\n"
            "portcullis_held_bytes{kind=\"inf\"} -Inf\n"
            "portcullis_held_bytes{kind=\"nan\"} NaN\n");
}

TEST(PrometheusText, AHistogramIsCumulativeUpToInfWithSumAndCount) {
  PrometheusText text;
  text.family("portcullis_punt_latency_seconds", "histogram", "Punt to verdict.");
  const double bounds[] = {0.00005, 0.0001, 0.0002};
  const uint64_t counts[] = {3, 0, 2, 1};  // per bucket; the last is above 0.0002
  text.histogram("portcullis_punt_latency_seconds", {{"mode", "host"}}, bounds, counts, 0.0125);
  EXPECT_EQ(text.str(),
            "# HELP portcullis_punt_latency_seconds Punt to verdict.\n"
            "# TYPE portcullis_punt_latency_seconds histogram\n"
            "portcullis_punt_latency_seconds_bucket{mode=\"host\",le=\"5e-05\"} 3\n"
            "portcullis_punt_latency_seconds_bucket{mode=\"host\",le=\"0.0001\"} 3\n"
            "portcullis_punt_latency_seconds_bucket{mode=\"host\",le=\"0.0002\"} 5\n"
            "portcullis_punt_latency_seconds_bucket{mode=\"host\",le=\"+Inf\"} 6\n"
            "portcullis_punt_latency_seconds_sum{mode=\"host\"} 0.0125\n"
            "portcullis_punt_latency_seconds_count{mode=\"host\"} 6\n");
}

TEST(PrometheusText, IntegerHistogramBoundsAreWrittenExactly) {
  PrometheusText text;
  text.family("latency_microseconds", "histogram", "In microseconds.");
  const uint64_t bounds[] = {50, 1000000, 10000000000};
  const uint64_t counts[] = {1, 2, 3, 4};
  text.histogram("latency_microseconds", {}, bounds, counts, 123456789.0);
  EXPECT_EQ(text.str(),
            "# HELP latency_microseconds In microseconds.\n"
            "# TYPE latency_microseconds histogram\n"
            "latency_microseconds_bucket{le=\"50\"} 1\n"
            "latency_microseconds_bucket{le=\"1000000\"} 3\n"
            "latency_microseconds_bucket{le=\"10000000000\"} 6\n"
            "latency_microseconds_bucket{le=\"+Inf\"} 10\n"
            "latency_microseconds_sum 1.23456789e+08\n"
            "latency_microseconds_count 10\n");
}

TEST(PrometheusText, DoublesAreWrittenAsTheGoClientWritesThem) {
  // Shortest exact digits; fixed from 1e-4 up to below 1e6, scientific outside (strconv 'g', -1).
  PrometheusText text;
  text.family("g", "gauge", "");
  for (const double value : {0.0, -0.0, 1.0, 0.1, 0.0001, 0.00001, 123456.5, 1e6, 1234567.0, 6.02e23, 1e-300, -2.5}) {
    text.sample("g", {}, value);
  }
  EXPECT_EQ(text.str(),
            "# HELP g \n# TYPE g gauge\n"
            "g 0\ng -0\ng 1\ng 0.1\ng 0.0001\ng 1e-05\ng 123456.5\ng 1e+06\ng 1.234567e+06\ng 6.02e+23\n"
            "g 1e-300\ng -2.5\n");
}

TEST(PrometheusText, DeclaringTheCurrentFamilyAgainWritesItsHeaderOnce) {
  PrometheusText text;
  text.family("up", "gauge", "Up.");
  text.sample("up", {}, uint64_t{1});
  text.family("up", "gauge", "Up.");
  text.sample("up", {{"again", "yes"}}, uint64_t{1});
  EXPECT_EQ(text.str(), "# HELP up Up.\n# TYPE up gauge\nup 1\nup{again=\"yes\"} 1\n");
}

// The 0.0.4 grammar, line by line: comments are HELP or TYPE of a valid name, anything else is
// name{label="value",...} value, with values escaped and numbers as Go's ParseFloat reads them.
void expect_valid_exposition(const std::string& text) {
  static const std::regex kHelp(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* (?:[^\\\n]|\\[\\n])*)");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*))"
      R"((\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?)"
      R"( ([+-]Inf|NaN|[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?))");
  ASSERT_FALSE(text.empty());
  ASSERT_EQ(text.back(), '\n');
  std::map<std::string, std::string> types;
  std::string current;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::smatch match;
    if (line.starts_with("# HELP ")) {
      EXPECT_TRUE(std::regex_match(line, kHelp)) << line;
    } else if (line.starts_with("# TYPE ")) {
      ASSERT_TRUE(std::regex_match(line, match, kType)) << line;
      EXPECT_TRUE(types.emplace(match[1], match[2]).second) << "a second TYPE line: " << line;
      current = match[1];
    } else {
      ASSERT_TRUE(std::regex_match(line, match, kSample)) << line;
      // Every sample belongs to the family declared last: its name, or a histogram's _bucket, _sum, _count.
      const std::string name = match[1];
      const bool histogram_part =
          types[current] == "histogram" &&
          (name == current + "_bucket" || name == current + "_sum" || name == current + "_count");
      EXPECT_TRUE(name == current || histogram_part) << line;
    }
  }
}

TEST(PrometheusText, EveryLineOfAMixedExpositionFollowsTheGrammar) {
  PrometheusText text;
  text.family("portcullis_verdicts_total", "counter", "Verdicts by reason \\ and\nlines.");
  for (const char* reason : {"allow", "deny\"quoted\"", "back\\slash", "new\nline", ""}) {
    text.sample("portcullis_verdicts_total", {{"reason", reason}, {"group", "lab"}}, uint64_t{42});
  }
  text.family("portcullis_ratio", "gauge", "");
  text.sample("portcullis_ratio", {}, 1e-300);
  text.sample("portcullis_ratio", {{"x", "1"}}, 6.02e23);
  text.sample("portcullis_ratio", {{"x", "2"}}, std::numeric_limits<double>::infinity());
  text.sample("portcullis_ratio", {{"x", "3"}}, std::nan(""));
  text.sample("portcullis_ratio", {{"x", "4"}}, -0.25);
  text.family("portcullis_latency_seconds", "histogram", "Latency.");
  const double bounds[] = {0.001, 0.01, 0.1, 1, 10};
  const uint64_t counts[] = {5, 4, 3, 2, 1, 0};
  text.histogram("portcullis_latency_seconds", {{"path", "a\"b"}}, bounds, counts, 3.75);
  text.histogram("portcullis_latency_seconds", {}, bounds, counts, 0);
  expect_valid_exposition(text.str());
}

TEST(PrometheusTextDeathTest, ANameOutsideTheGrammarIsABrokenInvariant) {
  PrometheusText text;
  EXPECT_DEATH(text.family("9lives", "counter", ""), "a metric name that is not");
  EXPECT_DEATH(text.family("has-dash", "gauge", ""), "a metric name that is not");
  EXPECT_DEATH(text.family("ok", "summary", ""), "a family type other than");
  text.family("ok:name_1", "gauge", "");
  EXPECT_DEATH(text.sample("ok:name_1", {{"co:lon", "x"}}, 1.0), "a label name that is not");
  EXPECT_DEATH(text.sample("ok:name_1", {{"__reserved", "x"}}, 1.0), "a label name that is not");
  EXPECT_DEATH(text.sample("ok:name_1", {{"a", "x"}, {"a", "y"}}, 1.0), "a label given twice");
  EXPECT_DEATH(text.sample("other", {}, 1.0), "a sample outside the current family");
}

TEST(PrometheusTextDeathTest, FamiliesAndHistogramsMustBeWhole) {
  PrometheusText text;
  text.family("first", "gauge", "");
  text.family("second", "histogram", "");
  EXPECT_DEATH(text.family("first", "gauge", ""), "a family declared again after another one");
  EXPECT_DEATH(text.sample("second", {}, 1.0), "histogram\\(\\) is for histogram families");
  const double bounds[] = {1, 2};
  const double descending[] = {2, 1};
  const uint64_t too_few[] = {1, 2};
  const uint64_t counts[] = {1, 2, 3};
  EXPECT_DEATH(text.histogram("second", {}, bounds, too_few, 0), "one count per bound and one above them all");
  EXPECT_DEATH(text.histogram("second", {}, descending, counts, 0), "not finite and ascending");
  EXPECT_DEATH(text.histogram("second", {{"le", "1"}}, bounds, counts, 0), "a histogram's own label");
}

}  // namespace
}  // namespace portcullis::control
