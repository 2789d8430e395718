// mxctl connector add|set|show|list|remove|enable|disable, domain add|remove|list.
#include <iostream>

#include "global/address.hpp"
#include "mxctl.hpp"

namespace mx::admin {
namespace {

nlohmann::json connector_json(const connector& c, mxctl_context& ctx, std::size_t mailboxes) {
    auto j = to_json(c);
    j["smtp"]["secret"] = ops::has_smtp_secret(ctx, c.name) ? "***" : "";
    j["mailboxes"] = mailboxes;
    return j;
}

void connector_show(mxctl_context& ctx, const std::string& name, bool json) {
    auto v = ctx.open_store_read_only().read();
    auto c = v.find_connector(name, true);
    if (!c) throw cli_error("no connector named '" + name + "' (see: mxctl connector list)");
    std::size_t n = 0;
    v.for_each_mailbox(
        [&](const mailbox&) {
            ++n;
            return true;
        },
        c->name);
    auto j = connector_json(*c, ctx, n);
    if (json) return print_json(j);
    std::string domains;
    for (auto& d : c->domains) domains += (domains.empty() ? "" : ", ") + d;
    std::string auth(to_string(c->smtp.auth));
    if (c->smtp.auth == auth_method::generic)
        auth += " mechanism=" + std::string(to_string(c->smtp.mechanism)) +
                " user=" + c->smtp.username + " secret=" + j["smtp"]["secret"].get<std::string>();
    print_table(
        {{"name:", c->name},
         {"active:", c->active ? "yes" : "no"},
         {"drop folder:", c->drop_folder},
         {"domains:", domains.empty() ? "(none)" : domains},
         {"smtp server:", ops::smtp_summary(ctx.cfg(), *c)},
         {"authentication:", auth},
         {"bounce sender:", c->bounce_sender.empty() ? "<> (MAILER-DAEMON)" : c->bounce_sender},
         {"max message size:",
          c->max_message_size ? std::to_string(c->max_message_size) : "unlimited"},
         {"default target:", c->default_target.empty() ? "maildir (mail_root)" : c->default_target},
         {"mailboxes:", std::to_string(n)}});
}

void connector_list(mxctl_context& ctx, bool json) {
    auto v = ctx.open_store_read_only().read();
    auto cs = v.connectors();
    std::map<std::string, std::size_t> counts;
    v.for_each_mailbox([&](const mailbox& m) {
        ++counts[m.connector];
        return true;
    });
    if (json) {
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
}

}  // namespace

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
            ops::add_connector(ctx, c);
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
            ops::update_connector(ctx, o->name, o->kv);
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
        cmd->callback([&ctx, o] { connector_show(ctx, o->name, o->json); });
    }
    {
        auto* cmd = conn->add_subcommand("list", "list connectors");
        auto json = std::make_shared<bool>(false);
        cmd->add_flag("--json", *json, "JSON output");
        cmd->callback([&ctx, json] { connector_list(ctx, *json); });
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
            ops::remove_connector(ctx, o->name, o->force);
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
            ops::set_connector_active(ctx, *name, enable);
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
            if (add)
                ops::add_domain(ctx, o->conn, o->domain);
            else
                ops::remove_domain(ctx, o->conn, o->domain);
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
