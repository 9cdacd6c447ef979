// Which model a run (or `zyolo detect`) uses, from worker.model and the detector keys of the
// configuration. Errors are ConfigErrors naming the path, raised before any thread starts.
#pragma once

#include <optional>
#include <string>

#include "src/config/config.hpp"
#include "src/yolo/detector.hpp"

namespace zyolo {

struct ModelChoice {
  std::optional<DetectorOptions> detector;  // nothing: the simulated echo worker
  std::string note;                         // a line for the user when "auto" fell back to none
};

// "none": the echo worker. "auto": the first of worker.auto_models that exists, else the echo
// worker with a note saying so. A path: that model; a missing file (or darknet partner) is a
// ConfigError naming it.
ModelChoice resolve_model(const Config& config);

// Detector options for the model at `path`, with the family, thresholds, input size and names
// of `config`.
DetectorOptions detector_options(const Config& config, const std::string& path);

}  // namespace zyolo
