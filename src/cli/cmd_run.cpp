// `zyolo run`: a whole fleet in this process. Precedence: flags > --scenario > --config FILE >
// defaults. And `zyolo scenarios`: the scenarios compiled in.
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/config/config.hpp"
#include "src/wire/curve.hpp"
#include "src/fleet/supervisor.hpp"
#include "src/yolo/images.hpp"
#include "src/fleet/plot.hpp"
#include "src/fleet/scenario.hpp"


namespace zyolo {
namespace {

// Flags of `zyolo run`; each one that was given overrides its config key.
struct RunFlags {
  std::vector<std::string> config_files;
  std::string report_file, transport, broker, model, images, save_detections;
  std::string scenario, plot_file;
  uint64_t seed = 0;
  int clients = 0, workers = 0, min_workers = 0, max_workers = 0;
  long requests = 0;
  double duration = 0, service_ms = 0, time_scale = 1;
  bool quiet = false, autoscale = false;
  DetectorFlags detector;
};

// Overrides `config` with every flag the user gave.
void apply_flags(Config& config, const CLI::App& run, const RunFlags& f) {
  auto given = [&](const char* name) { return run.count(name) > 0; };
  if (given("--clients")) config.run.clients = f.clients;
  if (given("--workers")) config.run.workers = f.workers;
  apply_run_length_flags(config, run, f.requests, f.duration);
  if (given("--transport")) config.run.transport = f.transport;
  if (given("--broker")) config.run.broker = f.broker;
  apply_autoscale_flags(config, run, f.autoscale, f.min_workers, f.max_workers);
  if (given("--model")) config.worker.model = f.model;
  if (given("--service-ms")) config.worker.service_ms = f.service_ms;
  apply_detector_flags(config, run, f.detector);
  if (given("--images")) config.client.images = f.images;
  if (given("--save-detections")) config.client.save_detections = f.save_detections;
  if (given("--time-scale")) config.run.time_scale = f.time_scale;
}

int run_fleet_command(const CLI::App& run, const RunFlags& flags) {
  block_stop_signals();  // first: OpenCV's pool below starts threads of its own
  Config config = config_from_files(flags.config_files);
  std::optional<Scenario> scenario;
  if (!flags.scenario.empty()) scenario = load_scenario(flags.scenario, config);
  else if (run.count("--seed")) throw ConfigError("--seed needs --scenario");
  apply_flags(config, run, flags);
  validate(config);
  settle_curve(config, CurveRole::None);
  if (scenario)
    settle_scenario(*scenario, config, run.count("--seed") ? std::optional(flags.seed) : std::nullopt);
  scale_time_line(config, scenario ? &*scenario : nullptr);  // last: the checks above read the file's times
  if (!flags.plot_file.empty()) {
    std::string why;
    if (!gnuplot_available(&why)) throw ConfigError("--plot: " + why);
    if (!std::ofstream(flags.plot_file, std::ios::app))
      throw ConfigError(fmt::format("--plot {}: cannot write", flags.plot_file));
  }
  settle_pool_models(config);
  if (!config.client.images.empty()) (void)load_images(config.client.images);  // checks it
  // Fail on an unwritable output before the run, not after it.
  std::ofstream report_out;
  if (!flags.report_file.empty()) {
    report_out.open(flags.report_file);
    if (!report_out) throw ConfigError(fmt::format("--report {}: cannot write", flags.report_file));
  }
  if (!config.client.save_detections.empty() && !std::ofstream(config.client.save_detections))
    throw ConfigError(
        fmt::format("--save-detections {}: cannot write", config.client.save_detections));
  if (scenario && !flags.quiet)
    fmt::print(stderr, "scenario {} (seed {}): {}\n", scenario->name, scenario->seed, scenario->description);
  const Report report = run_fleet(config, {.progress = !flags.quiet && isatty(STDERR_FILENO),
                                           .announce = !flags.quiet,
                                           .scenario = scenario ? &*scenario : nullptr,
                                           .on_started = {}});
  fmt::print("{}", summary_text(report));
  if (report_out) report_out << to_json(report).dump(2) << "\n";
  if (!flags.plot_file.empty()) write_plot(report, flags.plot_file);
  if (report.interrupted) return kExitInterrupted;
  return report.clean() ? kExitOk : kExitUnclean;
}

}  // namespace

Subcommand add_run_command(CLI::App& root) {
  auto flags = std::make_shared<RunFlags>();
  auto& f = *flags;
  auto* run = root.add_subcommand("run", "Run a whole fleet in this process (threads, one context)");
  run->add_option("--clients", f.clients, "Client threads (run.clients)")->check(CLI::Range(1, 100000));
  run->add_option("--workers", f.workers, "Worker threads (run.workers)")->check(CLI::Range(1, 10000));
  run->add_option("--requests", f.requests, "Requests in all, spread over the clients (run.requests)")
      ->check(CLI::Range(1L, 1'000'000'000L));
  run->add_option("--duration", f.duration, "Run for S seconds instead of a request count (run.duration_s)")
      ->check(CLI::PositiveNumber);
  run->add_flag("--autoscale", f.autoscale,
                "Let the controller start and retire workers from the demand it measures "
                "(autoscale.enabled; policy in [autoscale])");
  run->add_option("--min-workers", f.min_workers, "With --autoscale: never fewer workers (autoscale.min_workers)")
      ->check(CLI::Range(0, 10000));
  run->add_option("--max-workers", f.max_workers, "With --autoscale: never more workers (autoscale.max_workers)")
      ->check(CLI::Range(1, 10000));
  run->add_option("--model", f.model,
                  "A YOLO model (.onnx, or darknet .cfg/.weights), 'none' for echo workers, or "
                  "'auto' (worker.model)");
  add_detector_flags(*run, f.detector);
  run->add_option("--service-ms", f.service_ms, "Simulated service time of echo workers (worker.service_ms)")
      ->check(CLI::NonNegativeNumber);
  run->add_option("--images", f.images, "Send every .jpg/.png of this folder, round-robin (client.images)");
  run->add_option("--save-detections", f.save_detections,
                  "Write each answered request's detections as JSON Lines (client.save_detections)");
  run->add_option("--transport", f.transport, "Data-plane transport (run.transport)")
      ->check(CLI::IsMember({"inproc", "ipc", "tcp"}));
  run->add_option("--broker", f.broker,
                  "mdp: the load-balancing Majordomo broker; proxy: the shared queue, "
                  "zmq_proxy_steerable to plain REP workers (run.broker)");
  add_config_flag(*run, f.config_files);
  run->add_option("--report", f.report_file, "Write the report as JSON to this file");
  run->add_option("--scenario", f.scenario,
                  "Play a scenario of faults and changes: a name (see 'zyolo scenarios') or a "
                  ".toml file; its settings overlay --config, flags override both");
  run->add_option("--seed", f.seed, "Seed of the scenario's random choices (chaos)");
  run->add_option("--time-scale", f.time_scale,
                  "Play the run's whole time line X times as long: its length, the scenario's "
                  "events, heartbeats, timeouts, reconnects and autoscale delays; 0.5 plays the "
                  "same faults in half the time (run.time_scale)")
      ->type_name("X")
      ->check(CLI::Range(0.05, 20.0));
  run->add_option("--plot", f.plot_file, "Draw throughput, p99 latency and workers over time, "
                  "with the scenario's events, into this PNG (needs gnuplot)");
  run->add_flag("--quiet", f.quiet, "No live progress line, no event lines");
  return {run, [run, flags] { return run_fleet_command(*run, *flags); }};
}

Subcommand add_scenarios_command(CLI::App& root) {
  auto* cmd = root.add_subcommand("scenarios", "List the scenarios built in (zyolo run --scenario NAME)");
  return {cmd, [] {
            for (const auto& [name, description] : builtin_scenarios())
              fmt::print("{:<16} {}\n", name, description);
            return kExitOk;
          }};
}

}  // namespace zyolo
