#include "global/postfix_conf.hpp"

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace mx::postfix {
namespace {

namespace fs = std::filesystem;

std::string trim(const std::string& s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

bool starts_with(const std::string& s, std::string_view p) {
    return s.compare(0, p.size(), p) == 0;
}

std::string unbracket(std::string h) {
    if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    return h;
}

bool loopback(const std::string& h) {
    return h == "127.0.0.1" || h == "localhost" || h == "::1";
}

// Whitespace-separated words of a master.cf command line; "{ ... }" groups stay whole.
std::vector<std::string> split_words(const std::string& v) {
    std::vector<std::string> out;
    std::string cur;
    int depth = 0;
    for (char c : v) {
        if (c == '{') ++depth;
        if (c == '}' && depth > 0) --depth;
        if (depth == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
            continue;
        }
        cur += c;
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

}  // namespace

std::vector<std::string> split_list(const std::string& v) {
    std::vector<std::string> out;
    std::string cur;
    int depth = 0;
    auto flush = [&] {
        if (auto t = trim(cur); !t.empty()) out.push_back(t);
        cur.clear();
    };
    for (char c : v) {
        if (c == '{') ++depth;
        if (c == '}' && depth > 0) --depth;
        if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            flush();
            continue;
        }
        cur += c;
    }
    flush();
    return out;
}

std::optional<table_spec> parse_table(const std::string& item) {
    if (item.empty() || item.front() == '/' || item.front() == '$' || item.front() == '{')
        return std::nullopt;
    auto colon = item.find(':');
    if (colon == std::string::npos || colon == 0) return std::nullopt;
    return table_spec{item.substr(0, colon), item.substr(colon + 1)};
}

std::optional<milter_endpoint> parse_libmilter_spec(const std::string& spec) {
    milter_endpoint e;
    for (std::string_view prefix : {"unix:", "local:"}) {
        if (starts_with(spec, prefix)) {
            e.is_unix = true;
            e.path = spec.substr(prefix.size());
            return e;
        }
    }
    for (std::string_view prefix : {"inet:", "inet6:"}) {
        if (starts_with(spec, prefix)) {
            std::string rest = spec.substr(prefix.size());
            auto at = rest.find('@');
            e.port = rest.substr(0, at);
            e.host = at == std::string::npos ? (prefix == "inet6:" ? "::1" : "127.0.0.1")
                                             : unbracket(rest.substr(at + 1));
            return e;
        }
    }
    return std::nullopt;
}

milter_entry parse_milter_entry(const std::string& entry) {
    milter_entry e;
    std::string s = trim(entry);
    if (s.empty() || s.front() != '{') {
        e.address = s;
        return e;
    }
    s = s.substr(1, s.size() >= 2 && s.back() == '}' ? s.size() - 2 : s.size() - 1);
    std::vector<std::string> parts;
    std::stringstream in(s);
    for (std::string part; std::getline(in, part, ',');) parts.push_back(trim(part));
    if (!parts.empty()) e.address = parts[0];
    for (std::size_t i = 1; i < parts.size(); ++i) {
        auto eq = parts[i].find('=');
        if (eq != std::string::npos && trim(parts[i].substr(0, eq)) == "default_action")
            e.default_action = trim(parts[i].substr(eq + 1));
    }
    return e;
}

bool same_endpoint(const std::string& postfix_addr, const milter_endpoint& ours,
                   const std::string& queue_dir, bool chrooted) {
    if (ours.is_unix) {
        std::string p;
        if (starts_with(postfix_addr, "unix:"))
            p = postfix_addr.substr(5);
        else if (starts_with(postfix_addr, "local:"))
            p = postfix_addr.substr(6);
        else if (!postfix_addr.empty() && postfix_addr.front() == '/')
            p = postfix_addr;
        else
            return false;
        if (p.empty()) return false;
        fs::path candidate = fs::path(p).is_relative() ? fs::path(queue_dir) / p
                             : chrooted ? fs::path(queue_dir) / fs::path(p).relative_path()
                                        : fs::path(p);
        return candidate.lexically_normal() == fs::path(ours.path).lexically_normal();
    }
    if (!starts_with(postfix_addr, "inet:")) return false;
    std::string rest = postfix_addr.substr(5);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return false;
    std::string host = unbracket(rest.substr(0, colon)), port = rest.substr(colon + 1);
    return port == ours.port && (host == ours.host || (loopback(host) && loopback(ours.host)));
}

bool inside_queue_dir(const std::string& path, const std::string& queue_dir) {
    auto q = fs::path(queue_dir).lexically_normal().string();
    if (!q.empty() && q.back() != '/') q += '/';
    return starts_with(fs::path(path).lexically_normal().string(), q);
}

std::string postfix_address(const milter_endpoint& ours, const std::string& queue_dir) {
    if (!ours.is_unix) {
        bool v6 = ours.host.find(':') != std::string::npos;
        return "inet:" + (v6 ? "[" + ours.host + "]" : ours.host) + ":" + ours.port;
    }
    if (inside_queue_dir(ours.path, queue_dir)) {
        auto q = fs::path(queue_dir).lexically_normal().string();
        if (q.back() != '/') q += '/';
        return "unix:" + fs::path(ours.path).lexically_normal().string().substr(q.size());
    }
    return "unix:" + ours.path;
}

std::vector<master_service> parse_master(const std::string& out) {
    std::vector<master_service> v;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        if (trim(line).empty() || trim(line).front() == '#') continue;
        std::istringstream ls(line);
        master_service s;
        if (!(ls >> s.name >> s.type >> s.priv >> s.unpriv >> s.chroot >> s.wakeup >> s.maxproc >>
              s.command))
            continue;
        // "{ a = b, c }" groups stay one argument, as master(8) reads them.
        std::string rest;
        std::getline(ls, rest);
        for (auto& a : split_words(rest)) s.args.push_back(a);
        v.push_back(std::move(s));
    }
    return v;
}

std::optional<std::string> service_override(const master_service& s, const std::string& name) {
    std::optional<std::string> found;
    for (std::size_t i = 0; i + 1 < s.args.size(); ++i) {
        if (s.args[i] != "-o") continue;
        std::string a = s.args[i + 1];
        if (!a.empty() && a.front() == '{') a = a.substr(1, a.size() - (a.back() == '}' ? 2 : 1));
        auto eq = a.find('=');
        if (eq != std::string::npos && trim(a.substr(0, eq)) == name)
            found = trim(a.substr(eq + 1));
    }
    return found;
}

std::optional<std::pair<std::string, std::string>> smtpd_listen(const master_service& s,
                                                                const std::string& interfaces) {
    if (s.type != "inet") return std::nullopt;
    std::string host, port = s.name;
    if (auto colon = s.name.rfind(':'); colon != std::string::npos) {
        host = unbracket(s.name.substr(0, colon));
        port = s.name.substr(colon + 1);
    }
    if (port == "smtp") port = "25";
    if (port == "submission") port = "587";
    if (port == "smtps" || port == "submissions") port = "465";
    if (port.empty() || !std::all_of(port.begin(), port.end(), ::isdigit)) return std::nullopt;
    if (host.empty()) {
        // The first address of inet_interfaces; "all" and "loopback-only" reach loopback.
        auto ifs = split_list(interfaces);
        host = ifs.empty() || ifs[0] == "all" || ifs[0] == "loopback-only" ? "127.0.0.1"
                                                                           : unbracket(ifs[0]);
    }
    return std::make_pair(host, port);
}

milter_tables milter_tables_of(const config& cfg) {
    milter_tables t;
    if (starts_with(cfg.milter.socketmap, "unix:")) t.socketmap = cfg.milter.socketmap.substr(5);
    t.domain_table = cfg.milter.domain_table;
    t.drop_table = cfg.milter.drop_table;
    t.virtual_map = cfg.milter.virtual_map;
    t.recipient_table = cfg.milter.recipient_table;
    return t;
}

std::string list_with(const std::string& list, const std::string& item) {
    auto items = split_list(list);
    if (std::find(items.begin(), items.end(), item) != items.end()) return list;
    return trim(list).empty() ? item : trim(list) + ", " + item;
}

std::string list_without(const std::string& list, const std::string& item) {
    std::string out;
    for (const auto& i : split_list(list)) {
        if (i == item) continue;
        out += (out.empty() ? "" : ", ") + i;
    }
    return out;
}

namespace {

// smtpd_milters with our socket in it (unchanged when an entry already designates it).
std::string milters_with_ours(const std::optional<std::string>& now, const milter_endpoint& ours,
                              const std::string& queue_dir) {
    std::string list = now.value_or("");
    for (const auto& item : split_list(list))
        if (same_endpoint(parse_milter_entry(item).address, ours, queue_dir, false)) return list;
    return list_with(list, postfix_address(ours, queue_dir));
}

// Debian's main.cf sets smtpd_relay_restrictions already; keep the admin's rules and only add
// the relay protection when no *_unauth_destination rule is there.
std::optional<std::string> relay_restrictions(const std::optional<std::string>& now) {
    if (!now) return std::nullopt;  // Postfix's default defers unauthorised relaying already
    for (const auto& r : split_list(*now))
        if (r == "reject_unauth_destination" || r == "defer_unauth_destination")
            return std::nullopt;
    return list_with(*now, "reject_unauth_destination");
}

// smtpd_milters without any entry designating our socket (table mode).
std::string milters_without_ours(const std::optional<std::string>& now, const milter_endpoint& ours,
                                 const std::string& queue_dir) {
    std::string out;
    for (const auto& item : split_list(now.value_or("")))
        if (!same_endpoint(parse_milter_entry(item).address, ours, queue_dir, false))
            out += (out.empty() ? "" : ", ") + item;
    return out;
}

bool has_entry(const std::string& list, const std::string& entry) {
    auto items = split_list(list);
    auto want = split_list(entry);
    return std::search(items.begin(), items.end(), want.begin(), want.end()) != items.end();
}

}  // namespace

std::string recipient_access_entry(const milter_tables& t) {
    return "check_recipient_access lmdb:" + t.recipient_table;
}

std::string restrictions_without(const std::string& list, const std::string& entry) {
    // Cut the entry's words out of the text itself, so that the admin's spelling of the rest
    // ("reject_rbl_client zen.example" as two words of one rule) stays as it was.
    auto sep = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n'; };
    std::vector<std::pair<std::size_t, std::size_t>> words;  // [begin, end)
    for (std::size_t i = 0; i < list.size();) {
        if (sep(list[i])) {
            ++i;
            continue;
        }
        std::size_t b = i;
        while (i < list.size() && !sep(list[i])) ++i;
        words.emplace_back(b, i);
    }
    auto want = split_list(entry);
    for (std::size_t i = 0; i + want.size() <= words.size() && !want.empty(); ++i) {
        bool match = true;
        for (std::size_t k = 0; k < want.size() && match; ++k)
            match = list.compare(words[i + k].first, words[i + k].second - words[i + k].first,
                                 want[k]) == 0;
        if (!match) continue;
        std::size_t last = i + want.size() - 1;
        std::string out;
        if (last + 1 < words.size())  // up to the next rule
            out = list.substr(0, words[i].first) + list.substr(words[last + 1].first);
        else if (i > 0)  // the last rule: from the end of the previous one
            out = list.substr(0, words[i - 1].second);
        return trim(out);
    }
    return list;
}

wiring plan_wiring(const config& cfg, const current_main& now, unsigned uid, unsigned gid) {
    auto tables = milter_tables_of(cfg);
    auto ours = parse_libmilter_spec(cfg.milter.socket);
    if (!ours) throw std::invalid_argument("[milter] socket '" + cfg.milter.socket + "' unknown");
    if (tables.domain_table.empty() && tables.socketmap.empty())
        throw std::invalid_argument(
            "[milter] domain_table and socketmap are both disabled: Postfix could not learn "
            "the connector domains");
    if (now.virtual_mailbox_maps && !trim(*now.virtual_mailbox_maps).empty())
        throw std::invalid_argument(
            "virtual_mailbox_maps = " + *now.virtual_mailbox_maps +
            " is set: MX Connector needs it empty (mx-milter decides who exists); wire this "
            "Postfix by hand (docs/postfix.md)");
    std::string domains = now.virtual_mailbox_domains.value_or("");
    if (trim(domains) == "$virtual_mailbox_maps") domains.clear();
    if (!tables.domain_table.empty()) domains = list_with(domains, "lmdb:" + tables.domain_table);
    if (!tables.socketmap.empty())
        domains = list_with(domains, "socketmap:unix:" + tables.socketmap + ":domain");
    std::string id = std::to_string(uid);
    wiring w;
    w.main = {{"virtual_mailbox_domains", domains},
              {"virtual_mailbox_maps", ""},
              {"virtual_mailbox_base", "/"},
              {"virtual_uid_maps", "static:" + id},
              {"virtual_gid_maps", "static:" + std::to_string(gid)},
              {"virtual_minimum_uid", id}};
    if (tables.recipient_table.empty()) {
        w.main.insert(
            w.main.end(),
            {{"smtpd_milters", milters_with_ours(now.smtpd_milters, *ours, now.queue_directory)},
             {"milter_default_action", "tempfail"},
             {"milter_protocol", "6"},
             {"milter_connect_timeout", "10s"},
             {"milter_command_timeout", "30s"}});
    } else {
        // Table mode: Postfix decides from the recipient table; no milter in the SMTP path.
        std::string restrictions = now.smtpd_recipient_restrictions.value_or("");
        auto entry = recipient_access_entry(tables);
        if (!has_entry(restrictions, entry))
            restrictions = trim(restrictions).empty() ? entry : trim(restrictions) + ", " + entry;
        std::string parents;
        for (const auto& item : split_list(now.parent_domain_matches_subdomains))
            if (item != "smtpd_access_maps") parents += (parents.empty() ? "" : ",") + item;
        w.main.insert(
            w.main.end(),
            {{"smtpd_milters", milters_without_ours(now.smtpd_milters, *ours, now.queue_directory)},
             {"smtpd_recipient_restrictions", restrictions},
             {"recipient_delimiter", cfg.subaddress_delimiter},
             {"parent_domain_matches_subdomains", parents}});
    }
    if (now.non_smtpd_milters) {
        std::string kept;
        for (const auto& item : split_list(*now.non_smtpd_milters))
            if (!same_endpoint(parse_milter_entry(item).address, *ours, now.queue_directory, false))
                kept += (kept.empty() ? "" : ", ") + item;
        if (kept != trim(*now.non_smtpd_milters)) w.main.emplace_back("non_smtpd_milters", kept);
    }
    if (auto relay = relay_restrictions(now.smtpd_relay_restrictions))
        w.main.emplace_back("smtpd_relay_restrictions", *relay);
    w.virtual_service = "virtual unix - n n - - virtual";
    std::string maps;
    if (!tables.drop_table.empty()) maps = "lmdb:" + tables.drop_table;
    if (!tables.virtual_map.empty())
        maps += (maps.empty() ? "" : ",") + ("regexp:" + tables.virtual_map);
    w.virtual_maps = maps;
    return w;
}

}  // namespace mx::postfix
