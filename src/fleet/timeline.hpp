// What a run shows while it runs and keeps of its course: the timeline's rows (one per
// run.report_interval_ms, in the report) and the live progress line on stderr.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/fleet/report.hpp"
#include "src/wire/stats.hpp"

namespace zyolo {

// The rows of the report's timeline. The supervisor gives it what it hears: the controller's
// evaluations (with --autoscale), and at each row the broker's STATS and the clients running.
class Timeline {
 public:
  explicit Timeline(bool controller) : controller_(controller) {}
  // The controller's latest evaluation of one service.
  void note(const ScaleDecision& d) { scale_[d.service] = d; }
  // Appends the row for time `t` (seconds since the start) to `rows`.
  void add_row(double t, const std::optional<BrokerStats>& broker, long clients,
               std::vector<TimelineRow>& rows) const;

 private:
  bool controller_;
  std::map<std::string, ScaleDecision> scale_;  // the controller's last evaluation per service
};

// Resident memory of this process, in MB.
double resident_mb();

// The one-line progress display (zyolo run --progress), redrawn in place on stderr; an event
// announced meanwhile is printed on a line of its own above it.
class ProgressLine {
 public:
  ProgressLine(bool draw, bool announce) : draw_(draw), announce_(announce) {}
  // `ended`: requests ended (answered or not); `duration_s` 0: a run of `requests` requests.
  void draw(double t, long answered, long ended, double duration_s, long requests, bool broker_up) const;
  void announce(const std::string& kind, const std::string& detail, double t) const;
  void clear() const;  // at the end of the run

 private:
  bool draw_, announce_;
};

}  // namespace zyolo
