// The scenario player: plays a settled scenario's events on time against a fleet it sees only
// through FleetControl, and records each event, with when its fault ended, as a FaultEvent of the
// report (from which the report measures recovery).
//
// An event with `for` has two halves: kill-broker and crash-worker with `for` end by themselves
// (a new broker, a replacement worker), a step the player keeps in time order beside the events.
//
// With a broker pair (zyolo run --ha), kill-broker stops the broker its `broker` key names, the
// ACTIVE one by default: a failover, which ends when the other becomes ACTIVE (the supervisor
// sets its end then, not the player); with `for`, the killed one starts again after that long
// (and goes PASSIVE).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "src/fleet/report.hpp"
#include "src/fleet/scenario.hpp"
#include "src/wire/pipe.hpp"

namespace zyolo {

// What an event may do to the fleet: the supervisor's narrow side. Workers are named by id
// ("w3"); "running" means started, not crashed, not retiring.
class FleetControl {
 public:
  virtual ~FleetControl() = default;
  virtual const char* broker_name() const = 0;  // "broker", or "proxy" (--broker proxy)
  // The brokers by name: the one broker_name() names, or "primary" and "backup" (zyolo run --ha).
  virtual std::vector<std::string> brokers() const = 0;
  virtual bool broker_running(const std::string& name) const = 0;
  // One of a pair: the state it said last (PRIMARY, BACKUP, ACTIVE, PASSIVE; DOWN while it is
  // stopped). "" for a broker alone.
  virtual std::string broker_state(const std::string& name) const = 0;
  virtual void start_broker(const std::string& name) = 0;  // one of a pair starts PRIMARY or BACKUP
  virtual void kill_broker(const std::string& name) = 0;  // its sockets close and what it held is gone
  // One of a pair: its link drops its clients', workers' and peer's traffic that long.
  virtual void cut_broker(const std::string& name, std::chrono::milliseconds how_long) = 0;
  // The running workers, oldest first.
  virtual std::vector<std::string> running_workers() const = 0;
  virtual void crash_worker(const std::string& id) = 0;  // no DISCONNECT: the broker expires it
  virtual void freeze_worker(const std::string& id, std::chrono::milliseconds how_long) = 0;
  virtual void retire_worker(const std::string& id) = 0;  // it leaves by DISCONNECT
  // Starts a worker of the pool `like` belonged to (no id: the first pool), and waits until it
  // has registered; returns its id.
  virtual std::string start_worker(const std::string& like = {}) = 0;
  // Starts or retires clients until `count` issue requests; says what it did.
  virtual std::string set_clients(std::size_t count, double t) = 0;
  virtual void link_rule(const LinkRule& rule) = 0;
  // Says an event (and its end) on stderr, when the run announces them.
  virtual void announce(const std::string& kind, const std::string& detail, double t) = 0;
};

class ScenarioPlayer {
 public:
  // `workers_started`: the workers the run began with (chaos adds up to twice that by default).
  ScenarioPlayer(const Scenario& scenario, int workers_started);

  // When the next step is due, in seconds since the start; nothing when all have been played.
  std::optional<double> next_at() const;
  // Plays every step due at `t` (seconds since the start), appending the events to `events`.
  void play_due(double t, FleetControl& fleet, std::vector<FaultEvent>& events);

 private:
  struct Step {
    double t;
    std::size_t event;
    bool second_half;
  };
  void play(const Step& step, double t, FleetControl& fleet, std::vector<FaultEvent>& events);
  void end(const Step& step, double t, FleetControl& fleet, std::vector<FaultEvent>& events);
  // The running worker `id`, or with no id one drawn from the scenario's seed; "" if none.
  std::string choose_worker(const std::string& id, const FleetControl& fleet);
  // The broker an event acts on: the only one; of a pair, the one `target` names, or for
  // "active" (or none) the ACTIVE one to kill, the one down to restart. "" when there is none.
  static std::string choose_broker(const std::string& target, bool to_kill, const FleetControl& fleet);
  void kill_broker(const ScenarioEvent& e, FaultEvent& fault, FleetControl& fleet, std::size_t event);
  static void cut_broker(const ScenarioEvent& e, FaultEvent& fault, FleetControl& fleet, double t);
  std::string add_workers(int count, FleetControl& fleet);
  static std::string link_fault(const ScenarioEvent& e, FleetControl& fleet);
  std::string remove_workers(int count, FleetControl& fleet);

  const Scenario& scenario_;
  std::size_t most_workers_;  // add-workers stops here
  std::vector<Step> steps_;   // in time order
  std::size_t next_ = 0;
  std::vector<int> event_index_;  // scenario event -> its entry in the report's events
  std::vector<std::string> crashed_;  // scenario event -> the worker (or broker) it stopped
  std::mt19937_64 random_;            // the scenario's seed: which worker a fault picks
};

}  // namespace zyolo
