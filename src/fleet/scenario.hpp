// Scenarios: a run's settings plus a timeline of faults and changes (zyolo run --scenario).
//
// A scenario is a TOML file: any config keys (as in config/default.toml), plus
//
//   description = "one line"
//   seed = 7                      # for random choices (chaos, a worker picked at random)
//   [[events]]
//   at = 3.0                      # seconds after the start
//   do = "partition"              # what happens (below)
//   for = 2.0                     # how long the fault lasts, seconds
//   nodes = "workers"             # partition, drop, delay: all, clients, workers or "w0,c1"
//
//   do                 keys               what happens
//   kill-broker        [broker] [for]     the broker actor is stopped: its sockets close and all it
//                                         held is gone; with `for`, a new one starts after that long.
//                                         With zyolo run --ha, broker = "active" (the default: a
//                                         failover), "primary" or "backup"; one started again
//                                         finds its peer ACTIVE and goes PASSIVE
//   restart-broker     [broker]           a new broker on the same endpoints (--ha: the one down,
//                                         or the one `broker` names)
//   crash-worker       [worker] [for]     a worker exits inside its next request, without
//                                         DISCONNECT; with `for`, a new worker replaces it after
//                                         that long (worker: "w1"; none: random)
//   freeze-worker      [worker] for       a worker hangs inside its next request for that long
//   partition          nodes for          the link drops all their traffic, both ways
//   drop               nodes fraction for the link drops that fraction of their traffic
//   delay              nodes ms for       the link holds their traffic back for ms
//   add-workers        count              new workers join
//   remove-workers     count              the newest workers retire: each finishes its request,
//                                         says DISCONNECT and leaves (nothing is re-queued)
//   set-clients        count              clients start, or retire after their request in flight
//   cut-broker         [broker] for       zyolo run --ha: the broker (broker = "active", the default,
//                                         "primary" or "backup") is cut off from its clients, its
//                                         workers and its peer by its link, as a partition; the
//                                         ACTIVE one's cut is a failover. After the heal the pair
//                                         has two ACTIVE brokers for a moment, and the backup yields
//   mark                                  nothing happens; the report's phases are cut here too
//                                         (every event starts a phase: latency and throughput)
//
// and a [chaos] table instead of (or besides) events: random faults of the kinds it lists, drawn
// from `seed`, so the same seed gives the same run of faults.
//
// With zyolo run --ha each broker has a link of its own (which also relays its state to its peer):
// partition, drop and delay act on the nodes' traffic to both.
//
// With run.broker = proxy the broker events stop and start the proxy and the worker events act on
// REP workers; partition, drop and delay are refused (settle_scenario says why): the link sees a
// node only once it speaks, and a REP worker never speaks first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.hpp"

namespace zyolo {

// What an event does: parsed once, when the file is read (an unknown name is a ConfigError).
enum class Action {
  KillBroker, RestartBroker, CrashWorker, FreezeWorker, Partition, Drop, Delay,
  AddWorkers, RemoveWorkers, SetClients, Mark, CutBroker
};
// Its name in scenario files and in the report's events ("kill-broker", ...).
std::string_view action_name(Action a);
std::optional<Action> parse_action(std::string_view name);
// Partition, drop and delay: the faults the link actor plays.
bool is_link_fault(Action a);

struct ScenarioEvent {
  double at_s = 0;
  Action action = Action::Mark;
  double for_s = 0;
  std::string worker;             // crash-worker, freeze-worker: an id; "" picks one at random
  std::string broker;             // kill-, restart-, cut-broker with --ha: active, primary, backup
  std::string nodes = "workers";  // partition, drop, delay (with --ha also "peer": the pair's states)
  double fraction = 0;            // drop
  double delay_ms = 0;            // delay
  int count = 1;                  // add-workers, remove-workers, set-clients
};

struct ChaosSettings {
  bool enabled = false;
  double start_s = 1, end_s = 0;  // faults begin in [start_s, end_s); end 0: 4 s before the end
  double mean_gap_s = 1.5;        // mean time between two faults (exponential)
  double max_outage_s = 2;        // the longest broker outage or partition
  int max_workers = 0;            // add-workers stops here (0: twice the starting count)
  std::vector<Action> kinds;  // empty: every kind
};

struct Scenario {
  std::string name, description;
  uint64_t seed = 1;
  ChaosSettings chaos;
  std::vector<ScenarioEvent> events;  // in time order once settled

  // True when any event needs the link actor (partition, drop, delay).
  bool uses_link() const;
};

// The names and one-line descriptions of the scenarios compiled in from config/scenarios/.
std::vector<std::pair<std::string, std::string>> builtin_scenarios();

// Reads scenario NAME (compiled in) or FILE (a path, or a name ending in .toml), overlays its
// settings on `config` and returns its events. Throws ConfigError naming the file and the key.
Scenario load_scenario(const std::string& name_or_file, Config& config);

// After flags have overridden the scenario's settings: applies a --seed, generates chaos events,
// checks every event against the run (times within the duration, workers that exist) and sorts
// them. Throws ConfigError.
void settle_scenario(Scenario& scenario, const Config& config, std::optional<uint64_t> seed);

// Multiplies every duration of the run's time line by run.time_scale, once, after the scenario
// (if any) is settled: the run's length, the timeline's interval, the events' times, lengths and
// delays, and every timer the faults are healed by (MDP heartbeats, the clients' timeout and
// deadline, reconnect intervals and back-offs, ZMTP heartbeats, the controller's interval,
// window and delays). The echo workers' service time is the load, not the time line: it stays.
// So the same faults happen and heal in the same order, in a fraction of the time.
void scale_time_line(Config& config, Scenario* scenario);

}  // namespace zyolo
