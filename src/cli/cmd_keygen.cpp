// `zyolo keygen NAME...`: CURVE key pairs for a fleet spread over processes (src/wire/curve.hpp), one
// NAME.key (secret) and NAME.pub (public) per name.
#include <fmt/format.h>

#include <memory>

#include "src/cli/cli.hpp"
#include "src/cli/commands.hpp"
#include "src/wire/curve.hpp"

namespace zyolo {

Subcommand add_keygen_command(CLI::App& root) {
  struct Flags {
    std::vector<std::string> names;
    std::string dir = ".";
    bool force = false;
  };
  auto flags = std::make_shared<Flags>();
  auto* cmd = root.add_subcommand("keygen", "Write CURVE key pairs: NAME.key (secret, mode 0600) and NAME.pub (public)");
  cmd->add_option("names", flags->names, "One key pair per name, e.g. broker worker1 client1")->required();
  cmd->add_option("--dir", flags->dir, "The folder to write them into (default: the current one)");
  cmd->add_flag("--force", flags->force, "Replace key files that exist");
  return {cmd, [flags] {
            for (const auto& name : flags->names) {
              const auto paths = write_key_files(flags->dir, name, flags->force);
              fmt::print("zyolo keygen: {} (secret) and {} (public): {}\n", paths[0], paths[1],
                         read_public_key(paths[1], "keygen"));
            }
            return kExitOk;
          }};
}

}  // namespace zyolo
