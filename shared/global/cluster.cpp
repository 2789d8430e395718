#include "global/cluster.hpp"

#include <regex>

namespace mx::cluster {
namespace {

std::chrono::seconds seconds_key(const config& cfg, const nlohmann::json& s, const char* key,
                                 std::chrono::seconds def, long min, long max) {
    if (!s.contains(key)) return def;
    const auto& v = s.at(key);
    if (!v.is_number_integer())
        throw config_error(cfg.file.string() + ": cluster." + std::string(key) +
                           " must be an integer number of seconds");
    const long n = v.get<long>();
    if (n < min || n > max)
        throw config_error(cfg.file.string() + ": cluster." + std::string(key) +
                           " must be between " + std::to_string(min) + " and " +
                           std::to_string(max) + " seconds");
    return std::chrono::seconds(n);
}

std::string string_key(const config& cfg, const nlohmann::json& s, const char* key) {
    if (!s.contains(key)) return {};
    if (!s.at(key).is_string())
        throw config_error(cfg.file.string() + ": cluster." + std::string(key) +
                           " must be a string");
    return s.at(key).get<std::string>();
}

}  // namespace

std::optional<cluster_config> cluster_of(const config& cfg) {
    if (!cfg.raw.is_object() || !cfg.raw.contains("cluster")) return std::nullopt;
    const auto& s = cfg.section("cluster");
    cluster_config c;
    c.postgresql = string_key(cfg, s, "postgresql");
    if (c.postgresql.empty())
        throw config_error(cfg.file.string() +
                           ": cluster.postgresql is required (a libpq conninfo or URI)");
    c.node = string_key(cfg, s, "node");
    if (c.node.empty()) c.node = cfg.hostname;
    // The node name becomes a folder name (.work/<node>) and a key: keep it plain.
    static const std::regex node_re("[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
    if (!std::regex_match(c.node, node_re))
        throw config_error(cfg.file.string() + ": cluster.node \"" + c.node +
                           "\" must be 1-63 letters, digits, '.', '_' or '-'");
    c.lease = seconds_key(cfg, s, "lease_seconds", c.lease, 5, 86400);
    c.max_staleness = seconds_key(cfg, s, "max_staleness", c.max_staleness, 0, 86400 * 30);
    c.check_interval = seconds_key(cfg, s, "check_seconds", c.check_interval, 1, 3600);
    c.connect_timeout = seconds_key(cfg, s, "connect_timeout", c.connect_timeout, 1, 300);
    const std::string key = string_key(cfg, s, "key_file");
    c.key_file = key.empty() ? cfg.state_dir / "cluster.key" : cfg.resolve_path(key);
    return c;
}

std::string redact_conninfo(std::string_view conninfo) {
    std::string s(conninfo);
    // URI form: postgresql://user:secret@host/db
    static const std::regex uri_re(R"(^(postgres(?:ql)?://[^:/@]*:)[^@]*@)");
    s = std::regex_replace(s, uri_re, "$1***@");
    // key=value form, quoted or not; also password=... as a URI query parameter.
    static const std::regex kv_re(R"((password\s*=\s*)('([^'\\]|\\.)*'|[^\s&]*))",
                                  std::regex::icase);
    return std::regex_replace(s, kv_re, "$1***");
}

}  // namespace mx::cluster
