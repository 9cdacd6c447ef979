// Every setting, declared once: its key, its type and range (or its choices), its flag and the
// flag's value name, and one line of help. That one declaration drives everything a setting goes
// through: loading it from TOML (apply_toml), checking its value (the same check for a file and
// for a flag, with the same words), the command-line option of every subcommand that takes it
// (src/cli/setting_flags.hpp) and its --help text, which adds the key and its default.
//
// The defaults themselves live in config/default.toml, compiled in: the one home of every
// default value (the README's usage and `zyolo run --help` show them from there).
// Rules that tie several keys together (a deadline no shorter than the timeout, min <= max
// workers, ...) are validate()'s, in config.cpp.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <toml++/toml.h>
#include <variant>

#include "src/config/config.hpp"

namespace zyolo {

struct Setting {
  // Where its value lives in a Config: one of these accessors (its type is the setting's).
  using Field = std::variant<int& (*)(Config&), long& (*)(Config&), double& (*)(Config&),
                             std::string& (*)(Config&), bool& (*)(Config&)>;

  std::string_view key;       // dotted TOML key, e.g. "run.clients"
  Field field;
  double lo = 0, hi = 0;      // numbers: the allowed range, inclusive
  std::string_view choices;   // strings: the allowed values, space-separated ("" allows any)
  bool empty_ok = false;      // with choices: "" is allowed too (it means "the build's default")
  std::string_view flag;      // "--clients", or "" when only a file sets it
  std::string_view value_name;  // in --help: N, S, MS, FILE, ...
  std::string_view help;      // one line, without the key (--help adds it)

  template <class F>
  constexpr Setting(std::string_view key_, F field_, double lo_ = 0, double hi_ = 0,
                    std::string_view choices_ = {}, bool empty_ok_ = false,
                    std::string_view flag_ = {}, std::string_view value_name_ = {},
                    std::string_view help_ = {})
      : key(key_), field(field_), lo(lo_), hi(hi_), choices(choices_), empty_ok(empty_ok_),
        flag(flag_), value_name(value_name_), help(help_) {}
};

// Every setting zyolo knows, in the order of config/default.toml.
std::span<const Setting> settings();
// The setting of `key` ("run.clients"), or of `flag` ("--clients"); null when there is none.
const Setting* find_setting(std::string_view key);
const Setting* find_setting_by_flag(std::string_view flag);

// Stores a TOML value into `config` if it passes the setting's checks; otherwise returns what is
// wrong with it ("must be between 1 and 100000"), and `config` is unchanged.
std::string store_setting(const Setting& s, Config& config, const toml::node& value);
// The same for a flag's text: parsed as the setting's type ("2.5" for a number, "true" for a
// bool), then checked and stored as a TOML value would be.
std::string store_setting_text(const Setting& s, Config& config, std::string_view text);

// What is wrong with the setting's value in `config` (out of range, not a choice), or "".
std::string check_setting(const Setting& s, const Config& config);

// The setting's value in `config`, as TOML writes it (for --help: the default).
std::string setting_text(const Setting& s, Config config);

}  // namespace zyolo
