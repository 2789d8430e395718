// cli: registers the `log-report` subcommand (options documented in docs/log-report.md).
//
// Promises: nothing is read or opened until the subcommand's callback runs; the connector map
// is obtained through `load_connectors` (may be empty: no grouping by connector). The exit
// status of the report is stored in `exit_code`. Bad option values throw CLI11 errors.
//
// Security: options come from the administrator; see report.hpp for inputs.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "connector_map.hpp"

namespace mx::logreport {

using connector_loader = std::function<connector_map(std::string& why_not)>;

CLI::App* add_log_report_cli(CLI::App& app, connector_loader load_connectors, int& exit_code);

}  // namespace mx::logreport
