// mx-log-report-standalone: `mxctl log-report` without mxctl (no config, no store), for the
// benchmark and for machines that only have logs. Same options and output as the verb.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli.hpp"

int main(int argc, char** argv) {
    CLI::App app{"log-report without mxctl (no connector store)"};
    app.require_subcommand(1);
    int exit_code = 0;
    mx::logreport::add_log_report_cli(app, {}, exit_code);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    } catch (const std::exception& e) {
        std::cerr << "log-report: " << e.what() << "\n";
        return 1;
    }
    return exit_code;
}
