#include "global/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <toml++/toml.h>

#include <cctype>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

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

class reader {
  public:
    reader(const nlohmann::json& root, const std::filesystem::path& origin)
        : root_(root), origin_(origin) {}

    template <typename T>
    void get(const nlohmann::json& obj, const char* section, const char* key, T& out) const {
        auto it = obj.find(key);
        if (it == obj.end()) return;
        try {
            out = it->get<T>();
        } catch (const nlohmann::json::exception&) {
            throw config_error(where(section, key) + ": wrong type");
        }
    }
    void path(const nlohmann::json& obj, const char* section, const char* key,
              std::filesystem::path& out) const {
        std::string s;
        get(obj, section, key, s);
        if (s.empty()) return;
        std::filesystem::path p(s);
        if (p.is_relative() && !origin_.empty()) p = origin_.parent_path() / p;
        out = p.lexically_normal();
    }
    std::string where(const char* section, const char* key) const {
        std::string w = origin_.empty() ? std::string("config") : origin_.string();
        w += ": ";
        if (section && *section) w += std::string(section) + ".";
        return w + key;
    }

  private:
    const nlohmann::json& root_;
    const std::filesystem::path& origin_;
};

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
    reader r(c.raw, origin);
    const auto& root = c.raw;
    r.path(root, "", "state_dir", c.state_dir);
    r.path(root, "", "run_dir", c.run_dir);
    r.path(root, "", "mail_root", c.mail_root);
    r.get(root, "", "hostname", c.hostname);
    if (root.contains("user")) {
        std::string u;
        r.get(root, "", "user", u);
        if (!u.empty()) c.user = u;
    }
    r.get(root, "", "subaddress_delimiter", c.subaddress_delimiter);
    if (c.subaddress_delimiter.size() > 1)
        throw config_error(r.where("", "subaddress_delimiter") + ": one character or empty");
    r.get(root, "", "postmaster_target", c.postmaster_target);
    if (!c.postmaster_target.empty() && c.postmaster_target.find(':') == std::string::npos)
        throw config_error(r.where("", "postmaster_target") +
                           ": a target spec such as \"maildir:/var/mail/postmaster\"");
    if (c.postmaster_target.rfind("maildir:", 0) == 0)
        c.postmaster_target = "maildir:" + c.resolve_path(c.postmaster_target.substr(8)).string();
    r.get(root, "", "log_level", c.log_level);
    r.get(root, "", "log_sink", c.log_sink);
    if (c.log_sink != "stderr" && c.log_sink != "syslog")
        throw config_error(r.where("", "log_sink") + ": must be \"stderr\" or \"syslog\"");
    if (c.hostname.empty()) c.hostname = machine_fqdn();

    c.milter.socket = "unix:" + (c.run_dir / "milter.sock").string();
    const auto& m = c.section("milter");
    r.get(m, "milter", "socket", c.milter.socket);
    c.milter.socket = c.resolve_socket(c.milter.socket);
    r.get(m, "milter", "socket_group", c.milter.socket_group);
    if (m.contains("socket_mode")) {
        std::string mode;
        if (m["socket_mode"].is_string()) {
            mode = m["socket_mode"].get<std::string>();
            c.milter.socket_mode = static_cast<unsigned>(std::stoul(mode, nullptr, 8));
        } else {
            r.get(m, "milter", "socket_mode", c.milter.socket_mode);
        }
    }
    std::string unknown = c.milter.reject_unknown_domains ? "reject" : "continue";
    r.get(m, "milter", "unknown_domain", unknown);
    if (unknown != "continue" && unknown != "reject")
        throw config_error(r.where("milter", "unknown_domain") +
                           ": must be \"continue\" or \"reject\"");
    c.milter.reject_unknown_domains = unknown == "reject";
    r.get(m, "milter", "accept_postmaster", c.milter.accept_postmaster);
    r.get(m, "milter", "reject_text", c.milter.reject_text);
    r.get(m, "milter", "hide_existence", c.milter.hide_existence);
    r.get(m, "milter", "timeout_seconds", c.milter.timeout_seconds);
    if (c.milter.socket.rfind("unix:", 0) != 0 && c.milter.socket.rfind("inet:", 0) != 0 &&
        c.milter.socket.rfind("inet6:", 0) != 0 && c.milter.socket.rfind("local:", 0) != 0)
        throw config_error(r.where("milter", "socket") +
                           ": must start with unix:, local:, inet: or inet6:");
    r.get(m, "milter", "allow_remote", c.milter.allow_remote);
    if (bool v6 = c.milter.socket.rfind("inet6:", 0) == 0;
        v6 || c.milter.socket.rfind("inet:", 0) == 0) {
        // libmilter binds every interface for "inet:PORT": make the default loopback.
        auto at = c.milter.socket.find('@');
        if (at == std::string::npos) {
            c.milter.socket += v6 ? "@[::1]" : "@127.0.0.1";
        } else if (!loopback_host(c.milter.socket.substr(at + 1)) && !c.milter.allow_remote) {
            throw config_error(r.where("milter", "socket") + ": " + c.milter.socket.substr(at + 1) +
                               " is not a loopback address: anybody who can reach it can ask "
                               "which addresses have a mailbox here. Use inet:PORT (loopback) or "
                               "set [milter] allow_remote = true and firewall the port");
        }
    }

    const auto& s = c.section("smtp");
    r.get(s, "smtp", "host", c.smtp.host);
    r.get(s, "smtp", "port", c.smtp.port);
    if (c.smtp.port < 1 || c.smtp.port > 65535)
        throw config_error(r.where("smtp", "port") + ": must be 1..65535");
    std::string sec(to_string(c.smtp.security));
    r.get(s, "smtp", "security", sec);
    auto mode = parse_tls_mode(sec);
    if (!mode) throw config_error(r.where("smtp", "security") + ": must be none, starttls or tls");
    c.smtp.security = *mode;
    r.get(s, "smtp", "ca_file", c.smtp.ca_file);
    r.get(s, "smtp", "verify_peer", c.smtp.verify_peer);
    r.get(s, "smtp", "timeout_seconds", c.smtp.timeout_seconds);
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
