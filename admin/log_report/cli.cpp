// cli: the options of `mxctl log-report` and their mapping to report_options. Kept free of the
// store (the connector map comes through a loader) so a standalone driver can reuse it.
#include "cli.hpp"

#include <algorithm>
#include <ctime>
#include <iostream>
#include <memory>
#include <stdexcept>

#include "report.hpp"

namespace mx::logreport {

namespace {

struct log_report_args {
    std::vector<std::string> files;
    bool json = false;
    bool prometheus = false;
    bool follow = false;
    double interval = 60;
    bool show_unparsed = false;
    std::string trace;
    std::string since;
    std::string until;
    std::vector<std::string> domains;
    std::vector<std::string> connectors;
    std::size_t top = 10;
    int year = 0;
    bool no_store = false;
};

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return s;
}

}  // namespace

CLI::App* add_log_report_cli(CLI::App& app, connector_loader load_connectors, int& exit_code) {
    auto args = std::make_shared<log_report_args>();
    CLI::App* cmd = app.add_subcommand(
        "log-report",
        "Analyse Postfix logs: totals, rejects by reason, deferrals, delays, per connector/domain");
    cmd->add_option("files", args->files,
                    "log files (plain or .gz; rotated sets are read oldest first); none or - "
                    "reads stdin");
    cmd->add_flag("--json", args->json, "JSON output (schema in docs/log-report.md)");
    cmd->add_flag("--prometheus", args->prometheus, "Prometheus text exposition output");
    cmd->add_flag("--follow,-f", args->follow,
                  "keep reading the last file like tail -F (survives rotation); report every "
                  "--interval seconds and on Ctrl-C");
    cmd->add_option("--interval", args->interval,
                    "seconds between reports with --follow (0: only at the end)");
    cmd->add_flag("--show-unparsed", args->show_unparsed, "print lines not understood to stderr");
    cmd->add_option("--trace", args->trace,
                    "show the path of the messages matching a QUEUEID, MESSAGE-ID or ADDRESS");
    cmd->add_option("--since", args->since,
                    "start time (2024-02-08, \"2024-02-08 21:00\", RFC 3339, today, 12h, 7d)");
    cmd->add_option("--until", args->until, "end time (exclusive), same forms as --since");
    cmd->add_option("--domain", args->domains, "only recipients in this domain (repeatable)")
        ->allow_extra_args(false);  // one value per use: a file name after it stays a file
    cmd->add_option("--connector", args->connectors,
                    "only recipients of this connector's domains (repeatable)")
        ->allow_extra_args(false);  // one value per use: a file name after it stays a file
    cmd->add_option("--top", args->top, "rows in top lists (default 10)");
    cmd->add_option("--year", args->year, "year of year-less timestamps (default: inferred)");
    cmd->add_flag("--no-store", args->no_store, "do not read connectors from the store");
    cmd->callback([args, load_connectors, &exit_code]() {
        if (args->json && args->prometheus)
            throw CLI::ValidationError("--json and --prometheus exclude each other");
        report_options opt;
        opt.files = args->files;
        opt.format = args->json
                         ? output_format::json
                         : (args->prometheus ? output_format::prometheus : output_format::text);
        opt.follow = args->follow;
        opt.interval = args->interval;
        opt.show_unparsed = args->show_unparsed;
        opt.trace = args->trace;
        opt.top = args->top;
        opt.year = args->year;
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        try {
            if (!args->since.empty()) opt.filter.since = parse_time_arg(args->since, now);
            if (!args->until.empty()) opt.filter.until = parse_time_arg(args->until, now);
        } catch (const std::invalid_argument& e) {
            throw CLI::ValidationError(e.what());
        }
        for (const auto& d : args->domains) opt.filter.domains.push_back(lower(d));
        opt.filter.connectors = args->connectors;

        connector_map map;
        std::string why_not = "--no-store given";
        if (!args->no_store && load_connectors) {
            why_not.clear();
            map = load_connectors(why_not);
        }
        if (map.empty() && !args->connectors.empty())
            throw std::runtime_error(
                "--connector needs the connector store (" +
                (why_not.empty() ? std::string("no domains in the store") : why_not) + ")");
        opt.connectors = map.empty() ? nullptr : &map;
        exit_code = run_log_report(opt, std::cout, std::cerr);
    });
    return cmd;
}

}  // namespace mx::logreport
