// mxctl check ADDRESS: exactly what mx-milter answers for this recipient, and why.
// Exit status: 0 accept, 10 reject, 11 tempfail, 12 not-ours (1 error, 2 usage).
#include <iostream>

#include "global/recipient_check.hpp"
#include "mxctl.hpp"

namespace mx::admin {

int check_exit_code(decision d) {
    switch (d) {
        case decision::accept:
            return 0;
        case decision::reject:
            return 10;
        case decision::tempfail:
            return 11;
        case decision::not_ours:
            return 12;
    }
    return 11;
}

void add_check_command(CLI::App& app, mxctl_context& ctx) {
    auto* cmd = app.add_subcommand("check",
                                   "show the milter's decision for a recipient (exit 0 accept, "
                                   "10 reject, 11 tempfail, 12 not ours)");
    struct opts {
        std::string address;
        bool json = false;
    };
    auto o = std::make_shared<opts>();
    cmd->add_option("ADDRESS", o->address, "recipient, with or without <>")->required();
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->callback([&ctx, o] {
        auto r = ops::check(ctx, o->address);
        std::string reply = r.reply();
        if (o->json) {
            nlohmann::json j = {{"address", o->address},
                                {"normalized", r.recipient ? r.recipient->str() : ""},
                                {"decision", std::string(to_string(r.verdict))},
                                {"reply", reply},
                                {"code", r.code},
                                {"dsn", r.dsn},
                                {"connector", r.connector},
                                {"mailbox", r.mailbox},
                                {"matched_by", r.matched_by},
                                {"reason", r.reason}};
            print_json(j);
        } else {
            std::vector<std::vector<std::string>> rows{
                {"address:", r.recipient ? r.recipient->str() : o->address},
                {"decision:", std::string(to_string(r.verdict))},
                {"reply:", reply.empty()
                               ? (r.verdict == decision::accept ? "(continue: 250 from Postfix)"
                                                                : "(continue: Postfix decides)")
                               : reply}};
            if (!r.connector.empty()) rows.push_back({"connector:", r.connector});
            if (!r.mailbox.empty())
                rows.push_back({"mailbox:", r.mailbox + " (" + r.matched_by + ")"});
            rows.push_back({"reason:", r.reason});
            print_table(rows);
        }
        ctx.exit_code = check_exit_code(r.verdict);
    });
}

}  // namespace mx::admin
