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
#include "src/config/config.hpp"
#include "src/wire/curve.hpp"
#include "src/fleet/supervisor.hpp"
#include "src/yolo/images.hpp"

namespace zyolo {
namespace {

struct NodeFlags {
  std::vector<std::string> config_files;
  std::string frontend, backend, control, connect, report_file, model, images;
  std::string curve, server_key, allow;
  int workers = 0, clients = 0, min_workers = 0, max_workers = 0;
  long requests = 0;
  double duration = 0, service_ms = 0;
  bool autoscale = false, quiet = false;
  DetectorFlags detector;
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
    const std::string t = transport_of(endpoint, flag);
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
  if (given("--curve")) config.curve.key = f.curve;
  if (given("--server-key")) config.curve.server_key = f.server_key;
  if (given("--allow")) config.curve.allow = f.allow;
  return config;
}

// Validates the whole configuration, then loads the CURVE keys it names (config [curve]).
void settle_node(Config& config, CurveRole role) {
  validate(config);
  settle_curve(config, role);
}

void add_common_flags(CLI::App& cmd, NodeFlags& f) {
  add_config_flag(cmd, f.config_files);
  cmd.add_option("--curve", f.curve,
                 "Encrypt and authenticate with CURVE, with this key pair (a NAME.key of 'zyolo keygen'; curve.key)");
  cmd.add_flag("--quiet", f.quiet, "No progress line, no 'ready' line");
}

void add_server_key_flag(CLI::App& cmd, NodeFlags& f) {
  cmd.add_option("--server-key", f.server_key,
                 "With --curve: the broker's public key (its NAME.pub; curve.server_key)");
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
  const std::string where = fmt::format("frontend {} backend {} control {}", config.frontend(),
                                        config.backend(), config.control());
  const Report report = run_fleet(config, {.workers = false, .clients = false,
                                           .on_started = say_ready("broker, " + where, f.quiet)});
  const BrokerStats b = report.broker.value_or(BrokerStats{});
  fmt::print("zyolo broker: stopped after {:.1f} s: requests {} replies {} requeued {} expired workers {} "
             "503 {} malformed {}\n",
             report.elapsed_s, b.requests, b.replies, b.requeued, b.expired, b.rejected_busy, b.malformed);
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
  if (cmd.count("--workers")) config.run.workers = f.workers;
  if (cmd.count("--model")) config.worker.model = f.model;
  if (cmd.count("--service-ms")) config.worker.service_ms = f.service_ms;
  apply_detector_flags(config, cmd, f.detector);
  apply_autoscale_flags(config, cmd, f.autoscale, f.min_workers, f.max_workers);
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
  if (cmd.count("--clients")) config.run.clients = f.clients;
  apply_run_length_flags(config, cmd, f.requests, f.duration);
  if (cmd.count("--images")) config.client.images = f.images;
  if (cmd.count("--model")) config.worker.model = f.model;
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
  fmt::print("{}", summary_text(report));
  if (report_out) report_out << to_json(report).dump(2) << "\n";
  if (report.interrupted) return kExitInterrupted;
  return report.clean() ? kExitOk : kExitUnclean;
}

}  // namespace

Subcommand add_broker_command(CLI::App& root) {
  auto flags = std::make_shared<NodeFlags>();
  auto& f = *flags;
  auto* cmd = root.add_subcommand("broker", "Run the broker alone, until SIGINT or SIGTERM (binds its endpoints)");
  cmd->add_option("--frontend", f.frontend, "Where clients connect: tcp://HOST:PORT or ipc://PATH (endpoints.tcp_frontend)");
  cmd->add_option("--backend", f.backend, "Where workers connect (endpoints.tcp_backend)");
  cmd->add_option("--control", f.control, "Where demand is published, for --autoscale workers (endpoints.tcp_control)");
  cmd->add_option("--allow", f.allow,
                  "With --curve: a folder of the public keys (*.pub) of the clients and workers let in (curve.allow)");
  add_common_flags(*cmd, f);
  return {cmd, [cmd, flags] { return broker_command(*cmd, *flags); }};
}

Subcommand add_workers_command(CLI::App& root) {
  auto flags = std::make_shared<NodeFlags>();
  auto& f = *flags;
  auto* cmd = root.add_subcommand("workers", "Run a pool of workers alone, until SIGINT or SIGTERM");
  cmd->add_option("--connect", f.connect, "The broker's backend: tcp://HOST:PORT or ipc://PATH (endpoints.tcp_backend)");
  cmd->add_option("--control", f.control, "The broker's demand, for --autoscale (endpoints.tcp_control)");
  cmd->add_option("--workers", f.workers, "Worker threads (run.workers)")->check(CLI::Range(1, 10000));
  cmd->add_option("--model", f.model, "A YOLO model, 'none' for echo workers, or 'auto' (worker.model)");
  add_detector_flags(*cmd, f.detector);
  cmd->add_option("--service-ms", f.service_ms, "Simulated service time of echo workers (worker.service_ms)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--autoscale", f.autoscale, "Size the pool from the broker's demand (autoscale.enabled)");
  cmd->add_option("--min-workers", f.min_workers, "With --autoscale: never fewer (autoscale.min_workers)")
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--max-workers", f.max_workers, "With --autoscale: never more (autoscale.max_workers)")
      ->check(CLI::Range(1, 10000));
  add_server_key_flag(*cmd, f);
  add_common_flags(*cmd, f);
  return {cmd, [cmd, flags] { return workers_command(*cmd, *flags); }};
}

Subcommand add_clients_command(CLI::App& root) {
  auto flags = std::make_shared<NodeFlags>();
  auto& f = *flags;
  auto* cmd = root.add_subcommand("clients", "Run clients alone until every request has ended; report as zyolo run");
  cmd->add_option("--connect", f.connect, "The broker's frontend: tcp://HOST:PORT or ipc://PATH (endpoints.tcp_frontend)");
  cmd->add_option("--clients", f.clients, "Client threads (run.clients)")->check(CLI::Range(1, 100000));
  cmd->add_option("--requests", f.requests, "Requests in all (run.requests)")->check(CLI::Range(1L, 1'000'000'000L));
  cmd->add_option("--duration", f.duration, "Run for S seconds instead (run.duration_s)")->check(CLI::PositiveNumber);
  cmd->add_option("--images", f.images, "Send every .jpg/.png of this folder (client.images)");
  cmd->add_option("--model", f.model, "What the workers run: a model (send images), 'none' (echo payloads) or 'auto' (worker.model)");
  cmd->add_option("--report", f.report_file, "Write the report as JSON to this file");
  add_server_key_flag(*cmd, f);
  add_common_flags(*cmd, f);
  return {cmd, [cmd, flags] { return clients_command(*cmd, *flags); }};
}

}  // namespace zyolo
