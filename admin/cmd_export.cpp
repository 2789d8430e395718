// mxctl export / apply: the whole configuration as one JSON document, and back.
//
// apply is declarative: the store becomes equal to the file in one transaction (connectors,
// domains, mailboxes), and the difference is printed first; --dry-run stops there.
#include <fstream>
#include <iostream>
#include <map>

#include "global/address.hpp"
#include "mxctl.hpp"

namespace mx::admin {
namespace {

nlohmann::json export_state(store_view& v) {
    nlohmann::json conns = nlohmann::json::array();
    for (auto& c : v.connectors()) conns.push_back(to_json(c));
    nlohmann::json boxes = nlohmann::json::array();
    v.for_each_mailbox([&](const mailbox& m) {
        boxes.push_back(to_json(m));
        return true;
    });
    return {{"version", 1}, {"connectors", conns}, {"mailboxes", boxes}};
}

}  // namespace

void add_export_apply_commands(CLI::App& app, mxctl_context& ctx) {
    {
        auto* cmd = app.add_subcommand("export",
                                       "print the whole configuration as JSON (secrets excluded)");
        auto with_secrets = std::make_shared<bool>(false);
        cmd->add_flag("--with-secrets", *with_secrets,
                      "include secrets (handle the output with care)");
        cmd->callback([&ctx, with_secrets] {
            auto v = ctx.open_store_read_only().read();
            auto j = export_state(v);
            if (*with_secrets) {
                nlohmann::json s = nlohmann::json::object();
                auto& sec = ctx.secrets();
                for (auto& n : sec.names())
                    if (auto val = sec.get(n)) s[n] = *val;
                j["secrets"] = s;
            }
            print_json(j);
        });
    }
    {
        auto* cmd = app.add_subcommand(
            "apply", "make the store equal to a JSON file (from export), in one transaction");
        struct opts {
            std::string file;
            bool dry_run = false;
        };
        auto o = std::make_shared<opts>();
        cmd->add_option("FILE", o->file, "JSON file")->required();
        cmd->add_flag("--dry-run", o->dry_run, "only print the difference");
        cmd->callback([&ctx, o] {
            std::ifstream in(o->file, std::ios::binary);
            if (!in) throw cli_error("cannot read " + o->file);
            nlohmann::json want;
            try {
                in >> want;
            } catch (const nlohmann::json::exception& e) {
                throw cli_error(o->file + ": invalid JSON: " + e.what());
            }
            if (!want.is_object() || !want.contains("connectors") || !want["connectors"].is_array())
                throw cli_error(o->file +
                                ": expected an object with \"connectors\" (and \"mailboxes\") as "
                                "from mxctl export");
            std::vector<connector> conns;
            std::map<std::string, std::string> want_conn;  // name -> canonical JSON
            try {
                for (auto& cj : want["connectors"]) {
                    connector c = connector_from_json(cj);
                    for (auto& d : c.domains) {
                        std::string why;
                        auto p = normalize_domain_pattern(d, &why);
                        if (!p)
                            throw cli_error("connector " + c.name + ": invalid domain '" + d +
                                            "': " + why);
                        d = *p;
                    }
                    std::sort(c.domains.begin(), c.domains.end());
                    check_target_spec(ctx.cfg(), c.default_target);
                    want_conn[c.name] = to_json(c).dump();
                    conns.push_back(std::move(c));
                }
            } catch (const nlohmann::json::exception& e) {
                throw cli_error(o->file + ": " + e.what());
            }
            std::vector<mailbox> boxes;
            std::map<std::string, std::string> want_box;
            if (want.contains("mailboxes")) {
                for (auto& mj : want["mailboxes"]) {
                    if (!mj.is_object() || !mj.contains("address"))
                        throw cli_error(o->file + ": every mailbox needs an \"address\"");
                    mailbox m = mailbox_from_json(
                        normalize_mailbox_arg(mj["address"].get<std::string>()), mj);
                    check_target_spec(ctx.cfg(), m.target);
                    want_box[m.address] = to_json(m).dump();
                    boxes.push_back(std::move(m));
                }
            }
            // Difference against the current state.
            std::vector<std::string> diff;
            {
                auto v = ctx.open_store().read();
                std::map<std::string, std::string> have_conn, have_box;
                for (auto& c : v.connectors()) {
                    std::sort(c.domains.begin(), c.domains.end());
                    have_conn[c.name] = to_json(c).dump();
                }
                v.for_each_mailbox([&](const mailbox& m) {
                    have_box[m.address] = to_json(m).dump();
                    return true;
                });
                auto compare = [&](const char* what, auto& have, auto& wantm) {
                    for (auto& [k, val] : wantm) {
                        auto it = have.find(k);
                        if (it == have.end())
                            diff.push_back(std::string("+ ") + what + " " + k);
                        else if (it->second != val)
                            diff.push_back(std::string("~ ") + what + " " + k);
                    }
                    for (auto& [k, val] : have)
                        if (!wantm.count(k)) diff.push_back(std::string("- ") + what + " " + k);
                };
                compare("connector", have_conn, want_conn);
                compare("mailbox", have_box, want_box);
            }
            for (auto& d : diff) std::cout << d << "\n";
            if (diff.empty()) std::cout << "no changes\n";
            if (o->dry_run || diff.empty()) return;
            ops::write(ctx, [&](store_tx& tx) {  // cluster mode: through PostgreSQL
                tx.clear_all();
                for (auto& c : conns) tx.add_connector(c);
                for (auto& m : boxes) tx.add_mailbox(m);
            });
            if (want.contains("secrets") && want["secrets"].is_object())
                for (auto& [k, v] : want["secrets"].items())
                    if (v.is_string()) ctx.secrets().set(k, v.get<std::string>());
            std::cout << "applied " << diff.size() << " change(s)\n";
        });
    }
}

}  // namespace mx::admin
