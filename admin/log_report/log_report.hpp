// log_report: the `mxctl log-report` verb (Postfix log analysis, see docs/log-report.md).
//
// Promises: registers one subcommand on the given CLI11 app; all work happens in its callback
// (run_log_report), so merely registering the verb opens nothing. The store is read only to map
// domains to connectors and is optional: without it the report groups by domain only.
//
// Security: reads log files named by the administrator; their contents are untrusted (see
// line_parser.hpp, event_parser.hpp).
#pragma once

#include <CLI/CLI.hpp>

namespace mx::admin {

struct mxctl_context;

void add_log_report_command(CLI::App& app, mxctl_context& ctx);

}  // namespace mx::admin
