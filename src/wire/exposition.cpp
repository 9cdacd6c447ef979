// See exposition.hpp.
#include "src/wire/exposition.hpp"

#include <fmt/format.h>

#include <cmath>

namespace zyolo {

namespace {
// The format's escaping: backslash and line feed, and in a label value the double quote too.
std::string escape(std::string_view v, bool quote) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}
std::string escape_help(std::string_view v) { return escape(v, false); }
}  // namespace

std::string escape_label_value(std::string_view v) { return escape(v, true); }

namespace {
// A float as the format takes it: the shortest text that reads back the same, or +Inf, -Inf, NaN.
std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}
}  // namespace

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help),
                 name, type);
}

void Exposition::labels(std::initializer_list<Label> labels, std::string_view le) {
  if (labels.size() == 0 && le.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [key, value] : labels) {
    fmt::format_to(std::back_inserter(out_), "{}{}=\"{}\"", first ? "" : ",", key,
                   escape_label_value(value));
    first = false;
  }
  if (!le.empty()) fmt::format_to(std::back_inserter(out_), "{}le=\"{}\"", first ? "" : ",", le);
  out_ += '}';
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> l, double value) {
  out_ += name;
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", number(value));
}

void Exposition::sample(std::string_view name, std::initializer_list<Label> l, long value) {
  out_ += name;
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", value);
}

void Exposition::histogram(std::string_view name, std::initializer_list<Label> l,
                           const Histogram& h) {
  long cumulative = 0;
  for (std::size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    fmt::format_to(std::back_inserter(out_), "{}_bucket", name);
    labels(l, i < h.bounds.size() ? std::string_view(number(h.bounds[i])) : "+Inf");
    fmt::format_to(std::back_inserter(out_), " {}\n", cumulative);
  }
  fmt::format_to(std::back_inserter(out_), "{}_sum", name);
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", number(h.sum));
  fmt::format_to(std::back_inserter(out_), "{}_count", name);
  labels(l);
  fmt::format_to(std::back_inserter(out_), " {}\n", h.count);
}

}  // namespace zyolo
