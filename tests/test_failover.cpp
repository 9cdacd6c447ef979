// The broker pair in one process (zyolo run --ha), run by the binary as a user runs it: the
// failover scenario over inproc, ipc and tcp (the ACTIVE broker killed twice, each time the other
// takes over and the killed one comes back PASSIVE), the ACTIVE broker cut off (failover-cut),
// the chaos variant, and the configurations zyolo run --ha refuses. Each run must lose nothing
// and deliver nothing twice, and the report's record of the pair must show both brokers ACTIVE
// only while one of them is cut off.
#include <doctest/doctest.h>

#include <cstdlib>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "run_binary.hpp"
#include "scenario_runs.hpp"

using zyolo_test::check_nothing_lost;
using zyolo_test::has;
using zyolo_test::scaled;
using zyolo_test::TempFile;

namespace {

// The failover scenario's timers (config/scenarios/failover.toml), in seconds of the time line.
const double kHaSilenceS = scaled(0.1 * 2);        // ha.heartbeat_ms x missed: the peer counts as gone
const double kClientTimeoutS = scaled(1.0);        // client.timeout_ms: the Lazy Pirate timeout's ceiling
const double kWorkerSilenceS = scaled(0.25 * 3);   // broker.heartbeat_ms x liveness: a worker moves on
const double kWorkerBackoffS = scaled(0.25 * 2);   // worker.reconnect_initial_ms, doubled once
// What the machine adds: scheduling, and a sanitizer's slower threads (which a shorter time line
// does not shorten).
const double kSlackS = zyolo_test::sanitized() ? 1.0 : 0.5;

// The transport a run takes: the flag's, or the build's default (the tcp pass builds with tcp).
std::string transport_of(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* t = std::getenv("ZYOLO_BUILD_TRANSPORT");
  return t && *t ? t : "inproc";
}

// A config overlay for tcp: both brokers' endpoints and state channels on free ports (what
// zyolo run --ha would derive, port + 10 and + 5, may be another test's). ipc needs none: its
// derived names add to this process's own paths; inproc never leaves the process.
std::string pair_endpoints_toml(const std::string& transport) {
  if (transport != "tcp") return "";
  auto two = [] {
    auto port = [] { return "tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port()); };
    return "\"" + port() + "," + port() + "\"";
  };
  auto one = [] { return "\"tcp://127.0.0.1:" + std::to_string(zyolo_test::free_port()) + "\""; };
  return "[endpoints]\ntcp_frontend = " + two() + "\ntcp_backend = " + two() + "\ntcp_control = " + two() +
         "\n[ha]\nbind = " + one() + "\npeer = " + one() + "\n";
}

// Runs a scenario of the pair over `transport` ("": the build's default) and returns its report.
nlohmann::json run_pair(const std::string& scenario, const std::string& transport, const std::string& args = "") {
  const std::string t = transport_of(transport);
  TempFile overlay("pair-" + t + ".toml", pair_endpoints_toml(t));
  return zyolo_test::run_scenario(scenario, "--config " + overlay.path +
                                                (transport.empty() ? "" : " --transport " + transport) + " " + args);
}

// What the pair's record shows: restarts, and the stretches with both brokers ACTIVE ({from, to};
// to is -1 when it lasted to the end).
struct PairRecord {
  int restarts = 0;
  std::vector<std::pair<double, double>> dual_active;
};

// The pair's record, replayed in order: each record starts from the state the one before left;
// every broker started again after its first start goes PASSIVE at its first change (it finds
// its peer ACTIVE).
PairRecord check_pair_record(const nlohmann::json& j) {
  const auto& records = j["ha"]["records"];
  INFO(records.dump(1));
  REQUIRE(records.is_array());
  std::map<std::string, std::string> state = {{"primary", "DOWN"}, {"backup", "DOWN"}};
  std::map<std::string, int> starts;
  std::map<std::string, bool> restarted;  // started again, its first change not seen yet
  PairRecord seen;
  double last_t = 0;
  for (const auto& r : records) {
    const std::string broker = r["broker"], kind = r["kind"], from = r["from"], to = r["to"];
    CAPTURE(r.dump());
    CHECK(r["t"].get<double>() >= last_t);
    last_t = r["t"];
    CHECK(state.at(broker) == from);
    if (kind == "started" && ++starts[broker] > 1) {
      restarted[broker] = true;
      ++seen.restarts;
    } else if (kind == "transition" && restarted[broker]) {
      CHECK(to == "PASSIVE");
      restarted[broker] = false;
    }
    const bool dual_before = state["primary"] == "ACTIVE" && state["backup"] == "ACTIVE";
    state[broker] = to;
    const bool dual = state["primary"] == "ACTIVE" && state["backup"] == "ACTIVE";
    if (dual && !dual_before) seen.dual_active.emplace_back(last_t, -1);
    if (dual_before && !dual) seen.dual_active.back().second = last_t;
  }
  return seen;
}

}  // namespace

// One failover event of the report (`kind` of the active `broker`), within the bounds below; its
// failover_s.
double check_failover_event(const nlohmann::json& e, const char* kind, const char* broker) {
  CHECK(e["kind"] == kind);
  CHECK(e["broker"] == broker);
  REQUIRE(e["failover_s"].is_number());
  const double failover = e["failover_s"], first = e["first_answer_s"];
  CHECK(failover > 0);
  CHECK(failover <= kHaSilenceS + kClientTimeoutS + kSlackS);
  CHECK(first >= 0);
  CHECK(failover + first <= kWorkerSilenceS + scaled(0.25) + kWorkerBackoffS + kSlackS);
  return failover;
}

// A kill's failover ends when the other broker becomes ACTIVE: once it has missed the killed
// one's state for ha.heartbeat_ms x missed (200 ms) and then a client's request comes to vote.
// A client tries the other broker on its Lazy Pirate timeout (at least client.min_timeout_ms,
// 250 ms, after its request went out, so the first retry finds the peer gone), at worst once
// more after its timeout's ceiling: failover_s <= silence + client timeout. The first answer
// then waits for a worker: workers move to the other backend after heartbeat x liveness of
// silence, seen at a heartbeat's tick, and a reconnect back-off (doubled after an earlier loss):
// from the kill, failover_s + first_answer_s <= worker silence + a heartbeat + back-off.
void check_failover(const nlohmann::json& j) {
  check_nothing_lost(j);
  INFO(j["events"].dump(1));
  REQUIRE(j["events"].size() == 2);
  const char* killed[] = {"primary", "backup"};
  for (int i = 0; i < 2; ++i) {
    const auto& e = j["events"][static_cast<std::size_t>(i)];
    CAPTURE(i);
    const double failover = check_failover_event(e, "kill-broker", killed[i]);
    // recover90_s looks at 1 s windows, which a shorter time line (a sanitizer's) does not
    // shorten: after the second failover its run may end first.
    if (!zyolo_test::sanitized()) CHECK(e["recover90_s"].get<double>() >= 0);
    CHECK(e["end_t"].get<double>() == doctest::Approx(e["t"].get<double>() + failover).epsilon(0.001));
  }
  const PairRecord pair = check_pair_record(j);
  CHECK(pair.restarts == 2);
  CHECK(pair.dual_active.empty());  // a kill leaves one broker
  // The primary took over again when the backup was killed; the backup came back PASSIVE.
  CHECK(j["ha"]["final"]["primary"] == "ACTIVE");
  CHECK(j["ha"]["final"]["backup"] == "PASSIVE");
  CHECK(j["broker"]["incarnations"] == 4);
}

TEST_CASE("failover over the build's transport: the passive broker takes over twice, nothing lost") {
  check_failover(run_pair("failover", ""));
}

TEST_CASE("failover over ipc") { check_failover(run_pair("failover", "ipc")); }

TEST_CASE("failover over tcp") { check_failover(run_pair("failover", "tcp")); }

TEST_CASE("scenario chaos-failover: random faults with failovers on a broker pair, nothing lost") {
  auto j = run_pair("chaos-failover", "", "--duration 10");
  check_nothing_lost(j);
  int failovers = 0;
  double first_cut = -1;
  for (const auto& e : j["events"]) {
    failovers += e.contains("failover_s");
    if (e["kind"] == "cut-broker" && first_cut < 0) first_cut = e["t"];
  }
  INFO(j["events"].dump(1));
  CHECK(failovers >= 2);  // seed 1 draws a kill and a cut-off of the ACTIVE broker in 10 s
  // Both ACTIVE only after a cut-off (the one cut off stays ACTIVE), and never to the end.
  for (const auto& [from, to] : check_pair_record(j).dual_active) {
    CHECK(first_cut >= 0);
    CHECK(from >= first_cut);
    CHECK(to >= from);
  }
  // One of the two ends ACTIVE, the other PASSIVE: chaos restarts every broker it kills.
  const std::string p = j["ha"]["final"]["primary"], b = j["ha"]["final"]["backup"];
  CHECK(((p == "ACTIVE" && b == "PASSIVE") || (p == "PASSIVE" && b == "ACTIVE")));
}

// The ACTIVE broker cut off for 1.5 s: the other takes over as after a kill (the same bounds),
// the two are both ACTIVE from then until the heal, and the backup yields within a heartbeat
// or two of it.
TEST_CASE("scenario failover-cut: the active broker cut off, the passive takes over, the backup yields after the heal") {
  auto j = run_pair("failover-cut", "");
  check_nothing_lost(j);
  INFO(j["events"].dump(1));
  REQUIRE(j["events"].size() == 1);
  const auto& cut = j["events"][0];
  const double failover = check_failover_event(cut, "cut-broker", "primary");
  const PairRecord pair = check_pair_record(j);
  CHECK(pair.restarts == 0);
  REQUIRE(pair.dual_active.size() == 1);
  const double cut_t = cut["t"], heal_t = cut_t + scaled(1.5);
  CHECK(pair.dual_active[0].first == doctest::Approx(cut_t + failover).epsilon(0.01));
  CHECK(pair.dual_active[0].second >= heal_t - 0.05);
  CHECK(pair.dual_active[0].second <= heal_t + 2 * kHaSilenceS + kSlackS);
  CHECK(j["ha"]["final"]["primary"] == "ACTIVE");
  CHECK(j["ha"]["final"]["backup"] == "PASSIVE");
  CHECK(j["link"]["dropped"].get<long>() > 0);
}

TEST_CASE("zyolo run --ha refuses what a pair cannot do, and a pair's keys without --ha") {
  TempFile role("role.toml", "[ha]\nrole = \"primary\"\nbind = \"inproc://a\"\npeer = \"inproc://b\"\n");
  TempFile half("half.toml", "[ha]\nbind = \"inproc://a\"\n");
  TempFile target("target.toml", "[run]\nduration_s = 2.0\n[[events]]\nat = 1.0\ndo = \"kill-broker\"\nbroker = \"primary\"\n");
  TempFile cut("cut.toml", "[run]\nduration_s = 2.0\n[[events]]\nat = 1.0\ndo = \"cut-broker\"\nfor = 0.5\n");
  TempFile peer("peer.toml", "[run]\nduration_s = 2.0\n[[events]]\nat = 1.0\ndo = \"partition\"\nnodes = \"peer\"\nfor = 0.5\n");
  TempFile bad("bad.toml", "[run]\nduration_s = 2.0\n[[events]]\nat = 1.0\ndo = \"kill-broker\"\nbroker = \"both\"\n");
  for (const auto& [args, error] : std::initializer_list<std::pair<std::string, std::string>>{
           {"--requests 5 --ha --broker proxy", "needs run.broker = mdp"},
           {"--requests 5 --ha --autoscale", "zyolo run --ha with autoscale.enabled (--autoscale)"},
           {"--requests 5 --ha --metrics 127.0.0.1:9464", "zyolo run --ha with metrics.listen (--metrics)"},
           {"--requests 5 --ha --config " + role.path, "ha.role is for zyolo broker --ha"},
           {"--requests 5 --config " + role.path, "zyolo run --ha (run.ha = true) without ha.role"},
           {"--requests 5 --ha --config " + half.path, "give both ha.bind"},
           {"--scenario " + target.path, "broker = \"primary\" needs a broker pair (zyolo run --ha"},
           {"--ha --scenario " + bad.path, "broker must be active, primary or backup, not 'both'"},
           {"--scenario " + cut.path, "cut-broker needs a broker pair (zyolo run --ha"},
           {"--scenario " + peer.path, "nodes = \"peer\" (the pair's states) needs a broker pair"},
       }) {
    INFO(args);
    const auto r = zyolo_test::zyolo("run --model none " + args);
    CHECK(r.code != 0);
    CHECK(has(r.err, error));
  }
}
