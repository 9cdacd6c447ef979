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

Subcommand add_run_command(CLI::App& root);     // src/cmd_run.cpp: zyolo run
Subcommand add_detect_command(CLI::App& root);  // src/cmd_detect.cpp: zyolo detect

}  // namespace zyolo
