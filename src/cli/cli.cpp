// The command line: the root app, its subcommands (src/cmd_*.cpp), and exit codes for errors.
#include "src/cli/cli.hpp"

#include <fmt/format.h>

#include "src/wire/actor.hpp"
#include "src/config/allocator.hpp"
#include "src/cli/commands.hpp"
#include "src/config/config.hpp"

namespace zyolo {

int cli_main(int argc, char** argv) {
  CLI::App app{"zyolo: N clients -> a load-balancing MDP/0.1 broker -> M YOLO workers, over ZeroMQ"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("zyolo 0.1.0 (allocator: {})", allocator_name()));
  const Subcommand commands[] = {add_run_command(app),     add_broker_command(app),
                                 add_workers_command(app),  add_clients_command(app),
                                 add_keygen_command(app),   add_detect_command(app),
                                 add_scenarios_command(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  try {
    for (const auto& c : commands)
      if (c.app->parsed()) return c.run();
  } catch (const ConfigError& e) {
    fmt::print(stderr, "zyolo: {}\n", e.what());
    return kExitUsage;
  } catch (const ActorError& e) {
    fmt::print(stderr, "zyolo: cannot start {}\n", e.what());
    return kExitStartup;
  } catch (const std::exception& e) {
    fmt::print(stderr, "zyolo: {}\n", e.what());
    return kExitStartup;
  }
  return kExitUsage;
}

}  // namespace zyolo
