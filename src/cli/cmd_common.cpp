// What the subcommands share: the detector's flags, and settling the workers' models.
#include <fmt/format.h>

#include <opencv2/core/utility.hpp>

#include "src/cli/commands.hpp"
#include "src/config/config.hpp"
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

void add_detector_flags(CLI::App& command, DetectorFlags& f) {
  command
      .add_option("--family", f.family,
                  "Model family; auto recognises it from the model (worker.family)")
      ->check(CLI::IsMember({"auto", "yolov8", "yolov5", "yolox", "darknet"}));
  command
      .add_option("--conf", f.conf,
                  "Confidence threshold: weaker detections are dropped (worker.conf_threshold)")
      ->type_name("X")
      ->check(CLI::Range(0.0, 1.0));
  command
      .add_option("--nms", f.nms,
                  "NMS IoU threshold: per class, a box overlapping a stronger one by more is "
                  "dropped (worker.nms_threshold)")
      ->type_name("X")
      ->check(CLI::Range(0.01, 1.0));
  command
      .add_option("--input-size", f.input_size,
                  "Square network input in pixels, a multiple of 32; 0 takes the model's own "
                  "(worker.input_size)")
      ->type_name("N")
      ->check(CLI::Range(0, 8192));
  command
      .add_option("--cv-threads", f.cv_threads,
                  "OpenCV threads for inference, one process-wide pool; 0 runs on the calling "
                  "thread only (worker.cv_threads)")
      ->type_name("N")
      ->check(CLI::Range(0, 256));
}

namespace {
bool given(const CLI::App& command, const char* flag) {
  return command.get_option_no_throw(flag) != nullptr && command.count(flag) > 0;
}
}  // namespace

void apply_run_length_flags(Config& config, const CLI::App& command, long requests, double duration) {
  if (given(command, "--requests")) {
    config.run.requests = requests;
    if (!given(command, "--duration")) config.run.duration_s = 0;
  }
  if (given(command, "--duration")) {
    config.run.duration_s = duration;
    if (!given(command, "--requests")) config.run.requests = 0;
  }
}

void apply_autoscale_flags(Config& config, const CLI::App& command, bool autoscale, int min_workers,
                           int max_workers) {
  if (autoscale) config.autoscale.enabled = true;
  if (given(command, "--min-workers")) config.autoscale.min_workers = min_workers;
  if (given(command, "--max-workers")) config.autoscale.max_workers = max_workers;
  if ((given(command, "--min-workers") || given(command, "--max-workers")) && !config.autoscale.enabled)
    throw ConfigError("--min-workers and --max-workers need --autoscale (or autoscale.enabled)");
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

void apply_detector_flags(Config& config, const CLI::App& command, const DetectorFlags& f) {
  auto given = [&](const char* name) { return command.count(name) > 0; };
  if (given("--family")) config.worker.family = f.family;
  if (given("--conf")) config.worker.conf_threshold = f.conf;
  if (given("--nms")) config.worker.nms_threshold = f.nms;
  if (given("--input-size")) config.worker.input_size = f.input_size;
  if (given("--cv-threads")) config.worker.cv_threads = f.cv_threads;
}

}  // namespace zyolo
