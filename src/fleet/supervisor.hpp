// The supervisor of `zyolo run`: the main thread owns the one ZeroMQ context, starts the broker
// (with --ha, the pair: primary and backup), the workers and the clients as attached-thread
// actors, collects what they report over their pipes, and stops them all. It shares no state
// with them: only messages cross.
//
// With a scenario, the scenario player (player.hpp) plays its events on time from the same poll
// loop, through the supervisor's narrow FleetControl side: the broker stopped and started,
// workers crashed, frozen, added and retired, clients started and retired, and link rules for
// the link actor (threads/link.cpp; one per broker of a pair) to partition, drop or delay, or to
// cut a broker of the pair off. A broker of a pair reports each state change on its pipe (HA);
// the supervisor prints it and records it in the report. Each event goes into the report with
// the time the fault ended, from which the report measures recovery. The timeline's rows and the
// progress line are timeline.hpp's.
#pragma once

#include <functional>

#include "src/config/config.hpp"
#include "src/fleet/report.hpp"
#include "src/fleet/scenario.hpp"
#include "src/fleet/signals.hpp"  // block_stop_signals, for the commands

namespace zyolo {

struct FleetOptions {
  bool progress = false;  // draw a live one-line progress display on stderr
  bool announce = false;  // print each scenario event on stderr as it happens
  const Scenario* scenario = nullptr;  // settled (settle_scenario); null: no faults, no changes
  // The actors this process runs: every kind (zyolo run), or one kind, for a fleet spread over
  // processes (zyolo broker / workers / clients; the controller goes with the workers). Without
  // clients the run lasts until SIGINT or SIGTERM, which is then its normal end.
  bool broker = true, workers = true, clients = true;
  std::function<void()> on_started;  // called once every actor has started
};

// Runs the fleet `config` describes until every request has ended (or SIGINT/SIGTERM), and
// returns the report. Throws ActorError when an actor cannot start.
Report run_fleet(const Config& config, const FleetOptions& options = {});

}  // namespace zyolo
