// render: the three output formats of a finished report.
//
// - to_json(): the stable, documented schema (docs/log-report.md). `totals` always carries at
//   least received, delivered, deferred, bounced, rejected, milter_rejected, unparsed.
// - render_text(): aligned, readable tables for a terminal or a daily mail.
// - render_prometheus(): text exposition format 0.0.4; labels have low cardinality only
//   (reject reason, stage, status, hour is not a label; connector names come from the store,
//   never from log lines), so it can be scraped via a textfile collector.
//
// Security: every string taken from a log line is hostile. JSON output goes through
// nlohmann::json (escaped; invalid UTF-8 replaced), text output replaces control bytes, and
// Prometheus label values are escaped per the exposition format.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "aggregator.hpp"

namespace mx::logreport {

struct render_options {
    std::size_t top = 10;  // rows in "top" lists
};

nlohmann::json to_json(const aggregator& agg, const render_options& opt);
void render_text(const aggregator& agg, const render_options& opt, std::ostream& out);
void render_prometheus(const aggregator& agg, std::ostream& out);

// Control bytes replaced by '?', so hostile log text cannot drive the terminal.
std::string printable(std::string_view s);
// "2024-02-08 21:28:47" in local time.
std::string format_time(std::int64_t t);

}  // namespace mx::logreport
