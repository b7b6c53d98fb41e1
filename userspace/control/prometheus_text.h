// The Prometheus text exposition format, version 0.0.4: what GET /metrics answers. Families are written one
// after another, each as its # HELP and # TYPE lines and then its samples.
//
// Metric and label names come from the code, never from traffic or input, so a bad one (or a family declared
// again after another one, or a sample outside its family) is a broken invariant: it aborts, in every build,
// rather than produce a scrape Prometheus would reject whole. Label values and help text may be anything;
// they are escaped.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace portcullis::control {

using PrometheusLabels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  // Starts a family: `type` is "counter", "gauge" or "histogram". Declaring the current family again writes
  // nothing.
  void family(std::string_view name, std::string_view type, std::string_view help);

  // One sample of the current counter or gauge family: `name` is the family's. Integers are written exactly
  // (a counter past 2^53 keeps its last digits); doubles in their shortest exact form, or +Inf, -Inf, NaN.
  void sample(std::string_view name, const PrometheusLabels& labels, double value);
  void sample(std::string_view name, const PrometheusLabels& labels, uint64_t value);

  // One histogram of the current histogram family: `bucket_counts` per bucket, not cumulative, one more than
  // `upper_bounds` (the last is above every bound: +Inf). Bounds ascend, in the unit the name says (e.g.
  // 0.0005 for a name ending in _seconds; the integer overload for a name ending in _microseconds). Writes
  // the cumulative name_bucket{le="..."} lines, name_sum and name_count.
  void histogram(std::string_view name, const PrometheusLabels& labels, std::span<const double> upper_bounds,
                 std::span<const uint64_t> bucket_counts, double sum);
  void histogram(std::string_view name, const PrometheusLabels& labels, std::span<const uint64_t> upper_bounds,
                 std::span<const uint64_t> bucket_counts, double sum);

  std::string str() const { return text_; }

 private:
  void check_in_family(std::string_view name, bool histogram) const;
  void write_histogram(std::string_view name, const PrometheusLabels& labels,
                       const std::vector<std::string>& upper_bounds, std::span<const uint64_t> bucket_counts,
                       double sum);
  // `le`, when not empty, is a histogram bucket's bound, written as the last label.
  void write_sample(std::string_view name, const PrometheusLabels& labels, std::string_view value,
                    std::string_view le = {});

  std::string text_;
  std::string current_family_;
  std::string current_type_;
  std::unordered_set<std::string> families_;  // declared so far, each only once
};

}  // namespace portcullis::control
