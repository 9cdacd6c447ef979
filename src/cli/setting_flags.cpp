// Setting flags: see setting_flags.hpp.
#include "src/cli/setting_flags.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace zyolo {

void SettingFlags::add(CLI::App& command, std::initializer_list<std::string_view> keys) {
  const Config defaults = default_config();
  for (const auto key : keys) {
    const Setting* s = find_setting(key);
    if (!s || s->flag.empty()) throw std::logic_error(fmt::format("no flag for setting '{}'", key));
    Flag& f = flags_.emplace_back();
    f.setting = s;
    const std::string flag(s->flag);
    const bool is_bool = std::holds_alternative<bool& (*)(Config&)>(s->field);
    const std::string help =
        is_bool ? fmt::format("{} ({})", s->help, s->key)
                : fmt::format("{} ({}; default {})", s->help, s->key, setting_text(*s, defaults));
    if (is_bool) {
      f.option = command.add_flag(flag, f.set, help);
    } else {
      f.option = command.add_option(flag, f.text, help)->type_name(std::string(s->value_name));
      f.option->allow_extra_args(false);
    }
  }
}

bool SettingFlags::given(std::string_view key) const {
  for (const auto& f : flags_)
    if (f.setting->key == key) return f.option->count() > 0;
  return false;
}

void SettingFlags::apply(Config& config) const {
  for (const auto& f : flags_) {
    if (f.option->count() == 0) continue;
    const std::string why = store_setting_text(*f.setting, config, f.set ? "true" : f.text);
    if (!why.empty())
      throw ConfigError(fmt::format("{} {}: {} ({})", f.setting->flag, f.text, why, f.setting->key));
  }
  settle_run_length(config, given("run.requests"), given("run.duration_s"));
}

}  // namespace zyolo
