// Configuration loading: every key is a setting of the table in settings.cpp (its type and range),
// so that an unknown key, a wrong type or an out-of-range value is reported by name.
#include "src/config/config.hpp"

#include <fmt/format.h>

#include <charconv>

#include <toml++/toml.h>
#include <utility>
#include <vector>

#include "generated/default_config.hpp"
#include "src/config/settings.hpp"

namespace zyolo {
namespace {

// Reads [[pools]]: an array of tables with service, model and workers.
std::vector<PoolConfig> read_pools(const toml::node& node, const std::string& source) {
  const auto* array = node.as_array();
  if (!array || !array->is_array_of_tables())
    throw ConfigError(fmt::format("{}: 'pools' must be an array of tables ([[pools]])", source));
  std::vector<PoolConfig> pools;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const auto& t = *array->get(i)->as_table();
    const std::string where = fmt::format("{}: pools[{}]", source, i);
    PoolConfig pool;
    for (const auto& [k, v] : t) {
      const std::string_view key = k.str();
      if (key == "service" && v.is_string()) {
        pool.service = *v.value<std::string>();
      } else if (key == "model" && v.is_string()) {
        pool.model = *v.value<std::string>();
      } else if (key == "workers" && v.is_integer()) {
        pool.workers = static_cast<int>(*v.value<int64_t>());
        if (pool.workers < 1 || pool.workers > kMaxWorkers)
          throw ConfigError(fmt::format("{}.workers must be between 1 and {}", where, kMaxWorkers));
      } else if (key == "service" || key == "model" || key == "workers") {
        throw ConfigError(fmt::format("{}.{} has the wrong type", where, key));
      } else {
        throw ConfigError(fmt::format("{}: unknown key '{}'", where, key));
      }
    }
    if (pool.service.empty() || pool.model.empty())
      throw ConfigError(fmt::format("{} needs a service and a model", where));
    pools.push_back(pool);
  }
  return pools;
}

// Stores every leaf of `table` (dotted prefix `prefix`) into `config`; throws on the first fault.
void apply_table(Config& config, const toml::table& table, const std::string& prefix,
                 const std::string& source) {
  for (const auto& [k, node] : table) {
    std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (name == "pools") {
      config.pools = read_pools(node, source);
      continue;
    }
    if (const auto* sub = node.as_table()) {
      apply_table(config, *sub, name, source);
      continue;
    }
    const Setting* setting = find_setting(name);
    if (!setting) throw ConfigError(fmt::format("{}: unknown key '{}'", source, name));
    if (std::string why = store_setting(*setting, config, node); !why.empty())
      throw ConfigError(fmt::format("{}: key '{}' {}", source, name, why));
  }
}

void settle_run_length(Config& config, const toml::table& table) {
  settle_run_length(config, static_cast<bool>(table.at_path("run.requests")),
                    static_cast<bool>(table.at_path("run.duration_s")));
}

// run.broker, and what the shared queue cannot do: it knows no services, measures no demand.
void validate_broker(const Config& config) {
  if (config.run.broker != "proxy") return;
  if (config.autoscale.enabled)
    throw ConfigError("autoscale.enabled (--autoscale) needs run.broker = mdp: the controller "
                      "reads the demand the MDP broker measures, and the proxy measures none");
  if (config.pools.size() > 1)
    throw ConfigError("several [[pools]] need run.broker = mdp: the proxy does not route by "
                      "service, it hands each request to the next worker of any pool");
}

}  // namespace

void settle_run_length(Config& config, bool requests, bool duration) {
  if (requests && !duration) config.run.duration_s = 0;
  if (duration && !requests) config.run.requests = 0;
}

std::vector<PoolConfig> Config::pools_or_default() const {
  if (!pools.empty()) return pools;
  return {{run.service, worker.model, run.workers}};
}

std::string Config::frontend() const {
  if (run.transport == "ipc") return endpoints.ipc_frontend;
  if (run.transport == "tcp") return endpoints.tcp_frontend;
  return endpoints.inproc_frontend;
}

std::string Config::backend() const {
  if (run.transport == "ipc") return endpoints.ipc_backend;
  if (run.transport == "tcp") return endpoints.tcp_backend;
  return endpoints.inproc_backend;
}

std::string Config::control() const {
  if (run.transport == "ipc") return endpoints.ipc_control;
  if (run.transport == "tcp") return endpoints.tcp_control;
  return endpoints.inproc_control;
}

std::vector<std::string> Config::frontends() const { return split_endpoints(frontend()); }
std::vector<std::string> Config::backends() const { return split_endpoints(backend()); }

std::vector<std::string> split_endpoints(std::string_view list) {
  std::vector<std::string> items;
  for (;;) {
    const auto comma = list.find(',');
    items.emplace_back(list.substr(0, comma));
    if (comma == std::string_view::npos) return items;
    list.remove_prefix(comma + 1);
  }
}

void check_endpoint_list(std::string_view what, std::string_view list) {
  const auto items = split_endpoints(list);
  if (items.size() == 1) return;  // one endpoint: as before, whatever it is
  auto scheme = [](const std::string& e) { return e.substr(0, e.find("://")); };
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (items[i].empty())
      throw ConfigError(fmt::format("{} '{}': item {} of the list is empty", what, list, i + 1));
    if (scheme(items[i]) != scheme(items[0]))
      throw ConfigError(fmt::format("{} '{}': a list must use one transport, not {} and {}", what,
                                    list, items[0], items[i]));
    for (std::size_t j = 0; j < i; ++j)
      if (items[j] == items[i])
        throw ConfigError(fmt::format("{} '{}': {} is in the list twice", what, list, items[i]));
  }
}

void require_single_endpoints(const Config& config, std::string_view who) {
  for (const auto& [key, value] : {std::pair{"frontend", config.frontend()}, {"backend", config.backend()}})
    if (split_endpoints(value).size() > 1)
      throw ConfigError(fmt::format(
          "endpoints.{}_{} '{}': {} binds one endpoint; a list is for clients and workers",
          config.run.transport, key, value, who));
}

Config default_config() {
  Config config;
  apply_toml(config, kDefaultConfigToml, "config/default.toml (built in)");
  return config;
}

void apply_toml(Config& config, std::string_view toml_text, const std::string& source,
                const std::vector<std::string_view>& skip) {
  toml::table table;
  try {
    table = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw ConfigError(fmt::format("{}:{}:{}: {}", source, at.line, at.column, e.description()));
  }
  for (const auto name : skip) table.erase(name);
  apply_table(config, table, "", source);
  settle_run_length(config, table);
}

void apply_toml_file(Config& config, const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    if (at.line == 0) throw ConfigError(fmt::format("{}: {}", path, e.description()));
    throw ConfigError(fmt::format("{}:{}:{}: {}", path, at.line, at.column, e.description()));
  }
  apply_table(config, table, "", path);
  settle_run_length(config, table);
}

void validate_worker(const Config& config) {
  if (config.worker.model.empty()) throw ConfigError("worker.model (--model) must not be empty");
  if (const std::string why = check_setting(*find_setting("worker.family"), config); !why.empty())
    throw ConfigError("worker.family (--family) " + why);
  if (config.worker.input_size % 32 != 0)
    throw ConfigError("worker.input_size (--input-size) must be 0 or a multiple of 32");
  if (config.worker.reconnect_max_ms < config.worker.reconnect_initial_ms)
    throw ConfigError("worker.reconnect_max_ms must be >= worker.reconnect_initial_ms");
}

namespace {

// Comma-separated bounds in seconds, positive and ascending: "0.001,0.01,0.1".
std::vector<double> parse_bounds(const std::string& text, const char* key) {
  std::vector<double> bounds;
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string item(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    std::erase_if(item, [](char c) { return c == ' '; });
    double v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size() || !(v > 0) || v > 1e6)
      throw ConfigError(fmt::format("{}: '{}' is not a bound in seconds (a number > 0)", key, item));
    if (!bounds.empty() && v <= bounds.back())
      throw ConfigError(fmt::format("{}: bounds must be ascending ({} after {})", key, v, bounds.back()));
    bounds.push_back(v);
  }
  if (bounds.empty() || bounds.size() > 40)
    throw ConfigError(fmt::format("{}: give 1 to 40 bounds, comma-separated", key));
  return bounds;
}

// [metrics]: listen is HOST:PORT, with a port of 1..65535; the bounds parse.
void validate_metrics(MetricsConfig& m) {
  m.bounds = parse_bounds(m.buckets, "metrics.buckets");
  m.stage_bounds = parse_bounds(m.stage_buckets, "metrics.stage_buckets");
  if (m.listen.empty()) return;
  const auto colon = m.listen.rfind(':');
  const std::string_view port = colon == std::string::npos ? std::string_view() : std::string_view(m.listen).substr(colon + 1);
  int p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (colon == 0 || colon == std::string::npos || ec != std::errc() || end != port.data() + port.size() ||
      p < 1 || p > 65535 || m.listen.find("://") != std::string::npos)
    throw ConfigError(fmt::format(
        "metrics.listen (--metrics) '{}': give HOST:PORT, e.g. 127.0.0.1:9464 or *:9464 (port 1..65535)",
        m.listen));
}

// [ha]: a role needs both endpoints, distinct from each other and from the broker's own; the
// endpoints without a role are a mistake too (the pair would silently not be one).
void validate_ha(const Config& config) {
  const HaConfig& ha = config.ha;
  if (!ha.enabled()) {
    if (!ha.bind.empty() || !ha.peer.empty())
      throw ConfigError(
          "ha.bind (--ha-bind) and ha.peer (--ha-peer) need ha.role (--ha primary or --ha backup)");
    return;
  }
  if (ha.bind.empty())
    throw ConfigError(
        "ha.role (--ha) needs ha.bind (--ha-bind): where this broker publishes its state");
  if (ha.peer.empty())
    throw ConfigError(
        "ha.role (--ha) needs ha.peer (--ha-peer): where the other broker publishes its own");
  const std::pair<const char*, const std::string*> endpoints[] = {
      {"ha.bind (--ha-bind)", &ha.bind}, {"ha.peer (--ha-peer)", &ha.peer}};
  for (const auto& [key, endpoint] : endpoints)
    if (endpoint->find("://") == std::string::npos)
      throw ConfigError(
          fmt::format("{} '{}': give an endpoint, e.g. tcp://HOST:PORT", key, *endpoint));
  if (ha.peer == ha.bind)
    throw ConfigError(fmt::format(
        "ha.peer (--ha-peer) '{}' is this broker's own ha.bind (--ha-bind): the peer is the "
        "other broker's",
        ha.peer));
  for (const auto& own : {config.frontend(), config.backend(), config.control()})
    for (const auto& [key, endpoint] : endpoints)
      if (*endpoint == own)
        throw ConfigError(fmt::format(
            "{} '{}' is also one of this broker's frontend, backend or control endpoints", key,
            *endpoint));
  if (config.run.broker != "mdp")
    throw ConfigError("ha.role (--ha) needs run.broker = mdp: the proxy has no broker pair");
}

}  // namespace

void validate(Config& config) {
  if (config.run.transport.empty()) config.run.transport = ZYOLO_DEFAULT_TRANSPORT;
  // Each key's own range or choices (a Config may have been changed after it was loaded).
  for (const Setting& s : settings())
    if (const std::string why = check_setting(s, config); !why.empty())
      throw ConfigError(fmt::format("{}{} {}", s.key, s.flag.empty() ? "" : fmt::format(" ({})", s.flag), why));
  validate_broker(config);
  if (config.run.requests < 1 && config.run.duration_s <= 0)
    throw ConfigError("give a request count (--requests) or a duration (--duration)");
  if (config.run.service.empty() || config.run.service.size() > 255 ||
      config.run.service.starts_with("mmi."))
    throw ConfigError("run.service must be 1..255 bytes and must not start with 'mmi.'");
  validate_worker(config);
  if (config.client.deadline_ms < config.client.timeout_ms)
    throw ConfigError("client.deadline_ms must be >= client.timeout_ms");
  // A window no socket refuses: every outstanding request (and its answer) fits in the queues
  // with room to spare for retries and heartbeats (0 is ZeroMQ's "no limit").
  for (const int hwm : {config.sockets.sndhwm, config.sockets.rcvhwm}) {
    if (hwm > 0 && config.client.in_flight > hwm / 2)
      throw ConfigError(fmt::format(
          "client.in_flight (--in-flight, {}) must be at most half of sockets.sndhwm and "
          "sockets.rcvhwm ({} and {}), so that no socket refuses what the window sends",
          config.client.in_flight, config.sockets.sndhwm, config.sockets.rcvhwm));
    if (hwm > 0 && config.broker.worker_credit > hwm / 2)
      throw ConfigError(fmt::format(
          "broker.worker_credit (--worker-credit, {}) must be at most half of sockets.sndhwm and "
          "sockets.rcvhwm ({} and {}), so that no worker's queue refuses what its credit allows",
          config.broker.worker_credit, config.sockets.sndhwm, config.sockets.rcvhwm));
  }
  for (std::size_t i = 0; i < config.pools.size(); ++i) {
    const auto& service = config.pools[i].service;
    if (service.size() > 255 || service.starts_with("mmi."))
      throw ConfigError(fmt::format("pools[{}].service must be 1..255 bytes, not mmi.*", i));
    for (std::size_t j = 0; j < i; ++j)
      if (config.pools[j].service == service)
        throw ConfigError(fmt::format("pools[{}] and pools[{}] both serve '{}'", j, i, service));
  }
  if (config.frontend().empty() || config.backend().empty() || config.control().empty())
    throw ConfigError(fmt::format("endpoints.{0}_frontend, {0}_backend and {0}_control must be set",
                                  config.run.transport));
  for (const auto& [key, value] : {std::pair{"frontend", config.frontend()}, {"backend", config.backend()}})
    check_endpoint_list(fmt::format("endpoints.{}_{}", config.run.transport, key), value);
  if (split_endpoints(config.control()).size() > 1)
    throw ConfigError(fmt::format("endpoints.{}_control '{}' must be one endpoint, not a list",
                                  config.run.transport, config.control()));
  const auto& so = config.sockets;
  if (so.reconnect_ivl_max_ms != 0 && so.reconnect_ivl_max_ms < so.reconnect_ivl_ms)
    throw ConfigError("sockets.reconnect_ivl_max_ms must be 0 (no back-off) or >= sockets.reconnect_ivl_ms");
  if (so.heartbeat_timeout_ms != 0 && so.heartbeat_ivl_ms == 0)
    throw ConfigError("sockets.heartbeat_timeout_ms needs sockets.heartbeat_ivl_ms (ZMTP heartbeats are off)");
  if (config.autoscale.min_workers > config.autoscale.max_workers)
    throw ConfigError(fmt::format(
        "autoscale.min_workers (--min-workers, {}) must not exceed autoscale.max_workers "
        "(--max-workers, {})",
        config.autoscale.min_workers, config.autoscale.max_workers));
  validate_metrics(config.metrics);
  validate_ha(config);
}

}  // namespace zyolo
