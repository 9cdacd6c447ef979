// Scenario files: reading, checking, and drawing chaos from a seed. See scenario.hpp.
#include "src/fleet/scenario.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <toml++/toml.h>

#include "generated/scenarios.hpp"
#include "src/wire/pipe.hpp"

namespace zyolo {
namespace {

// Every action by its name, in the enum's order.
constexpr std::array<std::pair<Action, std::string_view>, 12> kActions = {{
    {Action::KillBroker, "kill-broker"},     {Action::RestartBroker, "restart-broker"},
    {Action::CrashWorker, "crash-worker"},   {Action::FreezeWorker, "freeze-worker"},
    {Action::Partition, "partition"},        {Action::Drop, "drop"},
    {Action::Delay, "delay"},                {Action::AddWorkers, "add-workers"},
    {Action::RemoveWorkers, "remove-workers"}, {Action::SetClients, "set-clients"},
    {Action::Mark, "mark"},                  {Action::CutBroker, "cut-broker"},
}};

constexpr bool actions_in_order() {
  for (std::size_t i = 0; i < kActions.size(); ++i)
    if (static_cast<std::size_t>(kActions[i].first) != i) return false;
  return kActions.size() == static_cast<std::size_t>(Action::CutBroker) + 1;
}
static_assert(actions_in_order(), "kActions names every Action once, in the enum's order");

// The actions chaos draws from when its `kinds` is empty: every fault and change but an explicit
// restart (a kill in chaos always comes back by itself).
const std::vector<Action> kChaosKinds = {
    Action::KillBroker, Action::CrashWorker, Action::FreezeWorker, Action::Partition, Action::Drop,
    Action::Delay,      Action::AddWorkers,  Action::RemoveWorkers, Action::SetClients};

// What a kinds list may name besides: a pair's cut-off (with --ha; never drawn by default, so
// that chaos without a kinds list plays the same faults as before).
const std::vector<Action> kChaosKindsAlso = {Action::CutBroker};

std::string action_names(const std::vector<Action>& actions) {
  std::vector<std::string_view> names;
  for (Action a : actions) names.push_back(action_name(a));
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string all_action_names() {
  std::vector<Action> all;
  for (const auto& [a, name] : kActions) all.push_back(a);
  return action_names(all);
}

// A number (integer or float) of `t` at `key`, if present; throws if it is not a number.
std::optional<double> number(const toml::table& t, std::string_view key, const std::string& where) {
  const auto* n = t.get(key);
  if (!n) return std::nullopt;
  if (!n->is_integer() && !n->is_floating_point())
    throw ConfigError(fmt::format("{}: '{}' must be a number", where, key));
  return n->value<double>();
}

std::optional<std::string> string_at(const toml::table& t, std::string_view key, const std::string& where) {
  const auto* n = t.get(key);
  if (!n) return std::nullopt;
  if (!n->is_string()) throw ConfigError(fmt::format("{}: '{}' must be a string", where, key));
  return n->value<std::string>();
}

ScenarioEvent read_event(const toml::table& t, const std::string& where) {
  static const std::vector<std::string_view> keys = {"at",       "do",  "for",  "worker", "nodes",
                                                     "fraction", "ms",  "count", "broker"};
  for (const auto& [k, v] : t)
    if (std::find(keys.begin(), keys.end(), k.str()) == keys.end())
      throw ConfigError(fmt::format("{}: unknown key '{}' (known: at, do, for, worker, nodes, "
                                    "fraction, ms, count, broker)", where, k.str()));
  ScenarioEvent e;
  auto at = number(t, "at", where);
  auto action = string_at(t, "do", where);
  if (!at || !action) throw ConfigError(fmt::format("{}: every event needs 'at' and 'do'", where));
  e.at_s = *at;
  const auto parsed = parse_action(*action);
  if (!parsed)
    throw ConfigError(fmt::format("{}: unknown action '{}' (known: {})", where, *action,
                                  all_action_names()));
  e.action = *parsed;
  e.for_s = number(t, "for", where).value_or(0);
  e.worker = string_at(t, "worker", where).value_or("");
  e.broker = string_at(t, "broker", where).value_or("");
  e.nodes = string_at(t, "nodes", where).value_or("workers");
  e.fraction = number(t, "fraction", where).value_or(0);
  e.delay_ms = number(t, "ms", where).value_or(0);
  const double count = number(t, "count", where).value_or(1);
  if (count != std::floor(count) || count < 1 || count > 10000)
    throw ConfigError(fmt::format("{}: 'count' must be a whole number from 1 to 10000", where));
  e.count = static_cast<int>(count);
  return e;
}

ChaosSettings read_chaos(const toml::table& t, const std::string& where) {
  static const std::vector<std::string_view> keys = {"start", "end", "mean_gap", "max_outage",
                                                     "max_workers", "kinds"};
  for (const auto& [k, v] : t)
    if (std::find(keys.begin(), keys.end(), k.str()) == keys.end())
      throw ConfigError(fmt::format("{}: unknown key '{}' (known: start, end, mean_gap, "
                                    "max_outage, max_workers, kinds)", where, k.str()));
  ChaosSettings c;
  c.enabled = true;
  c.start_s = number(t, "start", where).value_or(c.start_s);
  c.end_s = number(t, "end", where).value_or(c.end_s);
  c.mean_gap_s = number(t, "mean_gap", where).value_or(c.mean_gap_s);
  c.max_outage_s = number(t, "max_outage", where).value_or(c.max_outage_s);
  c.max_workers = static_cast<int>(number(t, "max_workers", where).value_or(0));
  if (const auto* kinds = t.get("kinds")) {
    const auto* array = kinds->as_array();
    if (!array) throw ConfigError(fmt::format("{}: 'kinds' must be an array of actions", where));
    for (const auto& k : *array) {
      auto name = k.value<std::string>();
      const auto a = name ? parse_action(*name) : std::nullopt;
      if (!a || (std::find(kChaosKinds.begin(), kChaosKinds.end(), *a) == kChaosKinds.end() &&
                 std::find(kChaosKindsAlso.begin(), kChaosKindsAlso.end(), *a) == kChaosKindsAlso.end()))
        throw ConfigError(fmt::format("{}: 'kinds' holds '{}', which is not a chaos action (one of "
                                      "{}, {})", where, name.value_or("?"), action_names(kChaosKinds),
                                      action_names(kChaosKindsAlso)));
      c.kinds.push_back(*a);
    }
  }
  if (c.mean_gap_s < 0.1 || c.max_outage_s < 0.1 || c.start_s < 0)
    throw ConfigError(fmt::format("{}: mean_gap and max_outage must be at least 0.1 s, start >= 0",
                                  where));
  return c;
}

// Draws the chaos events of a run from the seed.
std::vector<ScenarioEvent> draw_chaos(const ChaosSettings& c, const Config& config, uint64_t seed) {
  std::mt19937_64 random(seed);
  auto uniform = [&](double lo, double hi) {
    return lo + (hi - lo) * std::uniform_real_distribution<double>(0, 1)(random);
  };
  auto pick = [&](int n) { return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(random)); };
  const auto& kinds = c.kinds.empty() ? kChaosKinds : c.kinds;
  const double end = c.end_s > 0 ? c.end_s : config.run.duration_s - 4;
  const int workers = config.run.workers;
  std::vector<ScenarioEvent> events;
  double t = c.start_s;
  while (true) {
    t += std::max(0.3, -c.mean_gap_s * std::log(1 - uniform(0, 0.999)));
    if (t >= end) break;
    ScenarioEvent e;
    e.at_s = std::round(t * 1000) / 1000;
    e.action = kinds[static_cast<std::size_t>(pick(static_cast<int>(kinds.size())))];
    const double outage = uniform(0.2, c.max_outage_s);
    if (e.action == Action::KillBroker || e.action == Action::CutBroker) {
      e.for_s = outage;
    } else if (e.action == Action::CrashWorker) {
      e.for_s = uniform(0.5, 2);  // then a new worker takes its place
    } else if (e.action == Action::FreezeWorker) {
      e.for_s = uniform(0.5, 4);  // longer than the broker's expiry, sometimes
    } else if (is_link_fault(e.action)) {
      const std::string choices[] = {"workers", "clients", "all",
                                     fmt::format("w{}", pick(workers)),
                                     fmt::format("c{}", pick(config.run.clients))};
      e.nodes = choices[pick(5)];
      e.for_s = e.action == Action::Partition ? outage : uniform(1, 3);
      e.fraction = uniform(0.1, 0.5);
      e.delay_ms = std::round(uniform(5, 200));
    } else if (e.action == Action::SetClients) {
      e.count = 1 + pick(2 * config.run.clients);
    }
    e.for_s = std::round(e.for_s * 1000) / 1000;
    events.push_back(e);
  }
  return events;
}

// A node id: a prefix letter (c: client, w: worker) and a number, e.g. "w1".
bool node_id(std::string_view id, std::string_view prefixes) {
  return id.size() >= 2 && prefixes.find(id[0]) != std::string_view::npos &&
         std::all_of(id.begin() + 1, id.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The nodes of a link fault: what the link rule will carry (parse_nodes, src/wire/pipe.hpp).
void check_nodes(const std::string& nodes, const std::string& where) {
  if (!parse_nodes(nodes))
    throw ConfigError(fmt::format("{}: nodes must be all, clients, workers or ids like \"w0,c1\", "
                                  "not '{}'", where, nodes));
}

void check_event(const ScenarioEvent& e, const Config& config, const std::string& where) {
  if (e.at_s < 0 || e.at_s >= config.run.duration_s)
    throw ConfigError(fmt::format("{}: at = {} is outside the run (0 to {} s)", where, e.at_s,
                                  config.run.duration_s));
  if (e.for_s < 0) throw ConfigError(fmt::format("{}: 'for' must not be negative", where));
  const bool timed = e.action == Action::FreezeWorker || e.action == Action::CutBroker || is_link_fault(e.action);
  if (timed && e.for_s <= 0)
    throw ConfigError(fmt::format("{}: {} needs 'for' (seconds)", where, action_name(e.action)));
  if (!e.worker.empty() && !node_id(e.worker, "w"))
    throw ConfigError(fmt::format("{}: worker must be an id like \"w1\", not '{}'", where, e.worker));
  if (is_link_fault(e.action)) check_nodes(e.nodes, where);
  if (!e.broker.empty()) {
    if (e.action != Action::KillBroker && e.action != Action::RestartBroker && e.action != Action::CutBroker)
      throw ConfigError(fmt::format("{}: 'broker' is for kill-broker, restart-broker and cut-broker", where));
    if (e.broker != "active" && e.broker != "primary" && e.broker != "backup")
      throw ConfigError(fmt::format("{}: broker must be active, primary or backup, not '{}'", where, e.broker));
    if (!config.run.ha)
      throw ConfigError(fmt::format("{}: broker = \"{}\" needs a broker pair (zyolo run --ha, run.ha)",
                                    where, e.broker));
  }
  if (e.action == Action::CutBroker && !config.run.ha)
    throw ConfigError(fmt::format("{}: cut-broker needs a broker pair (zyolo run --ha, run.ha); one "
                                  "broker is cut off by a partition of all nodes", where));
  if (is_link_fault(e.action) && e.nodes == "peer" && !config.run.ha)
    throw ConfigError(fmt::format("{}: nodes = \"peer\" (the pair's states) needs a broker pair "
                                  "(zyolo run --ha, run.ha)", where));
  if (e.action == Action::Drop && !(e.fraction > 0 && e.fraction <= 1))
    throw ConfigError(fmt::format("{}: drop needs a fraction in (0, 1]", where));
  if (e.action == Action::Delay && !(e.delay_ms > 0 && e.delay_ms <= 60'000))
    throw ConfigError(fmt::format("{}: delay needs ms in (0, 60000]", where));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(fmt::format("--scenario {}: cannot read the file", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string_view action_name(Action a) { return kActions[static_cast<std::size_t>(a)].second; }

std::optional<Action> parse_action(std::string_view name) {
  for (const auto& [a, n] : kActions)
    if (n == name) return a;
  return std::nullopt;
}

bool is_link_fault(Action a) { return a == Action::Partition || a == Action::Drop || a == Action::Delay; }

// The actions the link plays: its faults, and a pair's cut-off.
static bool needs_link(Action a) { return is_link_fault(a) || a == Action::CutBroker; }

bool Scenario::uses_link() const {
  if (chaos.enabled) {
    const auto& kinds = chaos.kinds.empty() ? kChaosKinds : chaos.kinds;
    if (std::any_of(kinds.begin(), kinds.end(), needs_link)) return true;
  }
  return std::any_of(events.begin(), events.end(), [](const auto& e) { return needs_link(e.action); });
}

std::vector<std::pair<std::string, std::string>> builtin_scenarios() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, text] : kBuiltinScenarios) {
    std::string description;
    try {
      description = toml::parse(text)["description"].value_or(std::string());
    } catch (const toml::parse_error&) {
      description = "(does not parse)";
    }
    out.emplace_back(std::string(name), description);
  }
  return out;
}

Scenario load_scenario(const std::string& name_or_file, Config& config) {
  Scenario s;
  std::string text, source;
  const bool is_file = name_or_file.find('/') != std::string::npos || name_or_file.ends_with(".toml");
  if (is_file) {
    text = read_file(name_or_file);
    source = name_or_file;
    s.name = name_or_file.substr(name_or_file.find_last_of('/') + 1);
    if (s.name.ends_with(".toml")) s.name.resize(s.name.size() - 5);
  } else {
    for (const auto& [name, body] : kBuiltinScenarios)
      if (name == name_or_file) text = body;
    if (text.empty()) {
      std::vector<std::string> names;
      for (const auto& [name, body] : kBuiltinScenarios) names.emplace_back(name);
      throw ConfigError(fmt::format("--scenario {}: no such scenario (built in: {}; or give a "
                                    "path to a .toml file)", name_or_file, fmt::join(names, ", ")));
    }
    source = fmt::format("config/scenarios/{}.toml (built in)", name_or_file);
    s.name = name_or_file;
  }
  apply_toml(config, text, source, {"description", "seed", "events", "chaos"});
  const toml::table table = toml::parse(text, source);  // it parsed above: this cannot throw
  if (auto d = string_at(table, "description", source)) s.description = *d;
  if (const auto* seed = table.get("seed")) {
    if (!seed->is_integer() || *seed->value<int64_t>() < 0)
      throw ConfigError(fmt::format("{}: 'seed' must be a whole number >= 0", source));
    s.seed = static_cast<uint64_t>(*seed->value<int64_t>());
  }
  if (const auto* events = table.get("events")) {
    const auto* array = events->as_array();
    if (!array || !array->is_array_of_tables())
      throw ConfigError(fmt::format("{}: 'events' must be an array of tables ([[events]])", source));
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* event = array->get(i)->as_table();
      s.events.push_back(read_event(*event, fmt::format("{}:{}: events[{}]", source,
                                                        event->source().begin.line, i)));
    }
  }
  if (const auto* chaos = table.get("chaos")) {
    if (!chaos->is_table()) throw ConfigError(fmt::format("{}: 'chaos' must be a table", source));
    s.chaos = read_chaos(*chaos->as_table(), source + ": chaos");
  }
  return s;
}

void settle_scenario(Scenario& s, const Config& config, std::optional<uint64_t> seed) {
  if (seed) s.seed = *seed;
  if (config.run.duration_s <= 0)
    throw ConfigError(fmt::format("scenario {}: a scenario runs for a time; give --duration "
                                  "(or run.duration_s), not --requests", s.name));
  if (config.run.broker == "proxy" && s.uses_link())
    throw ConfigError(fmt::format(
        "scenario {}: partition, drop and delay need run.broker = mdp (--broker mdp): the link "
        "that plays them (threads/link.cpp) sees a node only once it speaks, and the REP workers "
        "of --broker proxy never speak first{}",
        s.name, s.chaos.enabled ? " (a [chaos] table needs a kinds list without them)" : ""));
  if (s.chaos.enabled) {
    auto drawn = draw_chaos(s.chaos, config, s.seed);
    s.events.insert(s.events.end(), drawn.begin(), drawn.end());
  }
  for (std::size_t i = 0; i < s.events.size(); ++i)
    check_event(s.events[i], config, fmt::format("scenario {}: events[{}] ({})", s.name, i,
                                                 action_name(s.events[i].action)));
  std::stable_sort(s.events.begin(), s.events.end(),
                   [](const auto& a, const auto& b) { return a.at_s < b.at_s; });
}

// Not client.min_timeout_ms: the adaptive timeout's floor guards against the machine's own
// hiccups, which a shorter time line does not shorten (and a sanitizer lengthens).
void scale_time_line(Config& config, Scenario* scenario) {
  const double k = config.run.time_scale;
  if (k == 1.0) return;
  auto ms = [k](int& v) {
    if (v > 0) v = std::max(1, static_cast<int>(std::lround(v * k)));
  };
  config.run.duration_s *= k;
  for (int* v : {&config.run.report_interval_ms, &config.broker.heartbeat_ms, &config.ha.heartbeat_ms,
                 &config.client.timeout_ms, &config.client.deadline_ms,
                 &config.worker.reconnect_initial_ms, &config.worker.reconnect_max_ms,
                 &config.sockets.reconnect_ivl_ms, &config.sockets.reconnect_ivl_max_ms,
                 &config.sockets.heartbeat_ivl_ms, &config.sockets.heartbeat_timeout_ms,
                 &config.autoscale.interval_ms, &config.autoscale.client_window_ms,
                 &config.autoscale.up_delay_ms, &config.autoscale.down_delay_ms})
    ms(*v);
  if (!scenario) return;
  for (auto& e : scenario->events) {
    e.at_s *= k;
    e.for_s *= k;
    e.delay_ms *= k;
  }
}

}  // namespace zyolo
