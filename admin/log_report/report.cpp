// report: see report.hpp.
#include "report.hpp"

#include <atomic>
#include <csignal>
#include <ctime>
#include <stdexcept>

#include "input.hpp"
#include "line_parser.hpp"
#include "render.hpp"
#include "trace.hpp"

namespace mx::logreport {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
    g_stop.store(true);
}

bool all_digits(const std::string& s, std::size_t pos, std::size_t n) {
    if (pos + n > s.size()) return false;
    for (std::size_t i = pos; i < pos + n; ++i)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

std::int64_t local_midnight(std::int64_t t) {
    time_t tt = static_cast<time_t>(t);
    struct tm tmv {};
    localtime_r(&tt, &tmv);
    tmv.tm_hour = tmv.tm_min = tmv.tm_sec = 0;
    tmv.tm_isdst = -1;
    return static_cast<std::int64_t>(mktime(&tmv));
}

}  // namespace

std::int64_t parse_time_arg(const std::string& s, std::int64_t now) {
    if (s == "today") return local_midnight(now);
    if (s == "yesterday") return local_midnight(local_midnight(now) - 12 * 3600);
    if (s == "now") return now;
    // Relative: "90m", "12h", "7d", "30s".
    if (!s.empty() && s.size() <= 9 && all_digits(s, 0, s.size() - 1)) {
        const std::int64_t n = std::stoll(s.substr(0, s.size() - 1));
        switch (s.back()) {
            case 's':
                return now - n;
            case 'm':
                return now - n * 60;
            case 'h':
                return now - n * 3600;
            case 'd':
                return now - n * 86400;
            default:
                break;
        }
    }
    // Absolute: a log line header parses it best (same rules as the log's own timestamps).
    if (s.size() >= 10 && all_digits(s, 0, 4) && s[4] == '-' && all_digits(s, 5, 2) &&
        s[7] == '-' && all_digits(s, 8, 2)) {
        std::string iso = s.substr(0, 10);
        std::string rest = s.size() > 10 ? s.substr(11) : "";
        if (s.size() > 10 && s[10] != 'T' && s[10] != ' ') throw std::invalid_argument(s);
        if (rest.empty())
            rest = "00:00:00";
        else if (rest.size() == 5)
            rest += ":00";
        else if (rest.size() > 5 && rest[5] != ':')
            rest.insert(5, ":00");
        const std::string line = iso + "T" + rest + " h postfix/x[1]: x";
        line_parser p(now);
        log_line l;
        if (p.parse(line, l)) return l.time;
    }
    throw std::invalid_argument("cannot understand time \"" + s +
                                "\" (use 2024-02-08, \"2024-02-08 21:00\", RFC 3339, today, "
                                "yesterday, or 12h / 7d)");
}

int run_log_report(const report_options& opt, std::ostream& out, std::ostream& err) {
    const std::int64_t now = opt.now ? *opt.now : static_cast<std::int64_t>(std::time(nullptr));
    line_parser parser(now);
    if (opt.year) parser.set_year(opt.year);
    aggregator agg(opt.filter, opt.connectors);
    render_options ropt;
    ropt.top = opt.top;
    if (opt.show_unparsed) {
        agg.on_unparsed = [&err](std::string_view l) {
            err << "unparsed: " << printable(l) << "\n";
        };
    }

    std::optional<tracer> tr;
    log_line tline;
    event tev;
    if (!opt.trace.empty()) tr.emplace(opt.trace);

    const std::function<void(std::string_view)> on_line =
        tr ? std::function<void(std::string_view)>([&](std::string_view raw) {
            if (!parser.parse(raw, tline)) return;
            const bool importer = tline.syslog_name == "mx-importer";
            if (!importer && tline.syslog_name.substr(0, 7) != "postfix") return;
            if ((opt.filter.since && tline.time < *opt.filter.since) ||
                (opt.filter.until && tline.time >= *opt.filter.until))
                return;
            if (importer) {
                if (!parse_importer_event(tline, tev)) return;
            } else {
                parse_event(tline, tev);  // unparsed lines of a traced message are shown too
            }
            tr->add(tline, tev);
        })
           : std::function<void(std::string_view)>(
                 [&](std::string_view raw) { agg.add_line(raw, parser); });

    const auto emit = [&]() {
        if (tr) {
            auto results = tr->finish();
            if (opt.format == output_format::json)
                out << trace_json(results).dump(2, ' ', false,
                                                nlohmann::json::error_handler_t::replace)
                    << "\n";
            else
                render_trace_text(results, out);
            out.flush();
            return;
        }
        agg.finish();
        switch (opt.format) {
            case output_format::json:
                // In follow mode one object per line (JSON Lines); otherwise indented.
                out << to_json(agg, ropt).dump(opt.follow ? -1 : 2, ' ', false,
                                               nlohmann::json::error_handler_t::replace)
                    << "\n";
                break;
            case output_format::prometheus:
                render_prometheus(agg, out);
                break;
            case output_format::text:
                render_text(agg, ropt, out);
                break;
        }
        out.flush();
    };

    std::vector<std::string> files = opt.files;
    if (files.empty()) files.push_back("-");
    files = order_rotated(files);
    int rc = 0;
    const std::size_t last = files.size() - 1;
    line_splitter splitter;
    for (std::size_t i = 0; i < files.size(); ++i) {
        const std::string& f = files[i];
        if (opt.follow && i == last && f != "-") break;  // followed below
        try {
            auto src = open_source(f);
            if (!splitter.pump(*src, on_line, true)) {
                err << "log-report: " << f << ": read error: " << src->error() << "\n";
                rc = 1;
            }
        } catch (const std::exception& e) {
            err << "log-report: " << e.what() << "\n";
            rc = 1;
        }
    }
    if (opt.follow && files[last] != "-") {
        g_stop.store(false);
        auto old_int = std::signal(SIGINT, on_stop_signal);
        auto old_term = std::signal(SIGTERM, on_stop_signal);
        try {
            // A trace is printed once, at the end (its open messages must stay open meanwhile).
            follow_file(files[last], on_line, g_stop, tr ? std::function<void()>() : emit,
                        opt.interval);
        } catch (const std::exception& e) {
            err << "log-report: " << e.what() << "\n";
            rc = 1;
        }
        std::signal(SIGINT, old_int);
        std::signal(SIGTERM, old_term);
    }
    emit();
    return rc;
}

}  // namespace mx::logreport
