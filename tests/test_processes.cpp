// The fleet as separate OS processes over tcp on loopback (and ipc), as a user starts it in three
// terminals: `zyolo broker`, `zyolo workers`, `zyolo clients`. Everything is answered; then the broker is
// killed with SIGKILL mid-run and started again on the same endpoints, and the clients still end
// with nothing lost and nothing delivered twice. Broker and workers stop cleanly on SIGTERM.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "process.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"
#include "sockets.hpp"
#include "src/config/config.hpp"

namespace {

using namespace std::chrono_literals;
using zyolo_test::Endpoints;
using zyolo_test::Process;

}  // namespace

TEST_CASE("broker, workers and clients as three processes over tcp: everything answered") {
  Endpoints ep;
  Process broker(ep.broker_args());
  REQUIRE(broker.wait_for("ready", 20s));
  Process workers({"workers", "--connect", ep.backend, "--workers", "2", "--model", "none"});
  REQUIRE(workers.wait_for("ready", 20s));
  auto j = zyolo_test::run_report("clients --connect " + ep.frontend + " --model none --clients 4 --requests 300");
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == 300);
  CHECK(j["run"]["transport"] == "tcp");
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  CHECK(zyolo_test::has(workers.output(), "w0 "));
  broker.signal(SIGTERM);
  CHECK(broker.wait() == 0);
  INFO(broker.output());
  CHECK(zyolo_test::has(broker.output(), "replies 300"));
}

TEST_CASE("the same three processes over ipc") {
  const std::string base = "ipc:///tmp/zyolo-test-processes-" + std::to_string(::getpid());
  const std::string frontend = base + "-frontend.ipc", backend = base + "-backend.ipc";
  Process broker({"broker", "--frontend", frontend, "--backend", backend, "--control", base + "-control.ipc"});
  REQUIRE(broker.wait_for("ready", 20s));
  Process workers({"workers", "--connect", backend, "--workers", "2", "--model", "none"});
  REQUIRE(workers.wait_for("ready", 20s));
  auto j = zyolo_test::run_report("clients --connect " + frontend + " --model none --clients 3 --requests 200");
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == 200);
  CHECK(j["run"]["transport"] == "ipc");
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  broker.signal(SIGTERM);
  CHECK(broker.wait() == 0);
  CHECK(zyolo_test::has(broker.output(), "replies 200"));
}

TEST_CASE("a worker-pool process sized by its own controller from the broker's demand over tcp") {
  Endpoints ep;
  Process broker(ep.broker_args());
  REQUIRE(broker.wait_for("ready", 20s));
  Process workers({"workers", "--connect", ep.backend, "--control", ep.control, "--autoscale",
                   "--workers", "1", "--max-workers", "8", "--model", "none", "--service-ms", "20"});
  REQUIRE(workers.wait_for("ready", 20s));
  auto j = zyolo_test::run_report("clients --connect " + ep.frontend + " --model none --clients 6 --duration 4");
  zyolo_test::check_nothing_lost(j);
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  INFO(workers.output());
  // Six closed-loop clients are a demand of six: w0 and the five the controller started served.
  for (const char* id : {"w0 ", "w1 ", "w2 ", "w3 ", "w4 ", "w5 "}) CHECK(zyolo_test::has(workers.output(), id));
  CHECK_FALSE(zyolo_test::has(workers.output(), "w6 "));
  CHECK(zyolo_test::has(workers.output(), "5 workers started"));
  broker.signal(SIGTERM);
  CHECK(broker.wait() == 0);
}

TEST_CASE("the broker killed with SIGKILL mid-run and started again: nothing lost or delivered twice") {
  Endpoints ep;
  auto broker = std::make_unique<Process>(ep.broker_args());
  REQUIRE(broker->wait_for("ready", 20s));
  Process workers({"workers", "--connect", ep.backend, "--workers", "2", "--model", "none"});
  REQUIRE(workers.wait_for("ready", 20s));
  const std::string report = "/tmp/zyolo-test-processes-" + std::to_string(::getpid()) + ".json";
  Process clients({"clients", "--connect", ep.frontend, "--model", "none", "--clients", "4", "--duration", "7",
                   "--quiet", "--report", report});
  // The fault's timing, not synchronisation: the clients are well into their run at 1.5 s.
  std::this_thread::sleep_for(1500ms);
  broker->signal(SIGKILL);
  CHECK(broker->wait() == 128 + SIGKILL);
  broker = std::make_unique<Process>(ep.broker_args());  // the same endpoints, at once
  REQUIRE(broker->wait_for("ready", 20s));
  CHECK(clients.wait() == 0);  // exit 0: every request ended, none lost or delivered twice
  auto j = nlohmann::json::parse(zyolo_test::slurp(report));
  std::remove(report.c_str());
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["retries"].get<long>() >= 1);  // what was in flight at the kill came back
  // The new broker served: answers in the last two seconds of the run.
  long late = 0;
  const double end = j["run"]["elapsed_s"];
  for (const auto& row : j["timeline"])
    if (row["t"].get<double>() > end - 2.0) late += row["answered"].get<long>();
  CHECK(late > 0);
  broker->signal(SIGTERM);
  CHECK(broker->wait() == 0);
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
}

// A broker pair without --ha: two independent brokers A and B; workers and clients are given both
// ("--connect A,B"), and start with A. A is killed with SIGKILL mid-run: the workers, hearing
// nothing for liveness x heartbeat, register with B; the clients' timeouts move them to B with
// their requests' ids unchanged. Every request is answered once, and the first answer after the
// kill comes within that silence plus one heartbeat (the last A sent may be up to one old) plus
// the clients' largest timeout (client.timeout_ms) and the report's 100 ms rows.
TEST_CASE("a broker pair: A killed with SIGKILL mid-run, workers and clients move to B, nothing lost") {
  Endpoints a, b;
  auto broker_a = std::make_unique<Process>(a.broker_args());
  Process broker_b(b.broker_args());
  REQUIRE(broker_a->wait_for("ready", 20s));
  REQUIRE(broker_b.wait_for("ready", 20s));
  Process workers({"workers", "--connect", a.backend + "," + b.backend, "--workers", "2", "--model", "none",
                   "--service-ms", "20"});
  REQUIRE(workers.wait_for("ready", 20s));
  const std::string base = "/tmp/zyolo-test-processes-pair-" + std::to_string(::getpid());
  const std::string report = base + ".json";
  zyolo_test::TempFile rows("pair-rows.toml", "[run]\nreport_interval_ms = 100\n");
  constexpr long kRequests = 500;  // ~100 a second (2 workers, 20 ms each): ~5 s of work
  Process clients({"clients", "--connect", a.frontend + "," + b.frontend, "--model", "none", "--clients", "4",
                   "--requests", std::to_string(kRequests), "--config", rows.path, "--quiet", "--report", report});
  // The fault's timing, not synchronisation: the clients are well into their run at 1.5 s.
  std::this_thread::sleep_for(1500ms);
  const auto killed_at = std::chrono::steady_clock::now();
  broker_a->signal(SIGKILL);
  CHECK(broker_a->wait() == 128 + SIGKILL);
  CHECK(clients.wait() == 0);  // exit 0: every request ended, none lost or delivered twice
  const double run_after_kill = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  auto j = nlohmann::json::parse(zyolo_test::slurp(report));
  std::remove(report.c_str());
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["answered"] == kRequests);
  CHECK(j["requests"]["retries"].get<long>() >= 1);  // what A held was sent again, to B
  // The outage: the longest time between two 100 ms rows with answers (the real one is up to a
  // row shorter). Row i counts the answers of [0.1 i, 0.1 i + 0.1) s of the run: its end is taken
  // from its index, not its "t", which is when it was written (later when the process was slow).
  double gap = 0, gap_from = 0, answered_at = 0;
  const auto& timeline = j["timeline"];
  for (std::size_t i = 0; i < timeline.size(); ++i) {
    if (timeline[i]["answered"].get<long>() == 0) continue;
    const double t = 0.1 * static_cast<double>(i + 1);
    if (t - answered_at > gap) {
      gap = t - answered_at;
      gap_from = answered_at;
    }
    answered_at = t;
  }
  const zyolo::Config defaults = zyolo::default_config();
  const double bound = (defaults.broker.silence_ms() + defaults.broker.heartbeat_ms + defaults.client.timeout_ms) / 1000.0 + 0.2;
  MESSAGE("broker pair: no answer for " << gap << " s from t=" << gap_from << " s (bound " << bound
          << " s); the run went on " << run_after_kill << " s after the kill; latency max "
          << j["latency_ms"]["max"] << " ms; retries " << j["requests"]["retries"]);
  CHECK(gap > 0.3);  // the kill was seen: a real outage
  CHECK(gap < bound);
  CHECK(j["latency_ms"]["max"].get<double>() < bound * 1000);
  broker_b.signal(SIGTERM);
  CHECK(broker_b.wait() == 0);
  INFO(broker_b.output());
  CHECK_FALSE(zyolo_test::has(broker_b.output(), "replies 0 "));  // B served after the kill
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
}
