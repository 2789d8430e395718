// config_reader: THE way to read one table of the configuration file, typed: every key with its
// default and, for numbers, its allowed range.
//
// Promises: a key that is absent gives its default; a key with the wrong type (a string where a
// number belongs, a float where an integer belongs) or a value outside [min, max] or outside
// the allowed words throws config_error naming the file, the section and the key
// ("/etc/mx-connector/mx-connector.toml: importer.batch_size: must be 1..100000, got 0").
// Keys nobody asks for are ignored (one file serves every program; newer keys do not break
// older binaries). Every section reader — core keys, [milter], [smtp], [importer], [bounce],
// [targets], [oauth], [console] — goes through this class, so the rules are the same
// everywhere.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include "global/config.hpp"

namespace mx {

class config_reader {
  public:
    // [section] of cfg ("" = the top level); the table is copied (sections are small).
    config_reader(const config& cfg, std::string section);
    // A table that did not come from a config (tests, target specs); `file` names it in errors.
    config_reader(nlohmann::json table, std::string section, std::filesystem::path file = {});

    bool has(std::string_view key) const;
    bool boolean(std::string_view key, bool def) const;
    std::string string(std::string_view key, std::string def) const;
    // A string that must be one of `allowed`.
    std::string word(std::string_view key, std::string def,
                     std::initializer_list<std::string_view> allowed) const;
    // A TOML integer (a float is the wrong type) within [min, max].
    std::int64_t integer(std::string_view key, std::int64_t def,
                         std::int64_t min = std::numeric_limits<std::int64_t>::min(),
                         std::int64_t max = std::numeric_limits<std::int64_t>::max()) const;
    // A TOML integer or float within [min, max] (durations in days or fractional seconds).
    double number(std::string_view key, double def,
                  double min = -std::numeric_limits<double>::infinity(),
                  double max = std::numeric_limits<double>::infinity()) const;
    // A string naming a path, resolved against the config file's folder when relative. Absent:
    // def (unchanged). Present but "": empty (callers decide whether that disables something).
    std::filesystem::path path(std::string_view key, std::filesystem::path def) const;

    // "FILE: section.key" for messages of checks the reader cannot express.
    std::string where(std::string_view key) const;
    [[noreturn]] void fail(std::string_view key, std::string_view what) const;

  private:
    const nlohmann::json* find(std::string_view key) const;

    nlohmann::json table_;
    std::string section_;
    std::filesystem::path file_;
};

}  // namespace mx
