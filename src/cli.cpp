// The command line. Order of precedence: flags > --config FILE > config/default.toml.
#include "cli.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fstream>

#include "actor.hpp"
#include "config.hpp"
#include "fleet.hpp"

namespace zyolo {
namespace {

// Flags of `zyolo run`; each one that was given overrides its config key.
struct RunFlags {
  std::string config_file, report_file, transport, model;
  int clients = 0, workers = 0;
  long requests = 0;
  double duration = 0, service_ms = 0;
  bool quiet = false;
};

// Overrides `config` with every flag the user gave.
void apply_flags(Config& config, const CLI::App& run, const RunFlags& f) {
  auto given = [&](const char* name) { return run.count(name) > 0; };
  if (given("--clients")) config.run.clients = f.clients;
  if (given("--workers")) config.run.workers = f.workers;
  if (given("--requests")) {
    config.run.requests = f.requests;
    if (!given("--duration")) config.run.duration_s = 0;
  }
  if (given("--duration")) {
    config.run.duration_s = f.duration;
    if (!given("--requests")) config.run.requests = 0;
  }
  if (given("--transport")) config.run.transport = f.transport;
  if (given("--model")) config.worker.model = f.model;
  if (given("--service-ms")) config.worker.service_ms = f.service_ms;
}

int run_command(const CLI::App& run, const RunFlags& flags) {
  Config config = default_config();
  if (!flags.config_file.empty()) apply_toml_file(config, flags.config_file);
  apply_flags(config, run, flags);
  validate(config);
  if (config.worker.model != "none")
    throw ConfigError(fmt::format(
        "--model {}: YOLO workers are not built yet; use --model none (the echo worker)",
        config.worker.model));
  // Fail on an unwritable report before the run, not after it.
  std::ofstream report_out;
  if (!flags.report_file.empty()) {
    report_out.open(flags.report_file);
    if (!report_out) throw ConfigError(fmt::format("--report {}: cannot write", flags.report_file));
  }
  const Report report = run_fleet(config, {.progress = !flags.quiet && isatty(STDERR_FILENO)});
  fmt::print("{}", summary_text(report));
  if (report_out) report_out << to_json(report).dump(2) << "\n";
  if (report.interrupted) return kExitInterrupted;
  return report.clean() ? kExitOk : kExitUnclean;
}

}  // namespace

int cli_main(int argc, char** argv) {
  CLI::App app{"zyolo: N clients -> a load-balancing MDP/0.1 broker -> M YOLO workers, over ZeroMQ"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "zyolo 0.1.0");

  RunFlags flags;
  auto* run = app.add_subcommand("run", "Run a whole fleet in this process (threads, one context)");
  run->add_option("--clients", flags.clients, "Client threads (run.clients)")->check(CLI::Range(1, 100000));
  run->add_option("--workers", flags.workers, "Worker threads (run.workers)")->check(CLI::Range(1, 10000));
  run->add_option("--requests", flags.requests, "Requests in all, spread over the clients (run.requests)")
      ->check(CLI::Range(1L, 1'000'000'000L));
  run->add_option("--duration", flags.duration, "Run for S seconds instead of a request count (run.duration_s)")
      ->check(CLI::PositiveNumber);
  run->add_option("--model", flags.model, "Model file, or 'none' for echo workers (worker.model)");
  run->add_option("--service-ms", flags.service_ms, "Simulated service time of echo workers (worker.service_ms)")
      ->check(CLI::NonNegativeNumber);
  run->add_option("--transport", flags.transport, "Data-plane transport (run.transport)")
      ->check(CLI::IsMember({"inproc", "ipc", "tcp"}));
  run->add_option("--config", flags.config_file, "A TOML file overlaying config/default.toml");
  run->add_option("--report", flags.report_file, "Write the report as JSON to this file");
  run->add_flag("--quiet", flags.quiet, "No live progress line");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    if (run->parsed()) return run_command(*run, flags);
  } catch (const ConfigError& e) {
    fmt::print(stderr, "zyolo: {}\n", e.what());
    return kExitUsage;
  } catch (const ActorError& e) {
    fmt::print(stderr, "zyolo: cannot start {}\n", e.what());
    return kExitStartup;
  } catch (const std::exception& e) {
    fmt::print(stderr, "zyolo: {}\n", e.what());
    return kExitStartup;
  }
  return kExitUsage;
}

}  // namespace zyolo
