// The scenario player: see player.hpp.
#include "src/fleet/player.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace zyolo {

ScenarioPlayer::ScenarioPlayer(const Scenario& scenario, int workers_started)
    : scenario_(scenario),
      event_index_(scenario.events.size(), -1),
      crashed_(scenario.events.size()),
      random_(scenario.seed) {
  // Chaos stops adding at its max_workers (by default twice the workers the run started with).
  const auto& chaos = scenario.chaos;
  most_workers_ = !chaos.enabled            ? SIZE_MAX
                  : chaos.max_workers > 0   ? static_cast<std::size_t>(chaos.max_workers)
                                            : 2 * static_cast<std::size_t>(workers_started);
  for (std::size_t i = 0; i < scenario.events.size(); ++i)
    steps_.push_back({scenario.events[i].at_s, i, false});
}

std::optional<double> ScenarioPlayer::next_at() const {
  if (next_ >= steps_.size()) return std::nullopt;
  return steps_[next_].t;
}

void ScenarioPlayer::play_due(double t, FleetControl& fleet, std::vector<FaultEvent>& events) {
  while (next_ < steps_.size() && steps_[next_].t <= t) {
    const Step step = steps_[next_++];
    step.second_half ? end(step, t, fleet, events) : play(step, t, fleet, events);
  }
}

// The second half of a kill-broker or crash-worker with `for`: the fault ends by itself.
void ScenarioPlayer::end(const Step& step, double t, FleetControl& fleet, std::vector<FaultEvent>& events) {
  const ScenarioEvent& e = scenario_.events[step.event];
  auto& fault = events[static_cast<std::size_t>(event_index_[step.event])];
  if (!fault.failover) fault.end_t = t;  // a failover ended when the other broker took over
  if (e.action == Action::KillBroker) {
    const std::string& name = crashed_[step.event];
    fleet.start_broker(name);
    fault.detail += fault.broker.empty() ? fmt::format("; a new {} started at {:.2f} s", name, t)
                                         : fmt::format("; {} started again at {:.2f} s", name, t);
  } else {  // crash-worker: a new worker takes the crashed one's place
    const std::string id = fleet.start_worker(crashed_[step.event]);
    fault.detail += fmt::format("; {} replaced it at {:.2f} s", id, t);
  }
  fleet.announce(fault.kind + " (end)", fault.detail, t);
}

void ScenarioPlayer::play(const Step& step, double t, FleetControl& fleet, std::vector<FaultEvent>& events) {
  const ScenarioEvent& e = scenario_.events[step.event];
  FaultEvent fault{t, std::string(action_name(e.action)), "", -1, -1, -1, "", false, -1};
  bool second_half = false;
  const auto ms = [](double s) { return std::chrono::milliseconds(std::lround(s * 1000)); };
  switch (e.action) {
    case Action::KillBroker:
      kill_broker(e, fault, fleet, step.event);
      second_half = e.for_s > 0 && !crashed_[step.event].empty();
      break;
    case Action::RestartBroker: {
      const std::string name = choose_broker(e.broker, false, fleet);
      if (fleet.brokers().size() > 1) fault.broker = name;
      if (name.empty() || fleet.broker_running(name)) {
        fault.detail = name.empty() ? "no broker was down" : fmt::format("the {} was already up", name);
        break;
      }
      fleet.start_broker(name);
      fault.detail = fmt::format("a new {}", name);
      fault.end_t = t;
      for (auto& earlier : events)  // the kill it ends (a failover ended when the other took over)
        if (earlier.kind == action_name(Action::KillBroker) && earlier.end_t < 0 &&
            earlier.broker == fault.broker && !earlier.failover)
          earlier.end_t = t;
      break;
    }
    case Action::CrashWorker:
    case Action::FreezeWorker: {
      const std::string id = choose_worker(e.worker, fleet);
      if (id.empty()) {
        fault.detail = e.worker.empty() ? "no worker running" : e.worker + " is not running";
      } else if (e.action == Action::CrashWorker) {
        fault.detail = id;
        crashed_[step.event] = id;
        fleet.crash_worker(id);
        second_half = e.for_s > 0;
      } else {
        fleet.freeze_worker(id, ms(e.for_s));
        fault.detail = fmt::format("{} for {:.2f} s", id, e.for_s);
        fault.end_t = t + e.for_s;
      }
      break;
    }
    case Action::Partition:
    case Action::Drop:
    case Action::Delay:
      fault.detail = link_fault(e, fleet);
      fault.end_t = t + e.for_s;
      break;
    case Action::AddWorkers:
      fault.detail = add_workers(e.count, fleet);
      break;
    case Action::RemoveWorkers:
      fault.detail = remove_workers(e.count, fleet);
      break;
    case Action::SetClients:
      fault.detail = fleet.set_clients(static_cast<std::size_t>(e.count), t);
      break;
    case Action::Mark:
      fault.detail = "a new phase of the report begins";
      break;
    case Action::CutBroker:
      cut_broker(e, fault, fleet, t);
      break;
  }
  event_index_[step.event] = static_cast<int>(events.size());
  events.push_back(fault);
  fleet.announce(fault.kind, fault.detail, t);
  if (second_half) {  // keep the steps in time order
    const Step next{step.t + e.for_s, step.event, true};
    auto at = std::upper_bound(steps_.begin() + static_cast<long>(next_), steps_.end(), next,
                               [](const Step& a, const Step& b) { return a.t < b.t; });
    steps_.insert(at, next);
  }
}

// Partition, drop or delay: a rule for the link actor; says what it does.
std::string ScenarioPlayer::link_fault(const ScenarioEvent& e, FleetControl& fleet) {
  const LinkMode mode = e.action == Action::Partition ? LinkMode::Partition
                        : e.action == Action::Drop    ? LinkMode::Drop
                                                      : LinkMode::Delay;
  const double value = mode == LinkMode::Drop ? e.fraction : mode == LinkMode::Delay ? e.delay_ms : 0;
  // The nodes were checked when the scenario was settled (check_nodes): they parse.
  fleet.link_rule({parse_nodes(e.nodes).value_or(NodeSet{}), mode, value,
                   std::chrono::milliseconds(std::lround(e.for_s * 1000))});
  if (mode == LinkMode::Partition) return fmt::format("{} for {:.2f} s", e.nodes, e.for_s);
  if (mode == LinkMode::Drop) return fmt::format("{:.0f}% of {} for {:.2f} s", 100 * e.fraction, e.nodes, e.for_s);
  return fmt::format("{} by {:.0f} ms for {:.2f} s", e.nodes, e.delay_ms, e.for_s);
}

std::string ScenarioPlayer::choose_broker(const std::string& target, bool to_kill, const FleetControl& fleet) {
  const auto names = fleet.brokers();
  if (names.size() == 1) return names.front();
  if (!target.empty() && target != "active") return target;
  for (const auto& name : names)
    if (to_kill ? fleet.broker_state(name) == "ACTIVE" : !fleet.broker_running(name)) return name;
  return "";
}

// Kills the broker the event names (crashed_ keeps it for the restart); with a pair, the ACTIVE
// one's kill is a failover.
void ScenarioPlayer::kill_broker(const ScenarioEvent& e, FaultEvent& fault, FleetControl& fleet,
                                 std::size_t event) {
  const std::string name = choose_broker(e.broker, true, fleet);
  const bool pair = fleet.brokers().size() > 1;
  if (pair) fault.broker = name;
  if (name.empty() || !fleet.broker_running(name)) {
    fault.detail = name.empty() ? "no broker was ACTIVE" : fmt::format("the {} was already down", name);
    return;
  }
  const std::string state = fleet.broker_state(name);
  fleet.kill_broker(name);
  crashed_[event] = name;
  fault.failover = pair && state == "ACTIVE";
  fault.detail = pair ? fmt::format("{} ({}) killed", name, state) : fmt::format("{} killed", name);
}

// Cuts a broker of the pair off (settle_scenario allows cut-broker only with a pair); the ACTIVE
// one's cut is a failover, any other's ends with the heal.
void ScenarioPlayer::cut_broker(const ScenarioEvent& e, FaultEvent& fault, FleetControl& fleet, double t) {
  const std::string name = choose_broker(e.broker, true, fleet);
  fault.broker = name;
  if (name.empty() || !fleet.broker_running(name)) {
    fault.detail = name.empty() ? "no broker was ACTIVE" : fmt::format("the {} was down", name);
    return;
  }
  const std::string state = fleet.broker_state(name);
  fleet.cut_broker(name, std::chrono::milliseconds(std::lround(e.for_s * 1000)));
  fault.failover = state == "ACTIVE";
  fault.detail = fmt::format("{} ({}) cut off from its clients, workers and peer for {:.2f} s", name, state, e.for_s);
  if (!fault.failover) fault.end_t = t + e.for_s;
}

std::string ScenarioPlayer::choose_worker(const std::string& id, const FleetControl& fleet) {
  std::vector<std::string> running = fleet.running_workers();
  if (!id.empty()) return std::find(running.begin(), running.end(), id) != running.end() ? id : "";
  if (running.empty()) return "";
  return running[std::uniform_int_distribution<std::size_t>(0, running.size() - 1)(random_)];
}

std::string ScenarioPlayer::add_workers(int count, FleetControl& fleet) {
  std::vector<std::string> ids;
  for (int k = 0; k < count && fleet.running_workers().size() < most_workers_; ++k)
    ids.push_back(fleet.start_worker());
  if (ids.empty()) return fmt::format("already {} workers: none added", fleet.running_workers().size());
  return fmt::format("{}", fmt::join(ids, ", "));
}

// The newest workers retire, down to one.
std::string ScenarioPlayer::remove_workers(int count, FleetControl& fleet) {
  std::vector<std::string> ids;
  for (int k = 0; k < count; ++k) {
    const auto running = fleet.running_workers();
    if (running.size() <= 1) break;
    ids.push_back(running.back());
    fleet.retire_worker(running.back());
  }
  if (ids.empty()) return "only one worker left: none removed";
  return fmt::format("{}", fmt::join(ids, ", "));
}

}  // namespace zyolo
