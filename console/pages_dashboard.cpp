// console dashboard: live counters from shared memory (per connector and totals), daemons
// up/down from their heartbeats, the ImportFailed backlog, and the history ring as a chart
// (Chart.js from Debian, drawn by /static/console.js from /api/history.json — no inline script).
#include <ctime>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

constexpr std::uint64_t heartbeat_fresh_seconds = 15;  // as mxctl doctor

std::string daemon_state(const char* name, std::uint64_t heartbeat) {
    auto now = static_cast<std::uint64_t>(::time(nullptr));
    bool up = heartbeat != 0 && now >= heartbeat && now - heartbeat <= heartbeat_fresh_seconds;
    return std::string("<li>") + name + ": <span class=\"" + (up ? "up" : "down") + "\" id=\"" +
           name + "-state\">" + (up ? "up" : "down") + "</span>" +
           (heartbeat ? " (heartbeat " + when(static_cast<std::int64_t>(heartbeat)) + ")" : "") +
           "</li>";
}

std::string doctor_section(doctor_cache& doctor, const session& s) {
    auto r = doctor.get();
    std::ostringstream o;
    o << "<h2 class=\"h5\">Doctor</h2><div id=\"doctor\">";
    if (r.time == 0) {
        o << "<p id=\"doctor-state\">Checking… (<code>mxctl doctor</code> runs in the "
             "background; reload in a moment)</p></div>";
        return o.str();
    }
    std::size_t ok = 0;
    std::string rows;
    for (const auto& f : r.findings) {
        auto status = ops::json_str(f, "status");
        if (status == "ok") {
            ++ok;
            continue;
        }
        rows += "<tr class=\"doctor-" + h(status) + "\"><td>" +
                (status == "fail" ? "<span class=\"down\">FAIL</span>" : "<span>WARN</span>") +
                "</td><td>" + h(ops::json_str(f, "check")) + "</td><td>" +
                h(ops::json_str(f, "message")) + "</td><td><code>" + h(ops::json_str(f, "fix")) +
                "</code></td></tr>";
    }
    o << "<p id=\"doctor-state\">Checked " << when(r.time)
      << (r.running ? " (checking again…)" : "") << ": " << ok << " ok";
    if (!r.error.empty()) o << "; <span class=\"down\">" << h(r.error) << "</span>";
    o << "</p>";
    if (!rows.empty())
        o << "<table class=\"table table-sm\" id=\"doctor-findings\"><thead><tr><th></th><th>"
             "Check</th><th>Finding</th><th>Fix</th></tr></thead><tbody>"
          << rows << "</tbody></table>";
    else if (r.error.empty())
        o << "<p>No warnings, nothing failed.</p>";
    o << "<form method=\"post\" action=\"/doctor/refresh\">" << csrf_field(s)
      << "<button class=\"btn btn-sm btn-outline-secondary\" id=\"doctor-refresh\">Check "
         "again</button></form></div>";
    return o.str();
}

std::string dashboard_body(console_env& env, const std::string& doctor_html) {
    std::ostringstream o;
    auto* shm = env.shm();
    std::size_t backlog = 0;
    {
        auto guard = env.reading();
        try {
            backlog = ops::scan_failed(env, "").size();
        } catch (const std::exception&) {
        }
    }
    o << "<div class=\"row\"><div class=\"col-md-4\"><h2 class=\"h5\">Daemons</h2><ul "
         "id=\"daemons\">";
    if (shm) {
        o << daemon_state("mx-milter", shm->layout().milter_heartbeat)
          << daemon_state("mx-importer", shm->layout().importer_heartbeat);
    } else {
        o << "<li>shared memory unavailable: no counters</li>";
    }
    o << "</ul><p>ImportFailed backlog: <a href=\"/failed\" id=\"failed-backlog\">" << backlog
      << "</a></p></div><div class=\"col-md-8\"><h2 class=\"h5\">Counters</h2><table "
         "class=\"table table-sm\" id=\"counters\"><thead><tr><th>Connector</th><th>Accepted</"
         "th><th>Rejected</th><th>Tempfailed</th><th>Imported</th><th>Failed</th><th>Waiting</"
         "th></tr></thead><tbody>";
    if (shm) {
        for (auto* c : shm->used_slots()) {
            std::uint64_t failed = c->failed_no_mailbox + c->failed_unparseable +
                                   c->failed_too_large + c->failed_refused + c->failed_expired;
            o << "<tr><td>" << h(std::string(c->name, strnlen(c->name, sizeof c->name)))
              << "</td><td>" << c->accepted << "</td><td>" << c->rejected_unknown << "</td><td>"
              << c->tempfailed_inactive + c->tempfailed_error << "</td><td>" << c->imported
              << "</td><td>" << failed << "</td><td>" << c->backlog << "</td></tr>";
        }
        auto t = take_sample(*shm);
        o << "<tr class=\"fw-bold\"><td>all</td><td id=\"total-accepted\">" << t.accepted
          << "</td><td id=\"total-rejected\">" << t.rejected << "</td><td>" << t.tempfailed
          << "</td><td id=\"total-imported\">" << t.imported << "</td><td id=\"total-failed\">"
          << t.failed << "</td><td>" << t.backlog << "</td></tr>";
    }
    o << "</tbody></table></div></div>" << doctor_html
      << "<h2 class=\"h5\">History, all connectors (per "
         "interval)</h2><div class=\"chart-box\"><canvas class=\"history\" id=\"history\" "
         "data-src=\"/api/history.json\"></canvas></div>";
    if (shm)
        for (auto* c : shm->used_slots()) {
            std::string name(c->name, strnlen(c->name, sizeof c->name));
            if (!valid_connector_name(name)) continue;
            o << "<h2 class=\"h6\">" << h(name) << "</h2><div class=\"chart-box\"><canvas "
              << "class=\"history\" data-src=\"/api/history.json?connector=" << url_encode(name)
              << "\"></canvas></div>";
        }
    return o.str();
}

// Per-interval differences of the cumulative samples (a counter reset counts from zero).
nlohmann::json history_json(const std::vector<sample>& pts) {
    nlohmann::json j = {{"labels", nlohmann::json::array()}};
    const char* keys[] = {"accepted", "rejected", "tempfailed", "imported", "failed", "backlog"};
    for (auto* k : keys) j[k] = nlohmann::json::array();
    for (std::size_t i = 1; i < pts.size(); ++i) {
        const auto &a = pts[i - 1], &b = pts[i];
        auto d = [](std::uint64_t before, std::uint64_t now) {
            return now >= before ? now - before : now;
        };
        j["labels"].push_back(when(b.time).substr(5, 11));
        j["accepted"].push_back(d(a.accepted, b.accepted));
        j["rejected"].push_back(d(a.rejected, b.rejected));
        j["tempfailed"].push_back(d(a.tempfailed, b.tempfailed));
        j["imported"].push_back(d(a.imported, b.imported));
        j["failed"].push_back(d(a.failed, b.failed));
        j["backlog"].push_back(b.backlog);
    }
    return j;
}

}  // namespace

void install_dashboard(httplib::Server& svr, console_env& env, auth& a,
                       const std::filesystem::path& history_dir, doctor_cache& doctor) {
    svr.Get("/", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(
            page(s, "Dashboard", notice(req) + dashboard_body(env, doctor_section(doctor, s))),
            "text/html; charset=utf-8");
    });
    // Only asks for a new run (read-only accounts too): the page shows it when it is done.
    a.post(svr, "/doctor/refresh", true, [&](const httplib::Request&, httplib::Response& res) {
        doctor.refresh();
        doctor.get();
        redirect(res, "/?ok=" + url_encode("doctor is checking again"));
    });
    svr.Get("/api/history.json",
            [history_dir](const httplib::Request& req, httplib::Response& res) {
                history ring(history_path(history_dir, req.get_param_value("connector")),
                             console_settings{}.history_points);
                res.set_content(history_json(ring.read()).dump(), "application/json");
            });
}

}  // namespace mx::console
