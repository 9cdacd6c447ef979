// Every shipped scenario, run by the binary as a user runs it (--model none, a small service
// time), and the report checked: nothing lost, nothing delivered twice, and what each fault must
// show (a broker restart healed within 3 heartbeats, a new worker's share, prompt 503s, bounded
// memory, late replies dropped). Then scenario files: errors, flags over the file, seeds.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "src/config/config.hpp"
#include "src/wire/pipe.hpp"
#include "src/wire/protocol.hpp"
#include "src/wire/stats.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"
#include "src/fleet/scenario.hpp"

using zyolo_test::has;
using zyolo_test::slurp;
using zyolo_test::TempFile;
using zyolo_test::check_nothing_lost;
using zyolo_test::find_event;
using zyolo_test::find_worker;
using zyolo_test::run_scenario;
using zyolo_test::scaled;


namespace {

// The heartbeat interval the shipped scenarios run with (config/default.toml), in seconds of the
// time line (scaled with it, as every time below).
const double kHeartbeatS = scaled(1.0);

// The memory a run ended with is within 20% of what it had once every actor had started, plus
// what the report must keep: one record per request ended, for exact percentiles (RecordSink:
// a ClientRecord and its client's number), in a vector that grows by doubling (so up to twice
// that), while the allocator may hold the buffers the vector outgrew for a while (jemalloc
// returns freed pages after its decay time): four records' worth a request. The overload
// scenario ends about 170,000 requests (mostly 503s) in 5 s, about 7 MB of records; a leak of a
// message per request would be many times that.
void check_memory_bounded(const nlohmann::json& j) {
  const double start = j["memory_mb"]["start"], end = j["memory_mb"]["end"];
  const double requests = j["requests"]["answered"].get<double>() + j["requests"]["errors"].get<double>();
  const double records_mb = 4 * requests * (sizeof(zyolo::ClientRecord) + sizeof(uint32_t)) / 1048576.0;
  INFO("resident MB at the start ", start, ", at the end ", end, "; ", requests,
       " requests ended, their records' allowance ", records_mb, " MB");
  CHECK(start > 0);
  CHECK(end <= 1.2 * start + records_mb);
}

}  // namespace

TEST_CASE("scenario basic: one client, one worker, everything answered") {
  auto j = run_scenario("basic");
  check_nothing_lost(j);
  CHECK(j["run"]["clients"] == 1);
  REQUIRE(j["workers"].size() == 1);
  CHECK(j["workers"][0]["served"] == j["requests"]["answered"]);
  CHECK(j["events"].empty());
}

TEST_CASE("scenario add-worker: the new worker serves at least 30% of what is answered after it joined") {
  auto j = run_scenario("add-worker");
  check_nothing_lost(j);
  const auto* added = find_event(j, "add-workers");
  REQUIRE(added);
  CHECK((*added)["detail"] == "w1");
  const auto* w1 = find_worker(j, "w1");
  REQUIRE(w1);
  INFO(w1->dump());
  CHECK((*w1)["started_s"].get<double>() >= scaled(1.9));
  CHECK((*w1)["share_while_up"].get<double>() >= 0.30);
}

TEST_CASE("scenario broker-restart: a new broker, workers register again, the first answer within 0.5 s") {
  auto j = run_scenario("broker-restart");
  check_nothing_lost(j);
  CHECK(j["broker"]["incarnations"] == 2);
  const auto* kill = find_event(j, "kill-broker");
  REQUIRE(kill);
  INFO(kill->dump());
  const double restart = (*kill)["end_t"], first = (*kill)["first_answer_s"];
  CHECK(restart >= scaled(2.9));
  CHECK(first >= 0);
  // Clients retry on a timeout that follows the answers (about 0.1 s here), workers register
  // again as soon as the new broker is there (over tcp and ipc: as soon as the connection is
  // back), so the first answer comes within half a second of the restart; under a sanitizer the
  // bound is the older one, three heartbeats.
  CHECK(first <= (zyolo_test::sanitized() ? 3 * kHeartbeatS : 0.5));
  // Both workers registered with the new broker: it held both when the run ended.
  CHECK(j["timeline"].back()["workers"] == 2);
}

TEST_CASE("scenario partition: messages into the partition are lost and the protocol recovers them") {
  auto j = run_scenario("partition");
  check_nothing_lost(j);
  CHECK(j["link"]["dropped"].get<long>() > 0);
  REQUIRE(j["events"].size() == 2);
  for (const auto& e : j["events"]) {
    INFO(e.dump());
    CHECK(e["kind"] == "partition");
    CHECK(e["first_answer_s"].get<double>() >= 0);
  }
}

TEST_CASE("scenario worker-crash: the crashed worker's request is re-queued once after expiry") {
  auto j = run_scenario("worker-crash");
  check_nothing_lost(j);
  const auto* w1 = find_worker(j, "w1");
  REQUIRE(w1);
  CHECK((*w1)["crashed"] == true);
  CHECK(j["broker"]["expired"] == 1);        // it said nothing: only silence told the broker
  CHECK(j["broker"]["requeued"].get<long>() >= 1);
  CHECK(j["broker"]["abandoned"] == 0);
  const auto* replacement = find_worker(j, "w3");  // started 2 s later in its place
  REQUIRE(replacement);
  CHECK((*replacement)["served"].get<long>() > 0);
}

TEST_CASE("scenario worker-hang: the frozen worker is expired and its late reply is dropped, not delivered") {
  auto j = run_scenario("worker-hang");
  check_nothing_lost(j);
  CHECK(j["broker"]["expired"].get<long>() >= 1);
  CHECK(j["broker"]["requeued"].get<long>() >= 1);
  // The reply it sent when it woke came from a worker the broker no longer knew: dropped.
  CHECK(j["broker"]["unknown_worker_commands"]["REPLY"].get<long>() >= 1);
  CHECK(j["requests"]["duplicates_delivered"] == 0);
}

TEST_CASE("scenario overload: a full queue answers 503 at once, and memory stays bounded") {
  auto j = run_scenario("overload");
  check_nothing_lost(j, /*errors_allowed=*/true);
  const auto& q = j["requests"];
  INFO(q.dump());
  REQUIRE(q["errors_by_status"].contains("503"));
  CHECK(q["errors_by_status"]["503"].get<long>() > 0);
  CHECK(q["errors"] == q["errors_by_status"]["503"]);  // no other error: no 504, no timeout
  CHECK(j["broker"]["rejected_busy"] == q["errors_by_status"]["503"]);
  // Prompt: a 503 comes back without waiting for a worker (5 ms each, 8 queued ahead at least)
  // or for the client's 2.5 s timeout.
  CHECK(q["error_latency_ms"]["503"]["p99"].get<double>() < 40.0);
  CHECK(q["answered"].get<long>() > 0);
  // The queue never grew past its bound.
  for (const auto& row : j["timeline"]) CHECK(row["queue"].get<long>() <= 8);
  check_memory_bounded(j);
}

TEST_CASE("scenario chaos for 20 s: random faults of every kind, nothing lost, memory back near the start") {
  auto j = run_scenario("chaos", "--duration 20 --seed 3");
  check_nothing_lost(j);
  CHECK(j["events"].size() >= 5);
  check_memory_bounded(j);
}

// --- scenario files ----------------------------------------------------------------------------

namespace {


zyolo::Scenario load(const std::string& name, zyolo::Config& c, std::optional<uint64_t> seed = {}) {
  auto s = zyolo::load_scenario(name, c);
  zyolo::validate(c);
  zyolo::settle_scenario(s, c, seed);
  return s;
}

}  // namespace

TEST_CASE("every built-in scenario loads and settles; the issue's list is all there") {
  auto list = zyolo::builtin_scenarios();
  for (const char* name : {"basic", "add-worker", "broker-restart", "partition", "worker-crash",
                           "worker-hang", "overload", "chaos", "failover", "failover-cut", "chaos-failover"}) {
    CAPTURE(name);
    bool found = false;
    for (const auto& [n, description] : list) found = found || (n == name && !description.empty());
    CHECK(found);
    zyolo::Config c = zyolo::default_config();
    CHECK_NOTHROW(load(name, c));
    CHECK(c.worker.model == "none");
  }
}

TEST_CASE("chaos is reproducible from its seed, and another seed plays other faults") {
  auto events = [](uint64_t seed) {
    zyolo::Config c = zyolo::default_config();
    std::string text;
    for (const auto& e : load("chaos", c, seed).events)
      text += std::string(zyolo::action_name(e.action)) + "@" + std::to_string(e.at_s) + ":" + e.nodes + "/" + std::to_string(e.for_s) + ";";
    return text;
  };
  CHECK(events(7) == events(7));
  CHECK(events(7) != events(8));
  CHECK(!events(7).empty());
}

TEST_CASE("flags beside --scenario override the file's values") {
  auto j = zyolo_test::run_report("run --scenario basic --clients 2 --workers 3 --duration 1.5 --service-ms 0.5");
  CHECK(j["run"]["clients"] == 2);
  CHECK(j["run"]["workers"] == 3);
  CHECK(j["run"]["scenario"] == "basic");
  CHECK(j["run"]["elapsed_s"].get<double>() < 5.0);
}

TEST_CASE("a scenario from a file runs; bad scenario files and flags are clear errors") {
  TempFile good("good.toml", "description = \"mine\"\n[run]\nduration_s = 1.5\nclients = 1\n"
                             "workers = 2\n[worker]\nmodel = \"none\"\n[[events]]\nat = 0.5\n"
                             "do = \"remove-workers\"\n");
  auto r = zyolo_test::zyolo("run --quiet --scenario " + good.path);
  INFO(r.out, r.err);
  CHECK(r.code == 0);
  CHECK(has(r.out, "remove-workers"));

  struct Bad {
    std::string text, says;
  } cases[] = {
      {"[[events]]\nat = 1\ndo = \"explode\"\n", "unknown action 'explode'"},
      // the file and the line the event starts on, then the event
      {"[run]\nclients = 1\n\n[[events]]\nat = 1\ndo = \"explode\"\n", "bad.toml:4: events[0]: unknown action"},
      {"[[events]]\ndo = \"kill-broker\"\n", "needs 'at' and 'do'"},
      {"[[events]]\nat = 99\ndo = \"kill-broker\"\n", "outside the run"},
      {"[[events]]\nat = 1\ndo = \"partition\"\nnodes = \"the moon\"\nfor = 1\n", "nodes must be"},
      {"[[events]]\nat = 1\ndo = \"partition\"\n", "needs 'for'"},
      {"[[events]]\nat = 1\ndo = \"drop\"\nfor = 1\nfraction = 2\n", "fraction in (0, 1]"},
      {"[[events]]\nat = 1\ndo = \"kill-broker\"\ncolour = 3\n", "unknown key 'colour'"},
      {"[chaos]\nkinds = [\"restart-broker\"]\n", "not a chaos action"},
      {"[run]\nclients = \"many\"\n", "run.clients"},
      {"seed = -1\n", "'seed' must be"},
  };
  for (const auto& bad : cases) {
    TempFile f("bad.toml", bad.text);
    auto b = zyolo_test::zyolo("run --quiet --scenario " + f.path);
    INFO(bad.text, b.err);
    CHECK(b.code == 2);
    CHECK(has(b.err, bad.says));
  }
  auto missing = zyolo_test::zyolo("run --scenario no-such-scenario");
  CHECK(missing.code == 2);
  CHECK(has(missing.err, "no such scenario"));
  CHECK(has(missing.err, "broker-restart"));  // the message lists what there is
  auto requests = zyolo_test::zyolo("run --scenario basic --requests 10");
  CHECK(requests.code == 2);
  CHECK(has(requests.err, "--duration"));
  auto seed = zyolo_test::zyolo("run --seed 3 --requests 10 --model none");
  CHECK(seed.code == 2);
  CHECK(has(seed.err, "--seed needs --scenario"));
  auto list = zyolo_test::zyolo("scenarios");
  CHECK(list.code == 0);
  CHECK(has(list.out, "worker-hang"));
}

TEST_CASE("--plot draws the run with its events into a PNG") {
  const std::string png = "/tmp/zyolo-test-scenario-" + std::to_string(::getpid()) + ".png";
  auto r = zyolo_test::zyolo("run --scenario basic --duration 1.5 --quiet --plot " + png);
  INFO(r.out, r.err);
  REQUIRE(r.code == 0);
  const std::string bytes = slurp(png);
  std::remove(png.c_str());
  REQUIRE(bytes.size() > 8);
  CHECK(bytes.substr(1, 3) == "PNG");
  auto bad = zyolo_test::zyolo("run --scenario basic --duration 1 --quiet --plot /nonexistent-dir/x.png");
  CHECK(bad.code == 2);
  CHECK(has(bad.err, "/nonexistent-dir/x.png"));
}

TEST_CASE("--time-scale plays the same time line shorter: events, heartbeats, timeouts and delays") {
  zyolo::Config c = zyolo::default_config();
  auto s = load("broker-restart", c);
  const zyolo::Config before = c;
  const auto events = s.events;
  c.run.time_scale = 0.5;
  zyolo::scale_time_line(c, &s);
  CHECK(c.run.duration_s == doctest::Approx(before.run.duration_s / 2));
  CHECK(c.run.report_interval_ms == before.run.report_interval_ms / 2);
  CHECK(c.broker.heartbeat_ms == before.broker.heartbeat_ms / 2);
  CHECK(c.broker.liveness == before.broker.liveness);  // a count, not a time
  CHECK(c.client.timeout_ms == before.client.timeout_ms / 2);
  CHECK(c.client.deadline_ms == before.client.deadline_ms / 2);
  CHECK(c.worker.reconnect_initial_ms == before.worker.reconnect_initial_ms / 2);
  CHECK(c.sockets.heartbeat_ivl_ms == before.sockets.heartbeat_ivl_ms / 2);
  CHECK(c.autoscale.down_delay_ms == before.autoscale.down_delay_ms / 2);
  CHECK(c.worker.service_ms == before.worker.service_ms);  // the load, not the time line
  REQUIRE(s.events.size() == events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    CHECK(s.events[i].at_s == doctest::Approx(events[i].at_s / 2));
    CHECK(s.events[i].for_s == doctest::Approx(events[i].for_s / 2));
  }

  // Run for real at a quarter: the broker killed at 0.625 s and back at 0.75 s, healed.
  auto j = zyolo_test::run_report("run --scenario broker-restart --model none --time-scale 0.25");
  check_nothing_lost(j);
  CHECK(j["run"]["time_scale"] == 0.25);
  CHECK(j["run"]["elapsed_s"].get<double>() < 4.0);  // 8 s at real length
  CHECK(j["broker"]["incarnations"] == 2);
  const auto* kill = find_event(j, "kill-broker");
  REQUIRE(kill);
  INFO(kill->dump());
  CHECK((*kill)["t"].get<double>() == doctest::Approx(0.625).epsilon(0.1));
  CHECK((*kill)["end_t"].get<double>() == doctest::Approx(0.75).epsilon(0.1));
  CHECK((*kill)["first_answer_s"].get<double>() >= 0);
  auto bad = zyolo_test::zyolo("run --model none --duration 1 --time-scale 0");
  CHECK(bad.code != 0);
  CHECK(has(bad.err + bad.out, "--time-scale"));
}
