// Configuration loading: a table of every known key, each with its type and range, so that an
// unknown key, a wrong type or an out-of-range value is reported by name.
#include "src/config/config.hpp"

#include <fmt/format.h>

#include <functional>
#include <limits>
#include <toml++/toml.h>
#include <vector>

#include "generated/default_config.hpp"

namespace zyolo {
namespace {

// One known key: its dotted name and how to store a TOML value into a Config.
struct Key {
  std::string_view name;
  // Returns an empty string on success, otherwise what is wrong with the value.
  std::function<std::string(Config&, const toml::node&)> store;
};

// A key holding a whole number in [lo, hi].
template <class T, class Get>
Key integer(std::string_view name, Get get, long lo, long hi) {
  return {name, [get, lo, hi](Config& c, const toml::node& n) -> std::string {
            auto v = n.value_exact<int64_t>();
            if (!v) return "must be a whole number";
            if (*v < lo || *v > hi) return fmt::format("must be between {} and {}", lo, hi);
            get(c) = static_cast<T>(*v);
            return {};
          }};
}

// A key holding a number (integer or float) in [lo, hi].
template <class Get>
Key number(std::string_view name, Get get, double lo, double hi) {
  return {name, [get, lo, hi](Config& c, const toml::node& n) -> std::string {
            auto v = n.value<double>();
            if (!v || !(n.is_integer() || n.is_floating_point())) return "must be a number";
            if (!(*v >= lo && *v <= hi)) return fmt::format("must be between {} and {}", lo, hi);
            get(c) = *v;
            return {};
          }};
}

// A key holding a string.
template <class Get>
Key text(std::string_view name, Get get) {
  return {name, [get](Config& c, const toml::node& n) -> std::string {
            auto v = n.value_exact<std::string>();
            if (!v) return "must be a string";
            get(c) = *v;
            return {};
          }};
}

// A key holding true or false.
template <class Get>
Key boolean(std::string_view name, Get get) {
  return {name, [get](Config& c, const toml::node& n) -> std::string {
            auto v = n.value_exact<bool>();
            if (!v) return "must be true or false";
            get(c) = *v;
            return {};
          }};
}

// Every key zyolo knows. Built on each call: nothing here is shared or mutable.
std::vector<Key> known_keys() {
  constexpr long kMaxInt = std::numeric_limits<int>::max();
  return {
      integer<int>("run.clients", [](Config& c) -> int& { return c.run.clients; }, 0, 100000),
      integer<int>("run.workers", [](Config& c) -> int& { return c.run.workers; }, 0, 10000),
      integer<long>("run.requests", [](Config& c) -> long& { return c.run.requests; }, 0,
                    1'000'000'000),
      number("run.duration_s", [](Config& c) -> double& { return c.run.duration_s; }, 0, 1e7),
      text("run.service", [](Config& c) -> std::string& { return c.run.service; }),
      text("run.transport", [](Config& c) -> std::string& { return c.run.transport; }),
      text("run.broker", [](Config& c) -> std::string& { return c.run.broker; }),
      integer<int>("run.report_interval_ms",
                   [](Config& c) -> int& { return c.run.report_interval_ms; }, 10, 3'600'000),
      integer<int>("run.progress_ms", [](Config& c) -> int& { return c.run.progress_ms; }, 10,
                   60'000),
      number("run.time_scale", [](Config& c) -> double& { return c.run.time_scale; }, 0.05, 20),
      text("endpoints.inproc_frontend",
           [](Config& c) -> std::string& { return c.endpoints.inproc_frontend; }),
      text("endpoints.inproc_backend",
           [](Config& c) -> std::string& { return c.endpoints.inproc_backend; }),
      text("endpoints.ipc_frontend",
           [](Config& c) -> std::string& { return c.endpoints.ipc_frontend; }),
      text("endpoints.ipc_backend",
           [](Config& c) -> std::string& { return c.endpoints.ipc_backend; }),
      text("endpoints.tcp_frontend",
           [](Config& c) -> std::string& { return c.endpoints.tcp_frontend; }),
      text("endpoints.tcp_backend",
           [](Config& c) -> std::string& { return c.endpoints.tcp_backend; }),
      text("endpoints.inproc_control",
           [](Config& c) -> std::string& { return c.endpoints.inproc_control; }),
      text("endpoints.ipc_control",
           [](Config& c) -> std::string& { return c.endpoints.ipc_control; }),
      text("endpoints.tcp_control",
           [](Config& c) -> std::string& { return c.endpoints.tcp_control; }),
      integer<int>("broker.heartbeat_ms", [](Config& c) -> int& { return c.broker.heartbeat_ms; },
                   10, 600'000),
      integer<int>("broker.liveness", [](Config& c) -> int& { return c.broker.liveness; }, 1, 100),
      integer<int>("broker.max_queue", [](Config& c) -> int& { return c.broker.max_queue; }, 1,
                   10'000'000),
      integer<long>("broker.max_message_bytes",
                    [](Config& c) -> long& { return c.broker.max_message_bytes; }, 1024,
                    kMaxInt),
      text("worker.model", [](Config& c) -> std::string& { return c.worker.model; }),
      text("worker.auto_models", [](Config& c) -> std::string& { return c.worker.auto_models; }),
      text("worker.family", [](Config& c) -> std::string& { return c.worker.family; }),
      number("worker.conf_threshold",
             [](Config& c) -> double& { return c.worker.conf_threshold; }, 0, 1),
      number("worker.nms_threshold", [](Config& c) -> double& { return c.worker.nms_threshold; },
             0.01, 1),
      integer<int>("worker.input_size", [](Config& c) -> int& { return c.worker.input_size; }, 0,
                   8192),
      text("worker.names", [](Config& c) -> std::string& { return c.worker.names; }),
      integer<int>("worker.cv_threads", [](Config& c) -> int& { return c.worker.cv_threads; }, 0,
                   256),
      number("worker.service_ms", [](Config& c) -> double& { return c.worker.service_ms; }, 0,
             3'600'000),
      integer<int>("worker.reconnect_initial_ms",
                   [](Config& c) -> int& { return c.worker.reconnect_initial_ms; }, 1, 600'000),
      integer<int>("worker.reconnect_max_ms",
                   [](Config& c) -> int& { return c.worker.reconnect_max_ms; }, 1, 3'600'000),
      integer<int>("client.timeout_ms", [](Config& c) -> int& { return c.client.timeout_ms; }, 1,
                   3'600'000),
      integer<int>("client.deadline_ms", [](Config& c) -> int& { return c.client.deadline_ms; }, 1,
                   86'400'000),
      integer<int>("client.payload_bytes",
                   [](Config& c) -> int& { return c.client.payload_bytes; }, 0, 64 << 20),
      boolean("autoscale.enabled", [](Config& c) -> bool& { return c.autoscale.enabled; }),
      integer<int>("autoscale.min_workers",
                   [](Config& c) -> int& { return c.autoscale.min_workers; }, 0, 10000),
      integer<int>("autoscale.max_workers",
                   [](Config& c) -> int& { return c.autoscale.max_workers; }, 1, 10000),
      number("autoscale.target_in_flight",
             [](Config& c) -> double& { return c.autoscale.target_in_flight; }, 0.01, 1000),
      integer<int>("autoscale.interval_ms",
                   [](Config& c) -> int& { return c.autoscale.interval_ms; }, 10, 600'000),
      integer<int>("autoscale.client_window_ms",
                   [](Config& c) -> int& { return c.autoscale.client_window_ms; }, 10, 3'600'000),
      integer<int>("autoscale.up_delay_ms",
                   [](Config& c) -> int& { return c.autoscale.up_delay_ms; }, 0, 3'600'000),
      integer<int>("autoscale.down_delay_ms",
                   [](Config& c) -> int& { return c.autoscale.down_delay_ms; }, 0, 3'600'000),
      integer<int>("autoscale.max_step_up",
                   [](Config& c) -> int& { return c.autoscale.max_step_up; }, 0, 10000),
      integer<int>("autoscale.max_step_down",
                   [](Config& c) -> int& { return c.autoscale.max_step_down; }, 0, 10000),
      integer<int>("sockets.linger_ms", [](Config& c) -> int& { return c.sockets.linger_ms; }, 0,
                   600'000),
      integer<int>("sockets.sndhwm", [](Config& c) -> int& { return c.sockets.sndhwm; }, 0,
                   10'000'000),
      integer<int>("sockets.rcvhwm", [](Config& c) -> int& { return c.sockets.rcvhwm; }, 0,
                   10'000'000),
      integer<int>("sockets.reconnect_ivl_ms",
                   [](Config& c) -> int& { return c.sockets.reconnect_ivl_ms; }, 1, 600'000),
      integer<int>("sockets.reconnect_ivl_max_ms",
                   [](Config& c) -> int& { return c.sockets.reconnect_ivl_max_ms; }, 0, 3'600'000),
      integer<int>("sockets.heartbeat_ivl_ms",
                   [](Config& c) -> int& { return c.sockets.heartbeat_ivl_ms; }, 0, 600'000),
      integer<int>("sockets.heartbeat_timeout_ms",
                   [](Config& c) -> int& { return c.sockets.heartbeat_timeout_ms; }, 0, 3'600'000),
      text("curve.key", [](Config& c) -> std::string& { return c.curve.key; }),
      text("curve.server_key", [](Config& c) -> std::string& { return c.curve.server_key; }),
      text("curve.allow", [](Config& c) -> std::string& { return c.curve.allow; }),
      text("client.images", [](Config& c) -> std::string& { return c.client.images; }),
      text("client.save_detections",
           [](Config& c) -> std::string& { return c.client.save_detections; }),
  };
}

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
        if (pool.workers < 1 || pool.workers > 10000)
          throw ConfigError(fmt::format("{}.workers must be between 1 and 10000", where));
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
                 const std::vector<Key>& keys, const std::string& source) {
  for (const auto& [k, node] : table) {
    std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (name == "pools") {
      config.pools = read_pools(node, source);
      continue;
    }
    if (const auto* sub = node.as_table()) {
      apply_table(config, *sub, name, keys, source);
      continue;
    }
    const Key* key = nullptr;
    for (const auto& candidate : keys)
      if (candidate.name == name) key = &candidate;
    if (!key) throw ConfigError(fmt::format("{}: unknown key '{}'", source, name));
    if (std::string why = key->store(config, node); !why.empty())
      throw ConfigError(fmt::format("{}: key '{}' {}", source, name, why));
  }
}

// Requests and duration are alternatives: a source that sets one switches the other off.
void settle_run_length(Config& config, const toml::table& table) {
  const bool requests = static_cast<bool>(table.at_path("run.requests"));
  const bool duration = static_cast<bool>(table.at_path("run.duration_s"));
  if (requests && !duration) config.run.duration_s = 0;
  if (duration && !requests) config.run.requests = 0;
}

// run.broker, and what the shared queue cannot do: it knows no services, measures no demand.
void validate_broker(const Config& config) {
  const auto& b = config.run.broker;
  if (b != "mdp" && b != "proxy")
    throw ConfigError(fmt::format("run.broker (--broker) must be mdp or proxy, not '{}'", b));
  if (b != "proxy") return;
  if (config.autoscale.enabled)
    throw ConfigError("autoscale.enabled (--autoscale) needs run.broker = mdp: the controller "
                      "reads the demand the MDP broker measures, and the proxy measures none");
  if (config.pools.size() > 1)
    throw ConfigError("several [[pools]] need run.broker = mdp: the proxy does not route by "
                      "service, it hands each request to the next worker of any pool");
}

}  // namespace

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
  apply_table(config, table, "", known_keys(), source);
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
  apply_table(config, table, "", known_keys(), path);
  settle_run_length(config, table);
}

void validate_worker(const Config& config) {
  if (config.worker.model.empty()) throw ConfigError("worker.model (--model) must not be empty");
  const auto& f = config.worker.family;
  if (f != "auto" && f != "yolov8" && f != "yolov5" && f != "yolox" && f != "darknet")
    throw ConfigError(fmt::format(
        "worker.family (--family) must be auto, yolov8, yolov5, yolox or darknet, not '{}'", f));
  if (config.worker.input_size % 32 != 0)
    throw ConfigError("worker.input_size (--input-size) must be 0 or a multiple of 32");
  if (config.worker.reconnect_max_ms < config.worker.reconnect_initial_ms)
    throw ConfigError("worker.reconnect_max_ms must be >= worker.reconnect_initial_ms");
}

void validate(Config& config) {
  if (config.run.transport.empty()) config.run.transport = ZYOLO_DEFAULT_TRANSPORT;
  const auto& t = config.run.transport;
  if (t != "inproc" && t != "ipc" && t != "tcp")
    throw ConfigError(
        fmt::format("run.transport (--transport) must be inproc, ipc or tcp, not '{}'", t));
  validate_broker(config);
  if (config.run.clients < 1) throw ConfigError("run.clients (--clients) must be at least 1");
  if (config.run.workers < 1) throw ConfigError("run.workers (--workers) must be at least 1");
  if (config.run.requests < 1 && config.run.duration_s <= 0)
    throw ConfigError("give a request count (--requests) or a duration (--duration)");
  if (config.run.service.empty() || config.run.service.size() > 255 ||
      config.run.service.starts_with("mmi."))
    throw ConfigError("run.service must be 1..255 bytes and must not start with 'mmi.'");
  validate_worker(config);
  if (config.client.deadline_ms < config.client.timeout_ms)
    throw ConfigError("client.deadline_ms must be >= client.timeout_ms");
  for (std::size_t i = 0; i < config.pools.size(); ++i) {
    const auto& service = config.pools[i].service;
    if (service.size() > 255 || service.starts_with("mmi."))
      throw ConfigError(fmt::format("pools[{}].service must be 1..255 bytes, not mmi.*", i));
    for (std::size_t j = 0; j < i; ++j)
      if (config.pools[j].service == service)
        throw ConfigError(fmt::format("pools[{}] and pools[{}] both serve '{}'", j, i, service));
  }
  if (config.frontend().empty() || config.backend().empty() || config.control().empty())
    throw ConfigError(fmt::format("endpoints.{0}_frontend, {0}_backend and {0}_control must be set", t));
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
}

}  // namespace zyolo
