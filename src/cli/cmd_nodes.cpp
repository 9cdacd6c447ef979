// `zyolo broker`, `zyolo workers`, `zyolo clients`: the actors of `zyolo run`, one kind per
// process, each under its own supervisor (src/fleet/supervisor.cpp) and its own context, talking over tcp or
// ipc. The same actor code runs; only the endpoints differ. Broker and workers run until SIGINT
// or SIGTERM (then their actors stop cleanly: workers leave by the DISCONNECT handshake); clients
// run until every request has ended and write the same report as `zyolo run`.
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <memory>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/setting_flags.hpp"
#include "src/config/config.hpp"
#include "src/wire/curve.hpp"
#include "src/fleet/supervisor.hpp"
#include "src/yolo/images.hpp"

namespace zyolo {
namespace {

// Flags of one node command: its endpoints, the settings it takes, and its own.
struct NodeFlags {
  std::vector<std::string> config_files;
  std::string frontend, backend, control, connect, report_file;
  SettingFlags settings;
  bool quiet = false;
};

// The transport of an endpoint given on the command line.
std::string transport_of(const std::string& endpoint, const char* flag) {
  if (endpoint.starts_with("tcp://")) return "tcp";
  if (endpoint.starts_with("ipc://")) return "ipc";
  throw ConfigError(fmt::format(
      "{} {}: processes reach each other over tcp:// or ipc:// (inproc works only inside one)",
      flag, endpoint));
}

// The defaults, --config, and the endpoint flags. The run's transport is the endpoints' (tcp when
// none is given: the config's tcp_* endpoints).
Config node_config(const CLI::App& cmd, const NodeFlags& f) {
  Config config = config_from_files(f.config_files);
  std::string transport;
  // A flag counts when this command has it and the user gave it.
  auto given = [&](const char* flag) { return cmd.get_option_no_throw(flag) != nullptr && cmd.count(flag) > 0; };
  auto take = [&](const char* flag, const std::string& endpoint, std::string EndpointConfig::*tcp,
                  std::string EndpointConfig::*ipc) {
    if (!given(flag)) return;
    check_endpoint_list(flag, endpoint);  // a list (--connect A,B): one transport, no gaps, no repeats
    if (cmd.get_name() == "broker" && split_endpoints(endpoint).size() > 1)
      throw ConfigError(fmt::format("{} {}: zyolo broker binds one endpoint; a list is for clients and workers",
                                    flag, endpoint));
    const std::string t = transport_of(split_endpoints(endpoint).front(), flag);
    if (!transport.empty() && t != transport)
      throw ConfigError(fmt::format("{} {}: all endpoints must be tcp:// or all ipc://", flag, endpoint));
    transport = t;
    config.endpoints.*(t == "tcp" ? tcp : ipc) = endpoint;
  };
  const bool clients = cmd.get_name() == "clients";
  take("--frontend", f.frontend, &EndpointConfig::tcp_frontend, &EndpointConfig::ipc_frontend);
  take("--backend", f.backend, &EndpointConfig::tcp_backend, &EndpointConfig::ipc_backend);
  take("--control", f.control, &EndpointConfig::tcp_control, &EndpointConfig::ipc_control);
  if (clients)
    take("--connect", f.connect, &EndpointConfig::tcp_frontend, &EndpointConfig::ipc_frontend);
  else
    take("--connect", f.connect, &EndpointConfig::tcp_backend, &EndpointConfig::ipc_backend);
  config.run.transport = transport.empty() ? "tcp" : transport;
  f.settings.apply(config);
  check_autoscale_flags(f.settings, config);
  return config;
}

// Validates the whole configuration, then loads the CURVE keys it names (config [curve]).
void settle_node(Config& config, CurveRole role) {
  validate(config);
  settle_curve(config, role);
}

void add_common_flags(CLI::App& cmd, NodeFlags& f) {
  add_config_flag(cmd, f.config_files);
  f.settings.add(cmd, {"curve.key", "metrics.listen"});
  cmd.add_flag("--quiet", f.quiet, "No progress line, no 'ready' line");
}

// Says on stdout, once the actors are up, where they are; scripts and tests wait for this line.
std::function<void()> say_ready(const std::string& what, bool quiet) {
  return [what, quiet] {
    if (quiet) return;
    fmt::print("zyolo {}: ready\n", what);
    std::fflush(stdout);
  };
}

int broker_command(const CLI::App& cmd, const NodeFlags& f) {
  block_stop_signals();
  Config config = node_config(cmd, f);
  settle_node(config, CurveRole::Broker);
  require_single_endpoints(config, "zyolo broker");
  std::string where = fmt::format("frontend {} backend {} control {}", config.frontend(),
                                  config.backend(), config.control());
  if (config.ha.enabled())
    where += fmt::format(" ha {} bind {} peer {}", config.ha.role, config.ha.bind, config.ha.peer);
  const Report report = run_fleet(config, {.workers = false, .clients = false,
                                           .on_started = say_ready("broker, " + where, f.quiet)});
  const BrokerStats b = report.broker.value_or(BrokerStats{});
  fmt::print("zyolo broker: stopped after {:.1f} s: requests {} replies {} requeued {} expired workers {} "
             "503 {} malformed {}\n",
             report.elapsed_s, b.requests, b.replies, b.requeued, b.expired, b.rejected_busy, b.malformed);
  if (!b.ha_state.empty())  // one of a pair: the state it ended in, and how it got there
    fmt::print("zyolo broker: ha: stopped {} ({}): transitions {} dropped {} peer lost {}\n", b.ha_state,
               config.ha.role, b.ha_transitions, b.ha_dropped, b.ha_peer_lost);
  if (const auto& c = report.curve) {
    fmt::print("zyolo broker: curve: {} keys allowed; connections accepted {} refused {}\n",
               c->allowed_keys, c->accepted, c->refused);
    for (const auto& key : c->refused_keys) fmt::print("zyolo broker: curve: refused public key {}\n", key);
  }
  return kExitOk;
}

int workers_command(const CLI::App& cmd, const NodeFlags& f) {
  block_stop_signals();  // first: OpenCV's pool starts threads of its own
  Config config = node_config(cmd, f);
  settle_node(config, CurveRole::Peer);
  settle_pool_models(config);
  const Report report = run_fleet(
      config, {.broker = false, .clients = false,
               .on_started = say_ready(fmt::format("workers, {} connected to {}", config.run.workers,
                                                   config.backend()),
                                       f.quiet)});
  std::string served;
  for (const auto& w : report.workers) served += fmt::format(" {} {}", w.id, w.served);
  fmt::print("zyolo workers: stopped after {:.1f} s; served:{}\n", report.elapsed_s, served);
  if (report.autoscale.enabled)
    fmt::print("zyolo workers: autoscale: {} decisions, {} workers started, {} retired\n",
               report.autoscale.decisions.size(), report.autoscale.started, report.autoscale.retired);
  for (const auto& e : report.actor_errors) fmt::print(stderr, "zyolo workers: actor error: {}\n", e);
  return report.actor_errors.empty() ? kExitOk : kExitUnclean;
}

int clients_command(const CLI::App& cmd, const NodeFlags& f) {
  block_stop_signals();
  Config config = node_config(cmd, f);
  settle_node(config, CurveRole::Peer);
  // The clients send images when the workers detect, else echo payloads: they go by the model
  // named here, settled as `zyolo workers` settles it (auto: the first of worker.auto_models
  // found on this host), as a client of `zyolo run` goes by its pool's model.
  settle_pool_models(config);
  if (!config.client.images.empty()) (void)load_images(config.client.images);  // checks it
  std::ofstream report_out;
  if (!f.report_file.empty()) {
    report_out.open(f.report_file);
    if (!report_out) throw ConfigError(fmt::format("--report {}: cannot write", f.report_file));
  }
  const Report report = run_fleet(config, {.progress = !f.quiet && isatty(STDERR_FILENO),
                                           .broker = false, .workers = false, .on_started = {}});
  print_report(report, report_out);
  return exit_code_of(report);
}

}  // namespace

Subcommand add_broker_command(CLI::App& root) {
  auto flags = std::make_shared<NodeFlags>();
  auto& f = *flags;
  auto* cmd = root.add_subcommand("broker", "Run the broker alone, until SIGINT or SIGTERM (binds its endpoints)");
  cmd->add_option("--frontend", f.frontend, "Where clients connect: tcp://HOST:PORT or ipc://PATH (endpoints.tcp_frontend)");
  cmd->add_option("--backend", f.backend, "Where workers connect (endpoints.tcp_backend)");
  cmd->add_option("--control", f.control, "Where demand is published, for --autoscale workers (endpoints.tcp_control)");
  f.settings.add(*cmd, {"broker.worker_credit", "curve.allow", "ha.role", "ha.bind", "ha.peer"});
  add_common_flags(*cmd, f);
  return {cmd, [cmd, flags] { return broker_command(*cmd, *flags); }};
}

Subcommand add_workers_command(CLI::App& root) {
  auto flags = std::make_shared<NodeFlags>();
  auto& f = *flags;
  auto* cmd = root.add_subcommand("workers", "Run a pool of workers alone, until SIGINT or SIGTERM");
  cmd->add_option("--connect", f.connect, "The broker's backend: tcp://HOST:PORT or ipc://PATH, or a comma-separated list of a broker pair's (endpoints.tcp_backend)");
  cmd->add_option("--control", f.control, "The broker's demand, for --autoscale (endpoints.tcp_control)");
  f.settings.add(*cmd, {"run.workers", ZYOLO_DETECTOR_KEYS, "worker.service_ms", "autoscale.enabled",
                        "autoscale.min_workers", "autoscale.max_workers", "curve.server_key"});
  add_common_flags(*cmd, f);
  return {cmd, [cmd, flags] { return workers_command(*cmd, *flags); }};
}

Subcommand add_clients_command(CLI::App& root) {
  auto flags = std::make_shared<NodeFlags>();
  auto& f = *flags;
  auto* cmd = root.add_subcommand("clients", "Run clients alone until every request has ended; report as zyolo run");
  cmd->add_option("--connect", f.connect, "The broker's frontend: tcp://HOST:PORT or ipc://PATH, or a comma-separated list of a broker pair's (endpoints.tcp_frontend)");
  f.settings.add(*cmd, {"run.clients", "run.requests", "run.duration_s", "client.in_flight", "client.images", "worker.model",
                        "curve.server_key"});
  cmd->add_option("--report", f.report_file, "Write the report as JSON to this file");
  add_common_flags(*cmd, f);
  return {cmd, [cmd, flags] { return clients_command(*cmd, *flags); }};
}

}  // namespace zyolo
