// What the subcommands share: --config, the autoscale flags' rule, settling the workers' models.
#include <fmt/format.h>

#include <opencv2/core/utility.hpp>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/cli/setting_flags.hpp"
#include "src/config/config.hpp"
#include "src/fleet/report.hpp"
#include "src/yolo/models.hpp"

namespace zyolo {

void add_config_flag(CLI::App& command, std::vector<std::string>& files) {
  command
      .add_option("--config", files,
                  "A TOML file overlaying config/default.toml; given again, each file overlays "
                  "the ones before it")
      ->type_name("FILE")
      ->allow_extra_args(false);  // one file per --config: what follows is the next argument
}

Config config_from_files(const std::vector<std::string>& files) {
  Config config = default_config();
  for (const auto& file : files) apply_toml_file(config, file);
  return config;
}

void check_autoscale_flags(const SettingFlags& flags, const Config& config) {
  if ((flags.given("autoscale.min_workers") || flags.given("autoscale.max_workers")) &&
      !config.autoscale.enabled)
    throw ConfigError("--min-workers and --max-workers need --autoscale (or autoscale.enabled)");
}

void print_report(const Report& report, std::ofstream& json_out) {
  fmt::print("{}", summary_text(report));
  if (json_out) json_out << to_json(report).dump(2) << "\n";
}

int exit_code_of(const Report& report) {
  if (report.interrupted) return kExitInterrupted;
  return report.clean() ? kExitOk : kExitUnclean;
}

void settle_pool_models(Config& config) {
  config.pools = config.pools_or_default();
  for (auto& pool : config.pools) {
    Config c = config;
    c.worker.model = pool.model;
    const ModelChoice model = resolve_model(c);
    if (!model.note.empty()) fmt::print(stderr, "{}\n", model.note);
    pool.model = model.detector ? model.detector->model_path : "none";
  }
  cv::setNumThreads(config.worker.cv_threads);  // process-wide: once, before any worker starts
}

}  // namespace zyolo
