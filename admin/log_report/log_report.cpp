// log_report: `mxctl log-report` = the log-report CLI (cli.cpp) + the store's connector map.
#include "log_report.hpp"

#include "../mxctl.hpp"
#include "cli.hpp"
#include "connector_map.hpp"

namespace mx::admin {

void add_log_report_command(CLI::App& app, mxctl_context& ctx) {
    logreport::add_log_report_cli(
        app, [&ctx](std::string& why_not) { return logreport::load_connector_map(ctx, why_not); },
        ctx.exit_code);
}

}  // namespace mx::admin
