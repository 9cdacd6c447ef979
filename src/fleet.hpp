// The supervisor of `zyolo run`: the main thread owns the one ZeroMQ context, starts the broker,
// the workers and the clients as attached-thread actors, collects what they report over their
// pipes, and stops them all. It shares no state with them: only messages cross.
//
// With a scenario it also plays the scenario's events on time, from the same poll loop: it stops
// and starts the broker, crashes, freezes, adds and removes workers, starts and retires clients,
// and tells the link actor (threads/link.cpp) to partition, drop or delay. Each event goes into
// the report with the time the fault ended, from which the report measures recovery.
#pragma once

#include <functional>

#include "config.hpp"
#include "report.hpp"
#include "scenario.hpp"

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

// Blocks SIGINT and SIGTERM in the calling thread. Call it before any thread starts (ours,
// ZeroMQ's or OpenCV's): threads inherit the mask, so the signals reach only the signalfd that
// run_fleet polls, instead of killing the process in whichever thread the kernel picks.
void block_stop_signals();

// Runs the fleet `config` describes until every request has ended (or SIGINT/SIGTERM), and
// returns the report. Throws ActorError when an actor cannot start.
Report run_fleet(const Config& config, const FleetOptions& options = {});

}  // namespace zyolo
