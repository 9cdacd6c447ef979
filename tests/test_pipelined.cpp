// The fault scenarios again, pipelined (issue #19): each client keeps 8 requests outstanding and
// each worker may hold 4, so a Lazy Pirate retry resends all of a client's, the broker drops
// retries of requests it still holds, a worker lost with 4 has each re-queued once, and a
// re-queued request is served once. Every run must still lose nothing and deliver nothing twice,
// show what its fault must show, and no worker may ever hold more than its credit.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "scenario_runs.hpp"

using zyolo_test::check_nothing_lost;
using zyolo_test::find_event;
using zyolo_test::run_scenario;

namespace {

nlohmann::json run_windowed(const std::string& name, const std::string& args = "") {
  auto j = run_scenario(name, "--in-flight 8 --worker-credit 4 " + args);
  CHECK(j["run"]["in_flight"] == 8);
  INFO(j["broker"].dump());
  CHECK(j["broker"]["most_held"].get<long>() <= 4);
  CHECK(j["broker"]["most_held"].get<long>() >= 1);
  return j;
}

}  // namespace

TEST_CASE("pipelined faults: scenario broker-restart with 8 in flight per client, 4 per worker") {
  auto j = run_windowed("broker-restart");
  check_nothing_lost(j);
  CHECK(j["broker"]["incarnations"] == 2);
  const auto* kill = find_event(j, "kill-broker");
  REQUIRE(kill);
  CHECK((*kill)["first_answer_s"].get<double>() >= 0);
}

TEST_CASE("pipelined faults: scenario partition with 8 in flight per client, 4 per worker") {
  auto j = run_windowed("partition");
  check_nothing_lost(j);
  CHECK(j["link"]["dropped"].get<long>() > 0);
}

TEST_CASE("pipelined faults: scenario worker-crash with 8 in flight per client, 4 per worker") {
  auto j = run_windowed("worker-crash");
  check_nothing_lost(j);
  // Found dead either by its silence (expired) or, since its credit lets the broker route it more
  // requests, by a request that could not reach its closed socket (vanished): once either way.
  CHECK(j["broker"]["expired"].get<long>() + j["broker"]["vanished"].get<long>() == 1);
  CHECK(j["broker"]["requeued"].get<long>() >= 1);
  CHECK(j["broker"]["abandoned"] == 0);
}

TEST_CASE("pipelined hangs and load: scenario worker-hang with 8 in flight per client, 4 per worker") {
  auto j = run_windowed("worker-hang");
  check_nothing_lost(j);
  CHECK(j["broker"]["expired"].get<long>() >= 1);
  CHECK(j["broker"]["unknown_worker_commands"]["REPLY"].get<long>() >= 1);
}

TEST_CASE("pipelined hangs and load: scenario overload with 8 in flight per client, 4 per worker") {
  auto j = run_windowed("overload");
  check_nothing_lost(j, /*errors_allowed=*/true);
  const auto& q = j["requests"];
  INFO(q.dump());
  CHECK(q["errors"] == q["errors_by_status"]["503"]);  // no other error: no 504
  // Every 503 a client counted came from the broker; the broker may have said 503 more often, to
  // retries whose first answer was already on its way (or died with the socket a retry closed).
  const long said = j["broker"]["rejected_busy"], counted = q["errors_by_status"]["503"];
  CHECK(said >= counted);
  CHECK(said <= counted + q["retries"].get<long>());
  CHECK(q["answered"].get<long>() > 0);
  for (const auto& row : j["timeline"]) CHECK(row["queue"].get<long>() <= 8);
}

TEST_CASE("pipelined hangs and load: scenario chaos for 10 s with 8 in flight per client, 4 per worker") {
  auto j = run_windowed("chaos", "--duration 10 --seed 5");
  check_nothing_lost(j);
  CHECK(j["events"].size() >= 2);
}
