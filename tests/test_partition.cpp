// A real network partition over tcp. Broker, workers and clients run as separate processes in
// three network namespaces, joined to the broker's by two veth links (iproute2):
//
//   clients [10.77.2.2] ---- [10.77.2.1] broker [10.77.1.1] ---- [10.77.1.2] workers
//
// Mid-run the test turns one link's interface off for 3 seconds (ip link set down: the kernel
// drops every packet; no peer learns of it but by silence), then on again. The fleet heals on
// its own, by MDP heartbeats (workers and broker), ZMTP heartbeats (every connection) and Lazy
// Pirate retries (clients), and the clients end with every request answered, none lost and none
// delivered twice. Network namespaces need root (CI has it); without it the test fails, saying so.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "netns.hpp"
#include "process.hpp"
#include "run_binary.hpp"
#include "scenario_runs.hpp"

namespace {

using namespace std::chrono_literals;
using zyolo_test::Process;
using zyolo_test::ip;

// Three namespaces and two veth links, named after this test process, removed at the end (with
// them go their interfaces; processes still inside are killed first by Process).
class Network {
 public:
  Network() {
    REQUIRE_MESSAGE(::geteuid() == 0, "the partition test makes network namespaces: run it as root");
    for (const auto& ns : {broker, workers, clients}) {
      ip("netns add " + ns);
      ip("-n " + ns + " link set lo up");
    }
    zyolo_test::veth(broker, "to-workers", "10.77.1.1", workers, "to-broker", "10.77.1.2");
    zyolo_test::veth(broker, "to-clients", "10.77.2.1", clients, "to-broker", "10.77.2.2");
  }
  ~Network() {
    for (const auto& ns : {broker, workers, clients})
      std::system(("ip netns del " + ns + " 2>/dev/null").c_str());
  }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Turns the broker's end of a link off or on: "to-workers" or "to-clients".
  void set(const std::string& interface, bool up) {
    ip("-n " + broker + " link set " + interface + (up ? " up" : " down"));
  }

  const std::string tag = std::to_string(::getpid());
  const std::string broker = "zyolo-b" + tag, workers = "zyolo-w" + tag, clients = "zyolo-c" + tag;
};

// Starts the fleet across the namespaces, cuts `interface` off for 3 s a little into the clients'
// run, and returns the clients' report once every request has ended.
nlohmann::json run_with_partition(const std::string& interface) {
  Network net;
  Process broker({"broker", "--frontend", "tcp://10.77.2.1:5555", "--backend", "tcp://10.77.1.1:5556",
                  "--control", "tcp://10.77.1.1:5557"},
                 net.broker);
  REQUIRE(broker.wait_for("ready", 20s));
  Process workers({"workers", "--connect", "tcp://10.77.1.1:5556", "--workers", "2", "--model", "none"},
                  net.workers);
  REQUIRE(workers.wait_for("ready", 20s));
  const std::string report = "/tmp/zyolo-test-partition-" + net.tag + ".json";
  Process clients({"clients", "--connect", "tcp://10.77.2.1:5555", "--model", "none", "--clients", "4",
                   "--duration", "10", "--quiet", "--report", report},
                  net.clients);
  // The fault's timing, not synchronisation: the clients are well into their run at 1.5 s, and
  // the link stays down for the 3 s the issue asks for.
  std::this_thread::sleep_for(1500ms);
  net.set(interface, false);
  std::this_thread::sleep_for(3s);
  net.set(interface, true);
  const int code = clients.wait();
  INFO(clients.output());
  CHECK(code == 0);  // exit 0: every request ended, none lost or delivered twice
  auto j = nlohmann::json::parse(zyolo_test::slurp(report));
  std::remove(report.c_str());
  broker.signal(SIGTERM);
  CHECK(broker.wait() == 0);
  workers.signal(SIGTERM);
  CHECK(workers.wait() == 0);
  MESSAGE(broker.output());
  return j;
}

// What every partition must show: the outage was real (a whole report interval with nothing
// answered), the clients retried through it, the flow resumed, and nothing was lost or doubled.
void check_healed(const nlohmann::json& j) {
  zyolo_test::check_nothing_lost(j);
  CHECK(j["requests"]["retries"].get<long>() >= 1);
  long silent_rows = 0, late = 0;
  const double end = j["run"]["elapsed_s"];
  for (const auto& row : j["timeline"]) {
    if (row["answered"].get<long>() == 0) ++silent_rows;
    if (row["t"].get<double>() > end - 2.0) late += row["answered"].get<long>();
  }
  CHECK(silent_rows >= 1);
  CHECK(late > 0);
}

}  // namespace

TEST_CASE("the workers' link down for 3 s: the fleet heals, nothing lost or delivered twice") {
  check_healed(run_with_partition("to-workers"));
}

TEST_CASE("the clients' link down for 3 s: the fleet heals, nothing lost or delivered twice") {
  check_healed(run_with_partition("to-clients"));
}
