// The command-line options of settings. A subcommand names the keys it takes; each one's flag,
// value name and help come from the settings table (src/config/settings.hpp) and its default from
// config/default.toml, so `zyolo run --workers` and `zyolo workers --workers` are one declaration.
// A flag's value is checked as the same key in a file would be, and its error names the flag.
#pragma once

#include <CLI/CLI.hpp>
#include <deque>
#include <initializer_list>
#include <string>
#include <string_view>

#include "src/config/config.hpp"
#include "src/config/settings.hpp"

namespace zyolo {

class SettingFlags {
 public:
  // Adds the option of each setting in `keys` (each must have a flag) to `command`.
  void add(CLI::App& command, std::initializer_list<std::string_view> keys);
  // Overlays every flag that was given on `config`, in the order added. --requests and --duration
  // switch each other off, as in a file. Throws ConfigError naming the flag and its value.
  void apply(Config& config) const;
  // True when the flag of `key` was given.
  bool given(std::string_view key) const;

 private:
  struct Flag {
    const Setting* setting = nullptr;
    CLI::Option* option = nullptr;
    std::string text;   // the value given (bool settings: a flag without a value)
    bool set = false;   // bool settings: the flag was given
  };
  std::deque<Flag> flags_;  // a deque: CLI11 keeps pointers to `text` and `set`
};

}  // namespace zyolo
