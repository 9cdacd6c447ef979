// The supervisor of `zyolo run`: the main thread owns the one ZeroMQ context, starts the broker,
// the workers and the clients as attached-thread actors, collects what they report over their
// pipes, and stops them all. It shares no state with them: only messages cross.
#pragma once

#include "config.hpp"
#include "report.hpp"

namespace zyolo {

struct FleetOptions {
  bool progress = false;  // draw a live one-line progress display on stderr
};

// Blocks SIGINT and SIGTERM in the calling thread. Call it before any thread starts (ours,
// ZeroMQ's or OpenCV's): threads inherit the mask, so the signals reach only the signalfd that
// run_fleet polls, instead of killing the process in whichever thread the kernel picks.
void block_stop_signals();

// Runs the fleet `config` describes until every request has ended (or SIGINT/SIGTERM), and
// returns the report. Throws ActorError when an actor cannot start.
Report run_fleet(const Config& config, const FleetOptions& options = {});

}  // namespace zyolo
