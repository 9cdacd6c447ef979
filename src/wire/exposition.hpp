// The Prometheus text exposition format, version 0.0.4: what GET /metrics answers. A writer of
// families (# HELP, # TYPE, then the samples, all of one family together), with label values and
// help text escaped as the format asks. The metrics actor (threads/metrics.cpp) writes its own
// families and the process's with it; the supervisor (src/fleet/metrics.cpp) writes the fleet's.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "src/wire/stats.hpp"

namespace zyolo {

inline constexpr std::string_view kExpositionContentType =
    "text/plain; version=0.0.4; charset=utf-8";

using Label = std::pair<std::string_view, std::string_view>;

class Exposition {
 public:
  // Starts a family: its HELP and TYPE lines. `type` is counter, gauge or histogram.
  void family(std::string_view name, std::string_view type, std::string_view help);
  // A family of one sample without labels.
  template <class V>
  void single(std::string_view name, std::string_view type, std::string_view help, V value) {
    family(name, type, help);
    sample(name, {}, value);
  }
  // One sample of the family begun last: `name` is its name, or for a histogram the family's
  // name with _bucket, _sum or _count (histogram() writes those).
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void sample(std::string_view name, std::initializer_list<Label> labels, long value);
  // A whole histogram of the family begun last: its cumulative buckets (le="..."), _sum, _count.
  void histogram(std::string_view name, std::initializer_list<Label> labels, const Histogram& h);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void labels(std::initializer_list<Label> labels, std::string_view le = {});
  std::string out_;
};

// A label value (or HELP text, which escapes no quote) in the format's escaping.
std::string escape_label_value(std::string_view v);

}  // namespace zyolo
