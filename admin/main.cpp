// mxctl main: global options, verb registration, error-to-exit-code mapping.
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>

#include "log_report/log_report.hpp"
#include "mxctl.hpp"
#include "util/lmdb.hpp"

int main(int argc, char** argv) {
    using namespace mx::admin;
    spdlog::set_level(spdlog::level::warn);
    CLI::App app{"mxctl - administer MX Connector (connectors, domains, mailboxes, checks, logs)"};
    app.require_subcommand(1);
    mxctl_context ctx;
    app.add_option(
        "--config", ctx.config_path,
        "configuration file (default: $MX_CONFIG or /etc/mx-connector/mx-connector.toml)");
    add_connector_commands(app, ctx);
    add_domain_commands(app, ctx);
    add_mailbox_commands(app, ctx);
    add_check_command(app, ctx);
    add_export_apply_commands(app, ctx);
    add_stats_command(app, ctx);
    add_failed_commands(app, ctx);
    add_smtp_commands(app, ctx);
    add_target_commands(app, ctx);
    add_doctor_command(app, ctx);
    add_postfix_commands(app, ctx);
    add_console_commands(app, ctx);
    add_log_report_command(app, ctx);
    add_cluster_commands(app, ctx);
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
