// trace: the path of one message (or of everything one address sent/received) through the log.
//
// The query is matched against queue IDs, Message-IDs (with or without <>) and envelope
// addresses (from=, to=, orig_to=; case-insensitive). For every matching message lifecycle
// (a queue ID from first sight until "removed"), the trace shows the smtpd session it came
// from (connect line), each log line of the lifecycle, the non-delivery notifications it caused
// (followed into their own lifecycle), and a one-line path summary:
//   client host[ip] -> queued (size, nrcpt) -> r@d: sent via relay | deferred (reason) | ...
// Rejected transactions without a queue ID (NOQUEUE) match on their from=/to=.
//
// Promises: single pass (works on stdin and --follow); memory holds only the lines of messages
// still open, plus a bounded window of recent lines per smtpd process.
//
// Security: lines are stored verbatim and printed through printable()/JSON escaping only.
#pragma once

#include <cstdint>
#include <deque>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "connector_map.hpp"
#include "event_parser.hpp"
#include "line_parser.hpp"

namespace mx::logreport {

struct trace_line {
    std::int64_t time = 0;
    std::string daemon;
    std::string text;  // the message part of the log line
};

struct trace_result {
    std::string queue_id;  // empty for a NOQUEUE reject
    std::string message_id;
    std::string from;
    std::string client;
    std::string parent;  // queue ID whose notification this message is
    std::vector<trace_line> lines;
    std::vector<std::string> path;  // summary steps
    bool closed = false;            // "removed" seen
};

class tracer {
  public:
    explicit tracer(std::string query);
    void add(const log_line& line, const event& ev);
    // Messages still open at the end are reported too (still queued or log cut).
    std::vector<trace_result> finish();

  private:
    struct open_msg {
        trace_result r;
        bool matched = false;
    };
    bool matches_address(std::string_view a) const;
    void close(const std::string& qid);
    void add_import(const event& ev, trace_line tl);
    void summarize(trace_result& r, const event& ev);

    std::string query_;        // as given, minus <>
    std::string query_lower_;  // for addresses
    string_map<open_msg> open_;
    // Recent lines per smtpd pid (since its last connect), for context of a client= or a
    // NOQUEUE reject.
    std::unordered_map<std::int32_t, std::deque<trace_line>> sessions_;
    std::unordered_map<std::int32_t, std::string> session_client_;
    std::vector<trace_result> done_;
    string_map<std::size_t> done_by_qid_;  // closed matching lifecycles, for importer joins
};

void render_trace_text(const std::vector<trace_result>& results, std::ostream& out);
nlohmann::json trace_json(const std::vector<trace_result>& results);

}  // namespace mx::logreport
