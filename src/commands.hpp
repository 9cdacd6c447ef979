// Subcommands of the zyolo binary. Each add_* registers one on the root CLI11 app and returns
// what to run once parsing succeeded. The action returns the process exit code (see cli.hpp); it
// may throw ConfigError (exit 2) or another exception (exit 3), which cli_main turns into a
// one-line message.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace zyolo {

struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// The detector's flags, shared by `run` and `detect` (src/cmd_common.cpp).
struct DetectorFlags {
  std::string family;
  double conf = 0, nms = 0;
  int input_size = 0, cv_threads = 0;
};
void add_detector_flags(CLI::App& command, DetectorFlags& flags);
// Overrides the worker.* keys of `config` with each detector flag the user gave.
struct Config;
void apply_detector_flags(Config& config, const CLI::App& command, const DetectorFlags& flags);

Subcommand add_run_command(CLI::App& root);     // src/cmd_run.cpp: zyolo run
Subcommand add_detect_command(CLI::App& root);  // src/cmd_detect.cpp: zyolo detect
Subcommand add_scenarios_command(CLI::App& root);  // src/cmd_run.cpp: zyolo scenarios

}  // namespace zyolo
