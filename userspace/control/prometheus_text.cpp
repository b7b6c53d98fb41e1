#include "control/prometheus_text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>

namespace portcullis::control {
namespace {

[[noreturn]] void invariant_broken(std::string_view what, std::string_view name) {
  (void)std::fprintf(stderr, "portcullis: Prometheus text: %.*s: \"%.*s\"\n", static_cast<int>(what.size()),
                     what.data(), static_cast<int>(name.size()), name.data());
  std::abort();
}

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool first_kind = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!first_kind && !(digit && i > 0)) return false;
  }
  return true;
}

// Label names are metric names without ':'; those starting with "__" are Prometheus's own.
bool valid_label_name(std::string_view name) {
  return valid_metric_name(name) && name.find(':') == std::string_view::npos && !name.starts_with("__");
}

// Shortest digits that read back exactly, laid out as Go's strconv.FormatFloat(value, 'g', -1, 64) lays them
// out: the Go client writes bucket bounds that way, and le="0.0001" and le="1e-04" would be two series.
std::string format_double(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const std::to_chars_result scientific =
      std::to_chars(std::begin(buffer), std::end(buffer), value, std::chars_format::scientific);
  const char* exponent_begin = std::find(std::begin(buffer), scientific.ptr, 'e') + 1;
  if (exponent_begin < scientific.ptr && *exponent_begin == '+') ++exponent_begin;
  int32_t exponent = 0;
  std::from_chars(exponent_begin, scientific.ptr, exponent);
  if (exponent < -4 || exponent >= 6) return std::string(std::begin(buffer), scientific.ptr);
  const std::to_chars_result fixed =
      std::to_chars(std::begin(buffer), std::end(buffer), value, std::chars_format::fixed);
  return std::string(std::begin(buffer), fixed.ptr);
}

void append_escaped(std::string& out, std::string_view text, bool in_quotes) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && in_quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

}  // namespace

void PrometheusText::family(std::string_view name, std::string_view type, std::string_view help) {
  if (!valid_metric_name(name)) invariant_broken("a metric name that is not [a-zA-Z_:][a-zA-Z0-9_:]*", name);
  if (type != "counter" && type != "gauge" && type != "histogram") {
    invariant_broken("a family type other than counter, gauge or histogram", type);
  }
  if (name == current_family_) {
    if (type != current_type_) invariant_broken("a family declared again with another type", name);
    return;
  }
  // Prometheus wants each family's lines together, under one TYPE line.
  if (!families_.emplace(name).second) invariant_broken("a family declared again after another one", name);
  current_family_ = name;
  current_type_ = type;
  text_ += "# HELP ";
  text_ += name;
  text_ += ' ';
  append_escaped(text_, help, false);
  text_ += "\n# TYPE ";
  text_ += name;
  text_ += ' ';
  text_ += type;
  text_ += '\n';
}

void PrometheusText::sample(std::string_view name, const PrometheusLabels& labels, double value) {
  check_in_family(name, false);
  write_sample(name, labels, format_double(value));
}

void PrometheusText::sample(std::string_view name, const PrometheusLabels& labels, uint64_t value) {
  check_in_family(name, false);
  write_sample(name, labels, std::to_string(value));
}

void PrometheusText::histogram(std::string_view name, const PrometheusLabels& labels,
                               std::span<const double> upper_bounds, std::span<const uint64_t> bucket_counts,
                               double sum) {
  std::vector<std::string> bounds;
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (!std::isfinite(upper_bounds[i]) || (i > 0 && upper_bounds[i] <= upper_bounds[i - 1])) {
      invariant_broken("histogram bounds that are not finite and ascending", name);
    }
    bounds.push_back(format_double(upper_bounds[i]));
  }
  write_histogram(name, labels, bounds, bucket_counts, sum);
}

void PrometheusText::histogram(std::string_view name, const PrometheusLabels& labels,
                               std::span<const uint64_t> upper_bounds, std::span<const uint64_t> bucket_counts,
                               double sum) {
  std::vector<std::string> bounds;
  for (size_t i = 0; i < upper_bounds.size(); ++i) {
    if (i > 0 && upper_bounds[i] <= upper_bounds[i - 1]) invariant_broken("histogram bounds not ascending", name);
    bounds.push_back(std::to_string(upper_bounds[i]));
  }
  write_histogram(name, labels, bounds, bucket_counts, sum);
}

void PrometheusText::check_in_family(std::string_view name, bool histogram) const {
  if (name != current_family_) invariant_broken("a sample outside the current family", name);
  if (histogram != (current_type_ == "histogram")) {
    invariant_broken("histogram() is for histogram families, sample() for counters and gauges", name);
  }
}

void PrometheusText::write_histogram(std::string_view name, const PrometheusLabels& labels,
                                     const std::vector<std::string>& upper_bounds,
                                     std::span<const uint64_t> bucket_counts, double sum) {
  check_in_family(name, true);
  if (bucket_counts.size() != upper_bounds.size() + 1) {
    invariant_broken("a histogram without one count per bound and one above them all", name);
  }
  const std::string bucket_name = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bucket_counts.size(); ++i) {
    cumulative += bucket_counts[i];
    write_sample(bucket_name, labels, std::to_string(cumulative), i < upper_bounds.size() ? upper_bounds[i] : "+Inf");
  }
  write_sample(std::string(name) + "_sum", labels, format_double(sum));
  write_sample(std::string(name) + "_count", labels, std::to_string(cumulative));
}

void PrometheusText::write_sample(std::string_view name, const PrometheusLabels& labels, std::string_view value,
                                  std::string_view le) {
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& label_name = labels[i].first;
    if (!valid_label_name(label_name)) invariant_broken("a label name that is not [a-zA-Z_][a-zA-Z0-9_]*", label_name);
    if (!le.empty() && label_name == "le") invariant_broken("a histogram's own label \"le\" given", name);
    for (size_t j = 0; j < i; ++j) {
      if (labels[j].first == label_name) invariant_broken("a label given twice", label_name);
    }
  }
  text_ += name;
  if (!labels.empty() || !le.empty()) {
    text_ += '{';
    const auto write_label = [this](std::string_view label_name, std::string_view label_value) {
      if (text_.back() != '{') text_ += ',';
      text_ += label_name;
      text_ += "=\"";
      append_escaped(text_, label_value, true);
      text_ += '"';
    };
    for (const auto& [label_name, label_value] : labels) write_label(label_name, label_value);
    if (!le.empty()) write_label("le", le);
    text_ += '}';
  }
  text_ += ' ';
  text_ += value;
  text_ += '\n';
}

}  // namespace portcullis::control
