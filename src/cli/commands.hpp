// Subcommands of the zyolo binary. Each add_* registers one on the root CLI11 app and returns
// what to run once parsing succeeded. The action returns the process exit code (see cli.hpp); it
// may throw ConfigError (exit 2) or another exception (exit 3), which cli_main turns into a
// one-line message.
#pragma once

#include <CLI/CLI.hpp>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace zyolo {

struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// --config FILE, which may be given several times: each file overlays config/default.toml and the
// files before it, in the order given (src/cli/cmd_common.cpp). Every subcommand that reads the
// configuration takes it.
struct Config;
void add_config_flag(CLI::App& command, std::vector<std::string>& files);
Config config_from_files(const std::vector<std::string>& files);

// The detector's settings, whose flags `run`, `workers` and `detect` take.
#define ZYOLO_DETECTOR_KEYS \
  "worker.model", "worker.family", "worker.conf_threshold", "worker.nms_threshold", \
      "worker.input_size", "worker.cv_threads"

// --min-workers and --max-workers need the controller: a ConfigError when autoscaling is off
// after the flags.
class SettingFlags;
void check_autoscale_flags(const SettingFlags& flags, const Config& config);

// What a run that ends with a report does, `zyolo run` and `zyolo clients` alike: prints the
// summary, writes the JSON to `json_out` when it is open; and the exit code the report means.
struct Report;
void print_report(const Report& report, std::ofstream& json_out);
int exit_code_of(const Report& report);

// Settles each pool's model (config.pools is filled in): a path or "none", never "auto", so errors
// come before any thread starts; and sets OpenCV's one thread pool to worker.cv_threads.
void settle_pool_models(Config& config);

Subcommand add_run_command(CLI::App& root);     // src/cli/cmd_run.cpp: zyolo run
// src/cli/cmd_nodes.cpp: the actors of `zyolo run`, one kind per process, over tcp or ipc.
Subcommand add_broker_command(CLI::App& root);   // zyolo broker
Subcommand add_workers_command(CLI::App& root);  // zyolo workers
Subcommand add_clients_command(CLI::App& root);  // zyolo clients
Subcommand add_keygen_command(CLI::App& root);   // src/cli/cmd_keygen.cpp: zyolo keygen (CURVE keys)
Subcommand add_detect_command(CLI::App& root);  // src/cli/cmd_detect.cpp: zyolo detect
Subcommand add_scenarios_command(CLI::App& root);  // src/cli/cmd_run.cpp: zyolo scenarios

}  // namespace zyolo
