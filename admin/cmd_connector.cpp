// mxctl connector add|set|show|list|remove|enable|disable, domain add|remove|list.
#include <charconv>
#include <iostream>

#include "global/address.hpp"
#include "global/smtp_route.hpp"
#include "mxctl.hpp"

namespace mx::admin {
namespace {

int parse_port(const std::string& v) {
    int port = -1;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), port);
    if (ec != std::errc() || p != v.data() + v.size() || port < 0 || port > 65535)
        throw cli_error("smtp.port must be a number 1..65535 (0 or empty: default), got '" + v +
                        "'");
    return port;
}

bool parse_bool(const std::string& key, const std::string& v) {
    if (v == "yes" || v == "true" || v == "on" || v == "1") return true;
    if (v == "no" || v == "false" || v == "off" || v == "0") return false;
    throw cli_error(key + " must be yes or no, got '" + v + "'");
}

std::uint64_t parse_size(const std::string& key, const std::string& v) {
    std::uint64_t n = 0;
    std::size_t i = 0;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])))
        n = n * 10 + (v[i++] - '0');
    std::string unit = v.substr(i);
    if (i == 0 && !v.empty()) throw cli_error(key + " must be a size like 10M, got '" + v + "'");
    if (unit.empty() || unit == "B") return n;
    if (unit == "K" || unit == "k" || unit == "KB") return n << 10;
    if (unit == "M" || unit == "MB") return n << 20;
    if (unit == "G" || unit == "GB") return n << 30;
    throw cli_error(key + " must be a size like 10M, got '" + v + "'");
}

std::string connector_smtp_summary(const connector& c, const config& cfg) {
    // One resolution rule for everybody: the bounce sender uses the same function.
    auto route = resolve_smtp_route(cfg, c);
    std::string s = route.describe();
    if (route.installation_default) s += " (installation default)";
    return s;
}

nlohmann::json connector_json(const connector& c, mxctl_context& ctx, std::size_t mailboxes) {
    auto j = to_json(c);
    bool has_secret = false;
    try {
        has_secret = ctx.secrets().get(secret_name::smtp_password(c.name)).has_value();
    } catch (const std::exception&) {
    }
    j["smtp"]["secret"] = has_secret ? "***" : "";
    j["mailboxes"] = mailboxes;
    return j;
}

}  // namespace

// Applies KEY=VALUE to a connector; secrets are returned separately (name -> value).
static void apply_connector_setting(connector& c, const std::string& kv,
                                    std::vector<std::pair<std::string, std::string>>& secrets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos)
        throw cli_error("expected KEY=VALUE, got '" + kv +
                        "' (keys: active, drop_folder, smtp.host, "
                        "smtp.port, smtp.security, smtp.auth, smtp.mechanism, smtp.username, "
                        "smtp.secret, smtp.allow_plaintext_auth, bounce_sender, max_message_size, "
                        "default_target)");
    std::string key = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (key == "active")
        c.active = parse_bool(key, v);
    else if (key == "drop_folder" || key == "drop-folder")
        c.drop_folder = v;
    else if (key == "smtp.host")
        c.smtp.host = v;
    else if (key == "smtp.port")
        c.smtp.port = v.empty() ? 0 : parse_port(v);
    else if (key == "smtp.security") {
        if (v.empty())
            c.smtp.security.reset();
        else if (auto m = parse_tls_mode(v))
            c.smtp.security = *m;
        else
            throw cli_error("smtp.security must be none, starttls or tls, got '" + v + "'");
    } else if (key == "smtp.auth") {
        auto a = parse_auth_method(v);
        if (!a)
            throw cli_error("smtp.auth must be none, generic, google or microsoft, got '" + v +
                            "'");
        c.smtp.auth = *a;
    } else if (key == "smtp.mechanism") {
        auto m = parse_sasl_mechanism(v);
        if (!m)
            throw cli_error("smtp.mechanism must be auto, plain, login or cram-md5, got '" + v +
                            "'");
        c.smtp.mechanism = *m;
    } else if (key == "smtp.username")
        c.smtp.username = v;
    else if (key == "smtp.secret" || key == "smtp.password")
        secrets.emplace_back(secret_name::smtp_password(c.name), read_secret_value(v));
    else if (key == "smtp.allow_plaintext_auth")
        c.smtp.allow_plaintext_auth = parse_bool(key, v);
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
        throw cli_error("unknown connector setting '" + key + "'");
}

void add_connector_commands(CLI::App& app, mxctl_context& ctx) {
    auto* conn = app.add_subcommand("connector", "manage connectors (drop folder, domains, SMTP)");
    conn->require_subcommand(1);

    {
        auto* cmd = conn->add_subcommand("add", "add a connector");
        struct opts {
            std::string name, drop;
            std::vector<std::string> domains;
            bool inactive = false;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("NAME", o->name, "connector name")->required();
        cmd->add_option("--drop-folder", o->drop, "absolute path of the drop folder")->required();
        cmd->add_option("--domain", o->domains,
                        "domain served (repeatable): example.com, .example.com, .");
        cmd->add_flag("--inactive", o->inactive, "create it switched off");
        cmd->callback([&ctx, o] {
            connector c;
            c.name = o->name;
            c.drop_folder = o->drop;
            c.active = !o->inactive;
            c.domains = o->domains;
            ctx.open_store().write([&](store_tx& tx) { tx.add_connector(c); });
            std::cout << "connector " << c.name << " added\n";
        });
    }
    {
        auto* cmd =
            conn->add_subcommand("set", "change settings: KEY=VALUE (smtp.secret=- reads stdin)");
        struct opts {
            std::string name;
            std::vector<std::string> kv;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("NAME", o->name, "connector name")->required();
        cmd->add_option("SETTINGS", o->kv, "KEY=VALUE ...")->required();
        cmd->callback([&ctx, o] {
            std::vector<std::pair<std::string, std::string>> secrets;
            ctx.open_store().write([&](store_tx& tx) {
                secrets.clear();
                auto c = tx.find_connector(o->name);
                if (!c)
                    throw cli_error("no connector named '" + o->name +
                                    "' (see: mxctl connector list)");
                std::string before = c->default_target;
                for (const auto& kv : o->kv) apply_connector_setting(*c, kv, secrets);
                if (c->default_target != before) check_target_spec(ctx.cfg(), c->default_target);
                tx.update_connector(*c);
            });
            for (auto& [k, v] : secrets) {
                if (v.empty())
                    ctx.secrets().remove(k);
                else
                    ctx.secrets().set(k, v);
            }
            std::cout << "connector " << o->name << " updated\n";
        });
    }
    {
        auto* cmd = conn->add_subcommand("show", "show one connector");
        struct opts {
            std::string name;
            bool json = false;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("NAME", o->name, "connector name")->required();
        cmd->add_flag("--json", o->json, "JSON output");
        cmd->callback([&ctx, o] {
            auto v = ctx.open_store_read_only().read();
            auto c = v.find_connector(o->name, true);
            if (!c)
                throw cli_error("no connector named '" + o->name + "' (see: mxctl connector list)");
            std::size_t n = 0;
            v.for_each_mailbox(
                [&](const mailbox&) {
                    ++n;
                    return true;
                },
                c->name);
            auto j = connector_json(*c, ctx, n);
            if (o->json) return print_json(j);
            std::string domains;
            for (auto& d : c->domains) domains += (domains.empty() ? "" : ", ") + d;
            std::string auth(to_string(c->smtp.auth));
            if (c->smtp.auth == auth_method::generic)
                auth += " mechanism=" + std::string(to_string(c->smtp.mechanism)) +
                        " user=" + c->smtp.username +
                        " secret=" + j["smtp"]["secret"].get<std::string>();
            print_table({{"name:", c->name},
                         {"active:", c->active ? "yes" : "no"},
                         {"drop folder:", c->drop_folder},
                         {"domains:", domains.empty() ? "(none)" : domains},
                         {"smtp server:", connector_smtp_summary(*c, ctx.cfg())},
                         {"authentication:", auth},
                         {"bounce sender:",
                          c->bounce_sender.empty() ? "<> (MAILER-DAEMON)" : c->bounce_sender},
                         {"max message size:",
                          c->max_message_size ? std::to_string(c->max_message_size) : "unlimited"},
                         {"default target:",
                          c->default_target.empty() ? "maildir (mail_root)" : c->default_target},
                         {"mailboxes:", std::to_string(n)}});
        });
    }
    {
        auto* cmd = conn->add_subcommand("list", "list connectors");
        auto json = std::make_shared<bool>(false);
        cmd->add_flag("--json", *json, "JSON output");
        cmd->callback([&ctx, json] {
            auto v = ctx.open_store_read_only().read();
            auto cs = v.connectors();
            std::map<std::string, std::size_t> counts;
            v.for_each_mailbox([&](const mailbox& m) {
                ++counts[m.connector];
                return true;
            });
            if (*json) {
                nlohmann::json arr = nlohmann::json::array();
                for (auto& c : cs) arr.push_back(connector_json(c, ctx, counts[c.name]));
                return print_json(arr);
            }
            std::vector<std::vector<std::string>> rows{
                {"NAME", "ACTIVE", "DOMAINS", "MAILBOXES", "DROP FOLDER"}};
            for (auto& c : cs) {
                std::string d;
                for (auto& x : c.domains) d += (d.empty() ? "" : ",") + x;
                rows.push_back({c.name, c.active ? "yes" : "no", d.empty() ? "-" : d,
                                std::to_string(counts[c.name]), c.drop_folder});
            }
            print_table(rows);
        });
    }
    {
        auto* cmd = conn->add_subcommand("remove", "remove a connector and its domains");
        struct opts {
            std::string name;
            bool force = false;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("NAME", o->name, "connector name")->required();
        cmd->add_flag("--force", o->force, "also remove its mailboxes");
        cmd->callback([&ctx, o] {
            std::vector<std::string> boxes;
            ctx.open_store().write([&](store_tx& tx) {
                boxes.clear();
                tx.for_each_mailbox(
                    [&](const mailbox& m) {
                        boxes.push_back(m.address);
                        return true;
                    },
                    o->name);
                tx.remove_connector(o->name, o->force);
            });
            ctx.secrets().remove_prefix("connector/" + o->name + "/");
            for (auto& b : boxes) ctx.secrets().remove_prefix("mailbox/" + b + "/");
            std::cout << "connector " << o->name << " removed\n";
        });
    }
    for (bool enable : {true, false}) {
        auto* cmd =
            conn->add_subcommand(enable ? "enable" : "disable",
                                 enable ? "switch a connector on"
                                        : "switch a connector off (its recipients get 450 4.2.1)");
        auto name = std::make_shared<std::string>();
        cmd->add_option("NAME", *name, "connector name")->required();
        cmd->callback([&ctx, name, enable] {
            ctx.open_store().write([&](store_tx& tx) {
                auto c = tx.find_connector(*name);
                if (!c)
                    throw cli_error("no connector named '" + *name +
                                    "' (see: mxctl connector list)");
                c->active = enable;
                tx.update_connector(*c);
            });
            std::cout << "connector " << *name << (enable ? " enabled\n" : " disabled\n");
        });
    }
}

void add_domain_commands(CLI::App& app, mxctl_context& ctx) {
    auto* dom = app.add_subcommand("domain", "manage the domains of connectors");
    dom->require_subcommand(1);
    for (bool add : {true, false}) {
        auto* cmd = dom->add_subcommand(
            add ? "add" : "remove",
            add ? "serve a domain (example.com, .example.com = subdomains, . = all)"
                : "stop serving a domain");
        struct opts {
            std::string conn, domain;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("CONNECTOR", o->conn, "connector name")->required();
        cmd->add_option("DOMAIN", o->domain, "domain pattern")->required();
        cmd->callback([&ctx, o, add] {
            ctx.open_store().write([&](store_tx& tx) {
                if (add)
                    tx.add_domain(o->conn, o->domain);
                else
                    tx.remove_domain(o->conn, o->domain);
            });
            std::cout << "domain " << *normalize_domain_pattern(o->domain)
                      << (add ? " added to " : " removed from ") << o->conn << "\n";
        });
    }
    auto* cmd = dom->add_subcommand("list", "list domains and their connectors");
    auto json = std::make_shared<bool>(false);
    cmd->add_flag("--json", *json, "JSON output");
    cmd->callback([&ctx, json] {
        auto v = ctx.open_store_read_only().read();
        auto ds = v.domains();
        if (*json) {
            nlohmann::json arr = nlohmann::json::array();
            for (auto& [d, c] : ds)
                arr.push_back({{"domain", d}, {"connector", c}, {"display", domain_to_unicode(d)}});
            return print_json(arr);
        }
        std::vector<std::vector<std::string>> rows{{"DOMAIN", "CONNECTOR"}};
        for (auto& [d, c] : ds) {
            auto u = domain_to_unicode(d);
            rows.push_back({u == d ? d : d + " (" + u + ")", c});
        }
        print_table(rows);
    });
}

}  // namespace mx::admin
