#include "global/config_reader.hpp"

#include <fmt/format.h>

#include <cmath>
#include <utility>

namespace mx {
namespace {

// "1..16", "at least 1", "at most 10": the range as the admin should read it.
template <typename T>
std::string range_text(T min, T max, T lowest, T highest) {
    if (min != lowest && max != highest) return fmt::format("must be {}..{}", min, max);
    if (min != lowest) return fmt::format("must be at least {}", min);
    return fmt::format("must be at most {}", max);
}

}  // namespace

config_reader::config_reader(const config& cfg, std::string section)
    : table_(section.empty() ? cfg.raw : cfg.section(section))
    , section_(std::move(section))
    , file_(cfg.file) {
    if (!table_.is_object()) table_ = nlohmann::json::object();
}

config_reader::config_reader(nlohmann::json table, std::string section, std::filesystem::path file)
    : table_(table.is_object() ? std::move(table) : nlohmann::json::object())
    , section_(std::move(section))
    , file_(std::move(file)) {}

const nlohmann::json* config_reader::find(std::string_view key) const {
    auto it = table_.find(key);
    return it == table_.end() ? nullptr : &*it;
}

bool config_reader::has(std::string_view key) const {
    return find(key) != nullptr;
}

std::string config_reader::where(std::string_view key) const {
    std::string w = file_.empty() ? std::string("config") : file_.string();
    w += ": ";
    if (!section_.empty()) w += section_ + ".";
    w += key;
    return w;
}

void config_reader::fail(std::string_view key, std::string_view what) const {
    throw config_error(where(key) + ": " + std::string(what));
}

bool config_reader::boolean(std::string_view key, bool def) const {
    const auto* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) fail(key, "wrong type: true or false expected");
    return v->get<bool>();
}

std::string config_reader::string(std::string_view key, std::string def) const {
    const auto* v = find(key);
    if (!v) return def;
    if (!v->is_string()) fail(key, "wrong type: a string expected");
    return v->get<std::string>();
}

std::string config_reader::word(std::string_view key, std::string def,
                                std::initializer_list<std::string_view> allowed) const {
    std::string s = string(key, std::move(def));
    std::string list;
    for (auto a : allowed) {
        if (s == a) return s;
        list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
    }
    fail(key, "must be one of " + list + ", not \"" + s + "\"");
}

std::int64_t config_reader::integer(std::string_view key, std::int64_t def, std::int64_t min,
                                    std::int64_t max) const {
    const auto* v = find(key);
    if (!v) return def;
    if (!v->is_number_integer()) fail(key, "wrong type: an integer expected");
    bool huge = v->is_number_unsigned() &&
                v->get<std::uint64_t>() > static_cast<std::uint64_t>(max < 0 ? 0 : max);
    auto n = huge ? max : v->get<std::int64_t>();
    if (huge || n < min || n > max)
        fail(key, range_text(min, max, std::numeric_limits<std::int64_t>::min(),
                             std::numeric_limits<std::int64_t>::max()) +
                      ", got " + v->dump());
    return n;
}

double config_reader::number(std::string_view key, double def, double min, double max) const {
    const auto* v = find(key);
    if (!v) return def;
    if (!v->is_number()) fail(key, "wrong type: a number expected");
    double d = v->get<double>();
    if (std::isnan(d) || d < min || d > max)
        fail(key, range_text(min, max, -std::numeric_limits<double>::infinity(),
                             std::numeric_limits<double>::infinity()) +
                      ", got " + v->dump());
    return d;
}

std::filesystem::path config_reader::path(std::string_view key, std::filesystem::path def) const {
    if (!has(key)) return def;
    std::filesystem::path p = string(key, {});
    if (p.empty()) return p;
    if (p.is_relative() && !file_.empty()) p = file_.parent_path() / p;
    return p.lexically_normal();
}

}  // namespace mx
