#include "global/cluster.hpp"

#include <regex>

#include "global/config_reader.hpp"

namespace mx::cluster {

std::optional<cluster_config> cluster_of(const config& cfg) {
    if (!cfg.raw.is_object() || !cfg.raw.contains("cluster")) return std::nullopt;
    config_reader r(cfg, "cluster");
    cluster_config c;
    c.postgresql = r.string("postgresql", "");
    if (c.postgresql.empty()) r.fail("postgresql", "is required (a libpq conninfo or URI)");
    c.node = r.string("node", cfg.hostname);
    // The node name becomes a folder name (.work/<node>) and a key: keep it plain.
    static const std::regex node_re("[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
    if (!std::regex_match(c.node, node_re))
        r.fail("node", "\"" + c.node + "\" must be 1-63 letters, digits, '.', '_' or '-'");
    auto seconds = [&](const char* key, std::chrono::seconds def, std::int64_t min,
                       std::int64_t max) {
        return std::chrono::seconds(r.integer(key, def.count(), min, max));
    };
    c.lease = seconds("lease_seconds", c.lease, 5, 86400);
    c.max_staleness = seconds("max_staleness", c.max_staleness, 0, 86400 * 30);
    c.check_interval = seconds("check_seconds", c.check_interval, 1, 3600);
    c.connect_timeout = seconds("connect_timeout", c.connect_timeout, 1, 300);
    const std::string key = r.string("key_file", "");
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
