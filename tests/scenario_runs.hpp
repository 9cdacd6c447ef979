// Running a scenario through the binary and checking what every scenario must end with; shared by
// the scenario and autoscale suites (doctest assertions: include after doctest.h).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "run_binary.hpp"

namespace zyolo_test {

// Runs `zyolo ARGS --quiet` (`run ...` or `clients ...`), requires exit 0 (nothing lost,
// delivered twice, mismatched or misrouted) and returns its JSON report.
inline nlohmann::json run_report(const std::string& args) {
  const std::string report = "/tmp/zyolo-test-report-" + std::to_string(::getpid()) + ".json";
  auto r = zyolo(args + " --quiet --report " + report);
  INFO("zyolo ", args, "\n", r.out, r.err);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(slurp(report));
  std::remove(report.c_str());
  return j;
}

// The time scale this suite plays scenarios at: ZYOLO_TEST_TIME_SCALE, which CTest sets (0.5 in
// the sanitizer passes, where the same faults heal in half the time; 1 otherwise).
inline double time_scale() {
  const char* s = std::getenv("ZYOLO_TEST_TIME_SCALE");
  const double k = s ? std::atof(s) : 1.0;
  return k > 0 ? k : 1.0;
}

// True in a sanitizer's pass (ZYOLO_TEST_SANITIZER, which CTest sets: thread or address).
inline bool sanitized() {
  const char* s = std::getenv("ZYOLO_TEST_SANITIZER");
  return s && *s;
}

// A time of a scenario's time line (seconds), as this suite plays it.
inline double scaled(double seconds) { return seconds * time_scale(); }

// The flag that plays a run at the suite's time scale.
inline std::string time_scale_flag() { return " --time-scale " + std::to_string(time_scale()); }

// Runs `zyolo run --scenario NAME --model none ARGS` at the suite's time scale and returns its
// JSON report.
inline nlohmann::json run_scenario(const std::string& name, const std::string& args = "") {
  return run_report("run --scenario " + name + " --model none " + args + time_scale_flag());
}

// What every scenario must end with: every request ended once, and answered unless `errors`.
inline void check_nothing_lost(const nlohmann::json& j, bool errors_allowed = false) {
  const auto& q = j["requests"];
  INFO(q.dump());
  CHECK(q["sent"].get<long>() > 0);
  CHECK(q["lost"] == 0);
  CHECK(q["duplicates_delivered"] == 0);
  CHECK(q["mismatched"] == 0);
  CHECK(q["wrong_service"] == 0);
  if (!errors_allowed) CHECK(q["errors"] == 0);
  CHECK(q["answered"].get<long>() + q["errors"].get<long>() == q["sent"].get<long>());
  CHECK(j["actor_errors"].empty());
}

// The report's first event of `kind`, and its worker `id`; null when there is none.
inline const nlohmann::json* find_event(const nlohmann::json& j, const std::string& kind) {
  for (const auto& e : j["events"])
    if (e["kind"] == kind) return &e;
  return nullptr;
}

inline const nlohmann::json* find_worker(const nlohmann::json& j, const std::string& id) {
  for (const auto& w : j["workers"])
    if (w["id"] == id) return &w;
  return nullptr;
}

}  // namespace zyolo_test
