// Model resolution: see models.hpp.
#include "src/yolo/models.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <sstream>

namespace zyolo {
namespace {

namespace fs = std::filesystem;

// The darknet partner of a .cfg or .weights file, or nothing for other files.
std::optional<fs::path> darknet_partner(const fs::path& p) {
  if (p.extension() == ".cfg") return fs::path(p).replace_extension(".weights");
  if (p.extension() == ".weights") return fs::path(p).replace_extension(".cfg");
  return std::nullopt;
}

}  // namespace

DetectorOptions detector_options(const Config& config, const std::string& path) {
  DetectorOptions o;
  o.model_path = path;
  o.family = parse_family(config.worker.family).value_or(ModelFamily::Auto);
  o.conf_threshold = static_cast<float>(config.worker.conf_threshold);
  o.nms_threshold = static_cast<float>(config.worker.nms_threshold);
  o.input_size = config.worker.input_size;
  o.names_path = config.worker.names;
  return o;
}

ModelChoice resolve_model(const Config& config) {
  const std::string& model = config.worker.model;
  if (model == "none") return {};
  if (model == "auto") {
    std::stringstream candidates(config.worker.auto_models);
    std::string path;
    while (std::getline(candidates, path, ':'))
      if (!path.empty() && fs::is_regular_file(path)) return {detector_options(config, path), ""};
    return {std::nullopt,
            fmt::format("zyolo: no YOLO model found (looked for {}); running simulated workers "
                        "(--model none). Give one with --model PATH.",
                        config.worker.auto_models)};
  }
  if (!fs::is_regular_file(model))
    throw ConfigError(fmt::format("worker.model (--model) {}: no such file", model));
  if (auto partner = darknet_partner(model); partner && !fs::is_regular_file(*partner))
    throw ConfigError(fmt::format("worker.model (--model) {}: its darknet partner {} is missing",
                                  model, partner->string()));
  return {detector_options(config, model), ""};
}

}  // namespace zyolo
