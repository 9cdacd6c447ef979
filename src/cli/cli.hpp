// The command line: `zyolo run ...` and friends, parsed with CLI11 over the TOML configuration.
#pragma once

namespace zyolo {

// Exit codes of the zyolo binary.
enum ExitCode : int {
  kExitOk = 0,
  kExitUnclean = 1,      // run: lost, duplicated or mismatched requests; detect: an image failed
  kExitUsage = 2,        // bad flag, bad config, missing file
  kExitStartup = 3,      // an actor could not start (endpoint in use, model missing, ...)
  kExitInterrupted = 130,
};

// Parses argv, runs the subcommand, returns the process exit code. Never throws.
int cli_main(int argc, char** argv);

}  // namespace zyolo
