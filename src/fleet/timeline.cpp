// The timeline and the progress line: see timeline.hpp.
#include "src/fleet/timeline.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace zyolo {

double resident_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

void Timeline::add_row(double t, const std::optional<BrokerStats>& broker, long clients,
                       std::vector<TimelineRow>& rows) const {
  TimelineRow row;
  row.t = t;
  if (broker) {
    row.workers = broker->workers;
    row.queue = broker->queue;
    row.broker_cpu_us = broker->cpu_us;
    row.broker_requests = broker->requests;
  }
  row.clients = clients;
  row.rss_mb = resident_mb();
  if (controller_) {
    row.demand = 0;
    row.desired = 0;
    for (const auto& [service, d] : scale_) {
      row.demand += d.demand;
      row.desired += d.desired;
    }
  }
  rows.push_back(row);
}

void ProgressLine::draw(double t, long answered, long ended, double duration_s, long requests,
                        bool broker_up) const {
  if (!draw_) return;
  const std::string done = duration_s > 0
                               ? fmt::format("{:6.1f} of {:.0f} s", t, duration_s)
                               : fmt::format("{:6.1f} s  {} of {} requests ended", t, ended, requests);
  fmt::print(stderr, "\r\033[K  {}  answered {}  errors {}  {:.0f}/s{}", done, answered,
             ended - answered, t > 0 ? static_cast<double>(answered) / t : 0.0,
             broker_up ? "" : "  (no broker)");
}

void ProgressLine::announce(const std::string& kind, const std::string& detail, double t) const {
  if (!announce_) return;
  if (draw_) fmt::print(stderr, "\r\033[K");
  fmt::print(stderr, "  {:6.2f} s  {}: {}\n", t, kind, detail);
}

void ProgressLine::clear() const {
  if (draw_) fmt::print(stderr, "\r\033[K");
}

}  // namespace zyolo
