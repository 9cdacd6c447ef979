// `zyolo run`: a whole fleet in this process. Precedence: flags > --scenario > --config FILE >
// defaults. And `zyolo scenarios`: the scenarios compiled in.
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/setting_flags.hpp"
#include "src/config/config.hpp"
#include "src/wire/curve.hpp"
#include "src/fleet/supervisor.hpp"
#include "src/yolo/images.hpp"
#include "src/fleet/plot.hpp"
#include "src/fleet/scenario.hpp"


namespace zyolo {
namespace {

// Flags of `zyolo run`: the settings it takes (each one given overrides its config key), and its
// own.
struct RunFlags {
  std::vector<std::string> config_files;
  SettingFlags settings;
  std::string report_file, scenario, plot_file;
  uint64_t seed = 0;
  bool quiet = false;
  bool ha = false;  // --ha: run.ha = true
};

int run_fleet_command(const CLI::App& run, const RunFlags& flags) {
  block_stop_signals();  // first: OpenCV's pool below starts threads of its own
  Config config = config_from_files(flags.config_files);
  std::optional<Scenario> scenario;
  if (!flags.scenario.empty()) scenario = load_scenario(flags.scenario, config);
  else if (run.count("--seed")) throw ConfigError("--seed needs --scenario");
  flags.settings.apply(config);
  if (flags.ha) config.run.ha = true;
  check_autoscale_flags(flags.settings, config);
  if (config.ha.enabled() && !config.run.ha)  // a role is one broker's of a pair of processes
    throw ConfigError("ha.role is for zyolo broker --ha (one broker of a pair per process); for a "
                      "pair in this process, zyolo run --ha (run.ha = true) without ha.role");
  validate(config);
  if (!config.run.ha) require_single_endpoints(config, "zyolo run's in-process broker");
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
  print_report(report, report_out);
  if (!flags.plot_file.empty()) write_plot(report, flags.plot_file);
  return exit_code_of(report);
}

}  // namespace

Subcommand add_run_command(CLI::App& root) {
  auto flags = std::make_shared<RunFlags>();
  auto& f = *flags;
  auto* run = root.add_subcommand("run", "Run a whole fleet in this process (threads, one context)");
  f.settings.add(*run, {"run.clients", "run.workers", "run.requests", "run.duration_s", "client.in_flight",
                        "autoscale.enabled", "autoscale.min_workers", "autoscale.max_workers",
                        ZYOLO_DETECTOR_KEYS, "worker.service_ms", "client.images",
                        "client.save_detections", "broker.worker_credit", "run.transport", "run.broker",
                        "run.time_scale", "metrics.listen"});
  add_config_flag(*run, f.config_files);
  run->add_option("--report", f.report_file, "Write the report as JSON to this file");
  run->add_option("--scenario", f.scenario,
                  "Play a scenario of faults and changes: a name (see 'zyolo scenarios') or a "
                  ".toml file; its settings overlay --config, flags override both");
  run->add_option("--seed", f.seed, "Seed of the scenario's random choices (chaos)");
  run->add_option("--plot", f.plot_file, "Draw throughput, p99 latency and workers over time, "
                  "with the scenario's events, into this PNG (needs gnuplot)");
  run->add_flag("--quiet", f.quiet, "No live progress line, no event lines");
  run->add_flag("--ha", f.ha, "The broker is a pair with failover (Binary Star): primary and backup "
                "broker actors, clients and workers given both (run.ha)");
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
