// report: `mxctl log-report` without the CLI glue: reads the inputs, aggregates or traces,
// renders. Tests and the mxctl verb both call run_log_report().
//
// Promises: exit status 0 on success, 1 when an input cannot be read (the report of what could
// be read is still printed), 2 for invalid options. Errors go to `err` as "log-report: ...".
// With `follow`, runs until SIGINT/SIGTERM and prints a report every `interval` seconds and
// at the end (JSON: one object per line).
//
// Security: see the parsers; time arguments are parsed strictly (parse_time_arg).
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "aggregator.hpp"
#include "connector_map.hpp"

namespace mx::logreport {

enum class output_format { text, json, prometheus };

struct report_options {
    std::vector<std::string> files;  // empty or "-": stdin
    output_format format = output_format::text;
    bool follow = false;
    double interval = 60;  // seconds between reports in follow mode (0: only at the end)
    bool show_unparsed = false;
    std::string trace;  // non-empty: trace mode
    report_filter filter;
    std::size_t top = 10;
    int year = 0;                     // force the year of year-less timestamps (0: infer)
    std::optional<std::int64_t> now;  // reference time for year inference (tests)
    const connector_map* connectors = nullptr;
};

int run_log_report(const report_options& opt, std::ostream& out, std::ostream& err);

// "2024-02-08", "2024-02-08 21:00", "2024-02-08T21:00:00+01:00", "today", "yesterday",
// or relative "90m", "12h", "7d" (that long before `now`). Throws std::invalid_argument.
std::int64_t parse_time_arg(const std::string& s, std::int64_t now);

}  // namespace mx::logreport
