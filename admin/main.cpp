// mxctl main: global options, verb registration, error-to-exit-code mapping.
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>

#include "log_report/log_report.hpp"
#include "mxctl.hpp"
#include "util/lmdb.hpp"

namespace {

// Every verb group, in the order `mxctl --help` lists them. Each registers its subcommands;
// options live in a struct the callbacks share (std::make_shared<opts>).
struct verb_group {
    const char* verbs;  // for readers of this table
    void (*add)(CLI::App&, mx::admin::mxctl_context&);
};
constexpr verb_group verbs[] = {
    {"connector", mx::admin::add_connector_commands},
    {"domain", mx::admin::add_domain_commands},
    {"mailbox", mx::admin::add_mailbox_commands},
    {"check", mx::admin::add_check_command},
    {"export, apply", mx::admin::add_export_apply_commands},
    {"stats", mx::admin::add_stats_command},
    {"failed, import-status", mx::admin::add_failed_commands},
    {"smtp-test, send", mx::admin::add_smtp_commands},
    {"target-test", mx::admin::add_target_commands},
    {"doctor", mx::admin::add_doctor_command},
    {"postfix", mx::admin::add_postfix_commands},
    {"console", mx::admin::add_console_commands},
    {"log-report", mx::admin::add_log_report_command},
    {"cluster", mx::admin::add_cluster_commands},
};

}  // namespace

int main(int argc, char** argv) {
    using namespace mx::admin;
    spdlog::set_level(spdlog::level::warn);
    CLI::App app{"mxctl - administer MX Connector (connectors, domains, mailboxes, checks, logs)"};
    app.require_subcommand(1);
    mxctl_context ctx;
    app.add_option(
        "--config", ctx.config_path,
        "configuration file (default: $MX_CONFIG or /etc/mx-connector/mx-connector.toml)");
    for (const auto& v : verbs) v.add(app, ctx);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    } catch (const cli_error& e) {
        std::cerr << "mxctl: " << e.what() << "\n";
        return e.exit_code();
    } catch (const mx::rule_error& e) {
        std::cerr << "mxctl: " << e.what() << "\n";
        return 1;
    } catch (const mx::config_error& e) {
        std::cerr << "mxctl: " << e.what() << "\n";
        return 1;
    } catch (const mx::lmdb::error& e) {
        std::cerr << "mxctl: store error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "mxctl: " << e.what() << "\n";
        return 1;
    }
    return ctx.exit_code;
}
