// ops connector: connector settings (KEY=VALUE, as `mxctl connector set` takes them), domains,
// active switch and removal — each one store transaction, secrets written after the commit.
#include <algorithm>
#include <cctype>
#include <charconv>

#include "global/address.hpp"
#include "global/smtp_route.hpp"
#include "ops.hpp"

namespace mx::ops {
namespace {

int parse_port(const std::string& v) {
    int port = -1;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), port);
    if (ec != std::errc() || p != v.data() + v.size() || port < 0 || port > 65535)
        throw op_error("smtp.port must be a number 1..65535 (0 or empty: default), got '" + v +
                       "'");
    return port;
}

bool parse_bool(const std::string& key, const std::string& v) {
    if (v == "yes" || v == "true" || v == "on" || v == "1") return true;
    if (v == "no" || v == "false" || v == "off" || v == "0") return false;
    throw op_error(key + " must be yes or no, got '" + v + "'");
}

std::uint64_t parse_size(const std::string& key, const std::string& v) {
    std::uint64_t n = 0;
    std::size_t i = 0;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])))
        n = n * 10 + (v[i++] - '0');
    std::string unit = v.substr(i);
    if (i == 0 && !v.empty()) throw op_error(key + " must be a size like 10M, got '" + v + "'");
    if (unit.empty() || unit == "B") return n;
    if (unit == "K" || unit == "k" || unit == "KB") return n << 10;
    if (unit == "M" || unit == "MB") return n << 20;
    if (unit == "G" || unit == "GB") return n << 30;
    throw op_error(key + " must be a size like 10M, got '" + v + "'");
}

void apply_smtp_setting(connector_smtp& s, const std::string& key, const std::string& v) {
    if (key == "smtp.host")
        s.host = v;
    else if (key == "smtp.port")
        s.port = v.empty() ? 0 : parse_port(v);
    else if (key == "smtp.security") {
        if (v.empty())
            s.security.reset();
        else if (auto m = parse_tls_mode(v))
            s.security = *m;
        else
            throw op_error("smtp.security must be none, starttls or tls, got '" + v + "'");
    } else if (key == "smtp.auth") {
        auto a = parse_auth_method(v);
        if (!a)
            throw op_error("smtp.auth must be none, generic, google or microsoft, got '" + v + "'");
        s.auth = *a;
    } else if (key == "smtp.mechanism") {
        auto m = parse_sasl_mechanism(v);
        if (!m)
            throw op_error("smtp.mechanism must be auto, plain, login or cram-md5, got '" + v +
                           "'");
        s.mechanism = *m;
    } else if (key == "smtp.username")
        s.username = v;
    else if (key == "smtp.allow_plaintext_auth")
        s.allow_plaintext_auth = parse_bool(key, v);
    else
        throw op_error("unknown connector setting '" + key + "'");
}

}  // namespace

void apply_connector_setting(connector& c, const std::string& kv, secret_list& secrets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos)
        throw op_error("expected KEY=VALUE, got '" + kv +
                       "' (keys: active, drop_folder, smtp.host, "
                       "smtp.port, smtp.security, smtp.auth, smtp.mechanism, smtp.username, "
                       "smtp.secret, smtp.allow_plaintext_auth, bounce_sender, max_message_size, "
                       "default_target)");
    std::string key = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (key == "active")
        c.active = parse_bool(key, v);
    else if (key == "drop_folder" || key == "drop-folder")
        c.drop_folder = v;
    else if (key == "smtp.secret" || key == "smtp.password")
        secrets.emplace_back(secret_name::smtp_password(c.name), read_secret_value(v));
    else if (key == "bounce_sender") {
        if (!v.empty())
            c.bounce_sender = normalize_mailbox_arg(v);
        else
            c.bounce_sender.clear();
    } else if (key == "max_message_size")
        c.max_message_size = parse_size(key, v);
    else if (key == "default_target")
        c.default_target = v;
    else
        apply_smtp_setting(c.smtp, key, v);
}

void add_connector(env& e, const connector& c) {
    write(e, [&](store_tx& tx) { tx.add_connector(c); });
}

void create_connector(env& e, const std::string& name, const std::vector<std::string>& settings,
                      const std::vector<std::string>& domains) {
    connector c;
    c.name = name;
    c.domains = domains;
    secret_changes secrets;
    for (const auto& kv : settings) apply_connector_setting(c, kv, secrets.set);
    check_target_spec(e.cfg(), c.default_target);
    write(
        e, [&](store_tx& tx) { tx.add_connector(c); }, &secrets);
}

void update_connector(env& e, const std::string& name, const std::vector<std::string>& settings,
                      const std::optional<std::vector<std::string>>& domains) {
    secret_changes secrets;
    write(
        e,
        [&](store_tx& tx) {
            secrets.set.clear();
            auto c = tx.find_connector(name, true);
            if (!c) throw op_error("no connector named '" + name + "' (see: mxctl connector list)");
            std::string before = c->default_target;
            auto old_domains = c->domains;
            for (const auto& kv : settings) apply_connector_setting(*c, kv, secrets.set);
            if (c->default_target != before) check_target_spec(e.cfg(), c->default_target);
            tx.update_connector(*c);
            if (!domains) return;
            std::vector<std::string> wanted;
            for (const auto& d : *domains) {
                auto n = normalize_domain_pattern(d);
                if (!n) throw op_error("invalid domain '" + d + "'");
                wanted.push_back(*n);
            }
            for (const auto& d : old_domains)
                if (std::find(wanted.begin(), wanted.end(), d) == wanted.end())
                    tx.remove_domain(name, d);
            for (const auto& d : wanted)
                if (std::find(old_domains.begin(), old_domains.end(), d) == old_domains.end())
                    tx.add_domain(name, d);
        },
        &secrets);
}

void set_connector_active(env& e, const std::string& name, bool active) {
    write(e, [&](store_tx& tx) {
        auto c = tx.find_connector(name);
        if (!c) throw op_error("no connector named '" + name + "' (see: mxctl connector list)");
        c->active = active;
        tx.update_connector(*c);
    });
}

void remove_connector(env& e, const std::string& name, bool force) {
    secret_changes secrets;
    write(
        e,
        [&](store_tx& tx) {
            secrets.remove_prefixes = {"connector/" + name + "/"};
            tx.for_each_mailbox(
                [&](const mailbox& m) {
                    secrets.remove_prefixes.push_back("mailbox/" + m.address + "/");
                    return true;
                },
                name);
            tx.remove_connector(name, force);
        },
        &secrets);
}

void add_domain(env& e, const std::string& conn, const std::string& pattern) {
    write(e, [&](store_tx& tx) { tx.add_domain(conn, pattern); });
}

void remove_domain(env& e, const std::string& conn, const std::string& pattern) {
    write(e, [&](store_tx& tx) { tx.remove_domain(conn, pattern); });
}

bool has_smtp_secret(env& e, const std::string& connector) {
    try {
        return e.secrets().get(secret_name::smtp_password(connector)).has_value();
    } catch (const std::exception&) {
        return false;
    }
}

std::string smtp_summary(const config& cfg, const connector& c) {
    // One resolution rule for everybody: the bounce sender uses the same function.
    auto route = resolve_smtp_route(cfg, c);
    std::string s = route.describe();
    if (route.installation_default) s += " (installation default)";
    return s;
}

}  // namespace mx::ops
