#include "global/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "global/config_reader.hpp"

namespace mx {
namespace {

// HOST of an inet milter spec a loopback address? Numeric literals and "localhost" only: a
// name that needs DNS is not known to be local.
bool loopback_host(std::string host) {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (host == "localhost") return true;
    in_addr a4{};
    if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    if (::inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

nlohmann::json to_json(const toml::node& node) {
    if (auto* t = node.as_table()) {
        nlohmann::json j = nlohmann::json::object();
        for (auto&& [k, v] : *t) j[std::string(k.str())] = to_json(v);
        return j;
    }
    if (auto* a = node.as_array()) {
        nlohmann::json j = nlohmann::json::array();
        for (auto&& v : *a) j.push_back(to_json(v));
        return j;
    }
    if (auto* s = node.as_string()) return s->get();
    if (auto* i = node.as_integer()) return i->get();
    if (auto* f = node.as_floating_point()) return f->get();
    if (auto* b = node.as_boolean()) return b->get();
    std::ostringstream os;  // dates and times stay readable strings
    if (auto* d = node.as_date()) os << d->get();
    if (auto* t = node.as_time()) os << t->get();
    if (auto* dt = node.as_date_time()) os << dt->get();
    return os.str();
}

std::string machine_fqdn() {
    char buf[HOST_NAME_MAX + 1] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
    return buf;
}

// The top-level keys.
void read_core(config& c) {
    config_reader r(c, "");
    c.state_dir = r.path("state_dir", c.state_dir);
    c.run_dir = r.path("run_dir", c.run_dir);
    c.mail_root = r.path("mail_root", c.mail_root);
    c.hostname = r.string("hostname", c.hostname);
    if (auto u = r.string("user", ""); !u.empty()) c.user = u;
    c.subaddress_delimiter = r.string("subaddress_delimiter", c.subaddress_delimiter);
    if (c.subaddress_delimiter.size() > 1) r.fail("subaddress_delimiter", "one character or empty");
    c.postmaster_target = r.string("postmaster_target", c.postmaster_target);
    if (!c.postmaster_target.empty() && c.postmaster_target.find(':') == std::string::npos)
        r.fail("postmaster_target", "a target spec such as \"maildir:/var/mail/postmaster\"");
    if (c.postmaster_target.rfind("maildir:", 0) == 0)
        c.postmaster_target = "maildir:" + c.resolve_path(c.postmaster_target.substr(8)).string();
    c.log_level =
        r.word("log_level", c.log_level,
               {"trace", "debug", "info", "warn", "warning", "error", "err", "critical", "off"});
    c.log_sink = r.word("log_sink", c.log_sink, {"stderr", "syslog"});
    if (c.hostname.empty()) c.hostname = machine_fqdn();
}

// socket_mode: octal as a string ("0660") or a decimal integer.
unsigned socket_mode_of(const config_reader& r, unsigned def) {
    if (!r.has("socket_mode")) return def;
    std::int64_t mode = 0;
    try {
        mode = r.integer("socket_mode", def, 0, 07777);
    } catch (const config_error&) {
        std::string s = r.string("socket_mode", "");
        char* end = nullptr;
        errno = 0;
        unsigned long v = std::strtoul(s.c_str(), &end, 8);
        if (s.empty() || errno != 0 || *end != '\0' || v > 07777)
            r.fail("socket_mode", "an octal mode such as \"0660\", got \"" + s + "\"");
        mode = static_cast<std::int64_t>(v);
    }
    return static_cast<unsigned>(mode);
}

// A path key of [milter]: `fallback` in run_dir when absent, "" when set to "" (disabled).
std::string table_path(const config_reader& r, const config& c, const char* key,
                       const char* fallback) {
    return r.path(key, c.run_dir / fallback).string();
}

void read_milter(config& c) {
    config_reader r(c, "milter");
    auto& m = c.milter;
    m.socket = c.resolve_socket(r.string("socket", "unix:" + (c.run_dir / "milter.sock").string()));
    m.socket_group = r.string("socket_group", m.socket_group);
    m.socket_mode = socket_mode_of(r, m.socket_mode);
    m.reject_unknown_domains =
        r.word("unknown_domain", "continue", {"continue", "reject"}) == "reject";
    m.accept_postmaster = r.boolean("accept_postmaster", m.accept_postmaster);
    m.reject_text = r.string("reject_text", m.reject_text);
    m.hide_existence = r.boolean("hide_existence", m.hide_existence);
    m.timeout_seconds = static_cast<int>(r.integer("timeout_seconds", m.timeout_seconds, 1, 3600));
    if (m.socket.rfind("unix:", 0) != 0 && m.socket.rfind("inet:", 0) != 0 &&
        m.socket.rfind("inet6:", 0) != 0 && m.socket.rfind("local:", 0) != 0)
        r.fail("socket", "must start with unix:, local:, inet: or inet6:");
    m.allow_remote = r.boolean("allow_remote", m.allow_remote);
    if (bool v6 = m.socket.rfind("inet6:", 0) == 0; v6 || m.socket.rfind("inet:", 0) == 0) {
        // libmilter binds every interface for "inet:PORT": make the default loopback.
        auto at = m.socket.find('@');
        if (at == std::string::npos) {
            m.socket += v6 ? "@[::1]" : "@127.0.0.1";
        } else if (!loopback_host(m.socket.substr(at + 1)) && !m.allow_remote) {
            r.fail("socket", m.socket.substr(at + 1) +
                                 " is not a loopback address: anybody who can reach it can ask "
                                 "which addresses have a mailbox here. Use inet:PORT (loopback) "
                                 "or set [milter] allow_remote = true and firewall the port");
        }
    }
    m.socketmap =
        c.resolve_socket(r.string("socketmap", "unix:" + (c.run_dir / "socketmap.sock").string()));
    m.domain_table = table_path(r, c, "domain_table", "domains");
    m.drop_table = table_path(r, c, "drop_table", "virtual_mailbox");
    m.virtual_map = table_path(r, c, "virtual_map", "virtual_mailbox.regexp");
    m.recipient_table = r.path("recipient_table", {}).string();  // off unless set
}

void read_smtp(config& c) {
    config_reader r(c, "smtp");
    c.smtp.host = r.string("host", c.smtp.host);
    c.smtp.port = static_cast<int>(r.integer("port", c.smtp.port, 1, 65535));
    c.smtp.security = *parse_tls_mode(r.word("security", std::string(to_string(c.smtp.security)),
                                             {"none", "starttls", "tls", "smtps"}));
    c.smtp.ca_file = r.string("ca_file", c.smtp.ca_file);
    c.smtp.verify_peer = r.boolean("verify_peer", c.smtp.verify_peer);
    c.smtp.timeout_seconds =
        static_cast<int>(r.integer("timeout_seconds", c.smtp.timeout_seconds, 1, 3600));
}

}  // namespace

std::optional<tls_mode> parse_tls_mode(std::string_view s) {
    if (s == "none") return tls_mode::none;
    if (s == "starttls") return tls_mode::starttls;
    if (s == "tls" || s == "smtps") return tls_mode::tls;
    return std::nullopt;
}

std::string_view to_string(tls_mode m) {
    switch (m) {
        case tls_mode::none:
            return "none";
        case tls_mode::starttls:
            return "starttls";
        case tls_mode::tls:
            return "tls";
    }
    return "none";
}

const nlohmann::json& config::section(const std::string& name) const {
    static const nlohmann::json empty = nlohmann::json::object();
    if (!raw.is_object()) return empty;
    auto it = raw.find(name);
    if (it == raw.end() || !it->is_object()) return empty;
    return *it;
}

std::filesystem::path config::resolve_path(const std::filesystem::path& p) const {
    if (p.empty() || p.is_absolute() || file.empty()) return p;
    return (file.parent_path() / p).lexically_normal();
}

std::string config::resolve_socket(const std::string& spec) const {
    for (const char* prefix : {"unix:", "local:"}) {
        std::string_view pre(prefix);
        if (spec.rfind(pre, 0) == 0 && spec.size() > pre.size())
            return std::string(pre) + resolve_path(spec.substr(pre.size())).string();
    }
    return spec;
}

std::filesystem::path resolve_config_path(const std::string& explicit_path) {
    if (!explicit_path.empty()) return explicit_path;
    if (const char* env = std::getenv("MX_CONFIG"); env && *env) return env;
    return default_config_path;
}

config parse_config(std::string_view toml_text, const std::filesystem::path& origin) {
    toml::table tbl;
    try {
        tbl = toml::parse(toml_text, origin.string());
    } catch (const toml::parse_error& e) {
        std::ostringstream os;
        os << (origin.empty() ? std::string("config") : origin.string()) << ":"
           << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
        throw config_error(os.str());
    }
    config c;
    c.file = origin;
    c.raw = to_json(tbl);
    read_core(c);
    read_milter(c);
    read_smtp(c);
    return c;
}

std::string config::effective_postmaster_target() const {
    if (!postmaster_target.empty()) return postmaster_target;
    return "maildir:" + (mail_root / "postmaster").string();
}

config load_config(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw config_error(path.string() +
                           ": cannot read the configuration file (give --config PATH or set "
                           "MX_CONFIG)");
    std::ostringstream ss;
    ss << in.rdbuf();
    std::filesystem::path abs = std::filesystem::absolute(path);
    return parse_config(ss.str(), abs);
}

}  // namespace mx
