// mxctl mailbox add|set|remove|list|show|import.
#include <fstream>
#include <iostream>
#include <sstream>

#include "global/address.hpp"
#include "mxctl.hpp"
#include "util/fs.hpp"

namespace mx::admin {
namespace {

nlohmann::json mailbox_json(const mailbox& m, mxctl_context& ctx, bool with_secret_flags) {
    auto j = to_json(m);
    if (with_secret_flags) {
        auto flag = [&](const std::string& name) {
            try {
                return ctx.secrets().get(name) ? std::string("***") : std::string();
            } catch (const std::exception&) {
                return std::string();
            }
        };
        j["oauth"] = {{"client_id", m.oauth.client_id},
                      {"tenant", m.oauth.tenant},
                      {"client_secret", flag(secret_name::oauth_client_secret(m.address))},
                      {"refresh_token", flag(secret_name::oauth_refresh_token(m.address))}};
        j["target_secret"] = flag(secret_name::target_secret(m.address));
    }
    return j;
}

void mailbox_set(mxctl_context& ctx, const std::string& address,
                 const std::vector<std::string>& settings) {
    std::string key = normalize_mailbox_arg(address);
    // Secrets go with the change (cluster mode: the same PostgreSQL transaction).
    ops::secret_changes secrets;
    auto change = [&](store_tx& tx) {
        secrets.set.clear();
        auto m = tx.find_mailbox(key);
        if (!m) throw cli_error("no mailbox " + key + " (see: mxctl mailbox list)");
        for (const auto& kv : settings) {
            auto eq = kv.find('=');
            if (eq == std::string::npos) throw cli_error("expected KEY=VALUE, got '" + kv + "'");
            std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
            if (k == "target") {
                check_target_spec(ctx.cfg(), v);
                m->target = v;
            } else if (k == "connector")
                m->connector = v;
            else if (k == "oauth.client_id")
                m->oauth.client_id = v;
            else if (k == "oauth.tenant")
                m->oauth.tenant = v;
            else if (k == "oauth.client_secret")
                secrets.set.emplace_back(secret_name::oauth_client_secret(key), read_secret_value(v));
            else if (k == "oauth.refresh_token")
                secrets.set.emplace_back(secret_name::oauth_refresh_token(key), read_secret_value(v));
            else if (k == "target.secret")
                secrets.set.emplace_back(secret_name::target_secret(key), read_secret_value(v));
            else
                throw cli_error("unknown mailbox setting '" + k + "'");
        }
        tx.update_mailbox(*m);
    };
    ops::write(ctx, change, &secrets);
    std::cout << "mailbox " << key << " updated\n";
}

void mailbox_list(mxctl_context& ctx, const std::string& conn, bool json) {
    auto v = ctx.open_store_read_only().read();
    if (!conn.empty() && !v.find_connector(conn))
        throw cli_error("no connector named '" + conn + "' (see: mxctl connector list)");
    if (json) {
        // Streamed: a million mailboxes must not need a million-element DOM.
        std::cout << "[";
        bool first = true;
        v.for_each_mailbox(
            [&](const mailbox& m) {
                std::cout << (first ? "\n  " : ",\n  ") << to_json(m).dump();
                first = false;
                return true;
            },
            conn);
        std::cout << (first ? "]\n" : "\n]\n");
        return;
    }
    std::vector<std::vector<std::string>> rows{{"ADDRESS", "CONNECTOR", "TARGET"}};
    v.for_each_mailbox(
        [&](const mailbox& m) {
            rows.push_back({m.address, m.connector, m.target.empty() ? "(default)" : m.target});
            return true;
        },
        conn);
    print_table(rows);
}

}  // namespace

void add_mailbox_commands(CLI::App& app, mxctl_context& ctx) {
    auto* mb = app.add_subcommand("mailbox", "manage mailboxes");
    mb->require_subcommand(1);
    {
        auto* cmd =
            mb->add_subcommand("add", "add a mailbox (local@domain, or @domain as catch-all)");
        struct opts {
            std::string address, conn, target;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("ADDRESS", o->address, "address")->required();
        cmd->add_option("--connector", o->conn, "connector name")->required();
        cmd->add_option("--target", o->target, "maildir:PATH | webhook:URL | exec:COMMAND");
        cmd->callback([&ctx, o] {
            auto m = ops::add_mailbox(ctx, o->address, o->conn, o->target);
            std::cout << "mailbox " << m.address << " added to " << m.connector << "\n";
        });
    }
    {
        auto* cmd = mb->add_subcommand(
            "set",
            "change settings: KEY=VALUE (target, connector, oauth.client_id, "
            "oauth.tenant, oauth.client_secret, oauth.refresh_token, target.secret)");
        struct opts {
            std::string address;
            std::vector<std::string> kv;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("ADDRESS", o->address, "address")->required();
        cmd->add_option("SETTINGS", o->kv, "KEY=VALUE ...")->required();
        cmd->callback([&ctx, o] { mailbox_set(ctx, o->address, o->kv); });
    }
    {
        auto* cmd = mb->add_subcommand("remove", "remove a mailbox");
        auto address = std::make_shared<std::string>();
        cmd->add_option("ADDRESS", *address, "address")->required();
        cmd->callback([&ctx, address] {
            std::string key = ops::remove_mailbox(ctx, *address);
            std::cout << "mailbox " << key << " removed\n";
        });
    }
    {
        auto* cmd = mb->add_subcommand("list", "list mailboxes");
        struct opts {
            std::string conn;
            bool json = false;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("--connector", o->conn, "only this connector's");
        cmd->add_flag("--json", o->json, "JSON output");
        cmd->callback([&ctx, o] { mailbox_list(ctx, o->conn, o->json); });
    }
    {
        auto* cmd = mb->add_subcommand("show", "show one mailbox");
        struct opts {
            std::string address;
            bool json = false;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("ADDRESS", o->address, "address")->required();
        cmd->add_flag("--json", o->json, "JSON output");
        cmd->callback([&ctx, o] {
            std::string key = normalize_mailbox_arg(o->address);
            auto v = ctx.open_store_read_only().read();
            auto m = v.find_mailbox(key);
            if (!m) throw cli_error("no mailbox " + key + " (see: mxctl mailbox list)");
            auto j = mailbox_json(*m, ctx, true);
            if (o->json) return print_json(j);
            print_table({{"address:", m->address},
                         {"connector:", m->connector},
                         {"target:", m->target.empty() ? "(connector default)" : m->target},
                         {"target secret:", j["target_secret"].get<std::string>()},
                         {"oauth client id:", m->oauth.client_id},
                         {"oauth tenant:", m->oauth.tenant},
                         {"oauth client secret:", j["oauth"]["client_secret"].get<std::string>()},
                         {"oauth refresh token:", j["oauth"]["refresh_token"].get<std::string>()}});
        });
    }
    {
        auto* cmd = mb->add_subcommand(
            "import",
            "bulk add from CSV (header address,connector[,target]) or JSON; all or nothing");
        auto file = std::make_shared<std::string>();
        cmd->add_option("FILE", *file, "CSV or JSON file")->required();
        cmd->callback([&ctx, file] {
            // The console's upload runs the same parser and transaction (admin/ops).
            std::string text;
            try {
                text = util::read_file(*file);
            } catch (const std::exception& e) {
                throw cli_error("cannot read " + *file + ": " + e.what());
            }
            std::cout << ops::import_mailbox_text(ctx, text, *file) << " mailboxes imported\n";
        });
    }
}

}  // namespace mx::admin
