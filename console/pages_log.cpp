// console log report: `mxctl log-report` of the configured Postfix log's tail (log_view.cpp)
// as a page — totals, charts (per hour, rejects by reason, delay percentiles; Chart.js drawn
// by /static/console.js from /api/log-report.json) and the top rejected recipients and
// rejecting clients as tables.
// Security: every string that came from a log line is escaped here (h()); the JSON is
// nlohmann's (escaped, invalid UTF-8 replaced) and Chart.js draws it as canvas text.
#include <cstdio>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

std::string num(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "-";
    if (it->is_number_float()) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f", it->get<double>());
        return buf;
    }
    return it->dump();
}

std::string top_table(const nlohmann::json& rows, const char* id, const char* key,
                      const char* title) {
    std::string out = std::string("<h2 class=\"h6\">") + title +
                      "</h2><table class=\"table table-sm\" id=\"" + id + "\"><thead><tr><th>" +
                      key + "</th><th>Count</th></tr></thead><tbody>";
    if (rows.is_array())
        for (const auto& r : rows)
            out += "<tr><td class=\"hostile\">" + h(ops::json_str(r, key)) + "</td><td>" +
                   num(r, "count") + "</td></tr>";
    if (!rows.is_array() || rows.empty()) out += "<tr><td colspan=\"2\">none</td></tr>";
    return out + "</tbody></table>";
}

std::string log_body(log_view& logs, const httplib::Request& req) {
    std::shared_ptr<const nlohmann::json> r;
    try {
        r = logs.report();
    } catch (const std::exception& e) {
        return "<div class=\"alert alert-warning\" id=\"log-error\">" + h(e.what()) + "</div>";
    }
    const auto& j = *r;
    const auto& rd = j["read"];
    const auto& t = j["totals"];
    std::ostringstream o;
    o << notice(req) << "<p id=\"log-source\">" << h(ops::json_str(rd, "file")) << ": the last "
      << num(rd, "bytes") << " bytes of " << num(rd, "size");
    if (j["period"].is_object())
        o << ", " << h(ops::json_str(j["period"], "first")) << " to "
          << h(ops::json_str(j["period"], "last"));
    o << " (as <code>mxctl log-report</code>; computed " << when(rd.value("time", std::int64_t{0}))
      << ", at most once a minute)</p><table class=\"table table-sm w-auto\" "
         "id=\"log-totals\"><tbody>";
    for (auto [key, label] : {std::pair{"received", "Received"},
                              {"delivered", "Delivered"},
                              {"deferred", "Deferred"},
                              {"bounced", "Bounced"},
                              {"rejected", "Rejected"},
                              {"milter_rejected", "Rejected by the milter"},
                              {"imported", "Imported"},
                              {"import_failed", "Import failed"},
                              {"unparsed", "Lines not understood"}})
        o << "<tr><th>" << label << "</th><td id=\"log-" << key << "\">" << num(t, key)
          << "</td></tr>";
    const auto& d = j["delays"];
    o << "</tbody></table><div class=\"row\"><div class=\"col-lg-6\"><h2 class=\"h6\">Per "
         "hour</h2><canvas class=\"logchart\" data-kind=\"hourly\" id=\"log-hourly\" "
         "data-src=\"/api/log-report.json\"></canvas></div><div class=\"col-lg-6\"><h2 "
         "class=\"h6\">Rejects by reason</h2><canvas class=\"logchart\" data-kind=\"reasons\" "
         "data-src=\"/api/log-report.json\"></canvas></div></div><div class=\"row\"><div "
         "class=\"col-lg-6\"><h2 class=\"h6\">Delivery delay (seconds)</h2><canvas "
         "class=\"logchart\" data-kind=\"delays\" data-src=\"/api/log-report.json\"></canvas>"
         "<table class=\"table table-sm w-auto\" id=\"log-delays\"><thead><tr><th>count</th>"
         "<th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th></tr></thead><tbody><tr>"
      << "<td>" << num(d, "count") << "</td><td>" << num(d, "p50") << "</td><td>" << num(d, "p90")
      << "</td><td>" << num(d, "p95") << "</td><td>" << num(d, "p99") << "</td><td>"
      << num(d, "max") << "</td></tr></tbody></table></div><div "
      << "class=\"col-lg-6\">"
      << top_table(j["top_rejected_recipients"], "log-top-recipients", "address",
                   "Top rejected recipients")
      << top_table(j["top_rejecting_clients"], "log-top-clients", "client", "Top rejected clients")
      << "</div></div>";
    return o.str();
}

}  // namespace

void install_log_page(httplib::Server& svr, auth& a, log_view& logs) {
    svr.Get("/log", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(page(s, "Log report", log_body(logs, req)), "text/html; charset=utf-8");
    });
    svr.Get("/api/log-report.json", [&](const httplib::Request&, httplib::Response& res) {
        try {
            auto r = logs.report();
            res.set_content(r->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                            "application/json");
        } catch (const std::exception& e) {
            res.status = 503;
            res.set_content(nlohmann::json{{"error", e.what()}}.dump(), "application/json");
        }
    });
}

}  // namespace mx::console
