// mxctl console user add|remove|passwd|list: the accounts of the web console (mx-console).
//
// add and passwd take the password from --password VALUE, --password - (one line from stdin),
// or generate one (24 random hex digits) and print it once: that is the only time it is shown.
// Security: the account file lives in the daemon account's state folder; like every verb,
// these switch to that account first (as_state_owner), so root never writes through a path
// the account could have planted.
#include <iostream>

#include "mxctl.hpp"
#include "ops/console_users.hpp"

namespace mx::admin {

void add_console_commands(CLI::App& app, mxctl_context& ctx) {
    auto* console = app.add_subcommand("console", "the web console (mx-console)");
    console->require_subcommand(1);
    auto* user = console->add_subcommand("user", "console accounts");
    user->require_subcommand(1);
    struct opts {
        std::string name, password;
        bool read_only = false, json = false;
    };
    auto o = std::make_shared<opts>();
    auto password = [o](bool& generated) {
        generated = o->password.empty();
        if (generated) return ops::random_hex(12);
        return read_secret_value(o->password);
    };
    {
        auto* cmd = user->add_subcommand("add", "add an account (prints a generated password)");
        cmd->add_option("NAME", o->name, "account name")->required();
        cmd->add_option("--password", o->password, "password, or - to read one line from stdin");
        cmd->add_flag("--read-only", o->read_only, "may look, never change anything");
        cmd->callback([&ctx, o, password] {
            ctx.as_state_owner();
            bool generated = false;
            std::string pw = password(generated);
            ops::console_user_add(ctx.cfg(), o->name, pw, o->read_only);
            std::cout << "console user " << o->name << " added"
                      << (o->read_only ? " (read-only)" : "") << "\n";
            if (generated) std::cout << "password: " << pw << "\n";
        });
    }
    {
        auto* cmd = user->add_subcommand("passwd", "set a new password (prints a generated one)");
        cmd->add_option("NAME", o->name, "account name")->required();
        cmd->add_option("--password", o->password, "password, or - to read one line from stdin");
        cmd->callback([&ctx, o, password] {
            ctx.as_state_owner();
            bool generated = false;
            std::string pw = password(generated);
            ops::console_user_passwd(ctx.cfg(), o->name, pw);
            std::cout << "console user " << o->name << ": password changed\n";
            if (generated) std::cout << "password: " << pw << "\n";
        });
    }
    {
        auto* cmd = user->add_subcommand("remove", "remove an account");
        cmd->add_option("NAME", o->name, "account name")->required();
        cmd->callback([&ctx, o] {
            ctx.as_state_owner();
            ops::console_user_remove(ctx.cfg(), o->name);
            std::cout << "console user " << o->name << " removed\n";
        });
    }
    {
        auto* cmd = user->add_subcommand("list", "list accounts");
        cmd->add_flag("--json", o->json, "JSON output");
        cmd->callback([&ctx, o] {
            ctx.as_state_owner();
            auto users = ops::load_console_users(ctx.cfg());
            if (o->json) {
                nlohmann::json arr = nlohmann::json::array();
                for (auto& [n, u] : users) arr.push_back({{"name", n}, {"read_only", u.read_only}});
                return print_json(arr);
            }
            std::vector<std::vector<std::string>> rows{{"NAME", "ROLE"}};
            for (auto& [n, u] : users) rows.push_back({n, u.read_only ? "read-only" : "admin"});
            print_table(rows);
        });
    }
}

}  // namespace mx::admin
