// render: see render.hpp.
#include "render.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <map>
#include <sstream>
#include <vector>

#include "util/prometheus.hpp"

namespace mx::logreport {

namespace {

using json = nlohmann::json;

struct named_stats {
    std::string name;
    const domain_stats* s;
    std::uint64_t activity() const { return s->delivered + s->deferred + s->bounced + s->rejected; }
};

std::vector<named_stats> sorted_domains(const aggregator& agg) {
    std::vector<named_stats> v;
    v.reserve(agg.domains().size() + 1);
    for (const auto& [d, s] : agg.domains())
        if (s.selected) v.push_back({d.empty() ? std::string("(no domain)") : d, &s});
    if (agg.other_domains().delivered + agg.other_domains().deferred + agg.other_domains().bounced +
            agg.other_domains().rejected >
        0)
        v.push_back({"(other)", &agg.other_domains()});
    std::sort(v.begin(), v.end(), [](const named_stats& a, const named_stats& b) {
        return a.activity() != b.activity() ? a.activity() > b.activity() : a.name < b.name;
    });
    return v;
}

// Per-connector sums (domains without an owner under "(none)").
std::map<std::string, domain_stats> connector_sums(const aggregator& agg) {
    std::map<std::string, domain_stats> out;
    if (!agg.connectors()) return out;
    for (const auto& name : agg.connectors()->connectors()) out[name];
    const auto add = [&](const domain_stats& s) {
        if (!s.selected) return;
        domain_stats& t = out[s.connector ? *s.connector : std::string("(none)")];
        t.delivered += s.delivered;
        t.deferred += s.deferred;
        t.bounced += s.bounced;
        t.rejected += s.rejected;
        t.milter_rejected += s.milter_rejected;
        t.imported += s.imported;
        t.import_failed += s.import_failed;
        for (std::size_t i = 0; i < s.rejects_by_reason.size(); ++i)
            t.rejects_by_reason[i] += s.rejects_by_reason[i];
    };
    for (const auto& [d, s] : agg.domains()) add(s);
    const domain_stats& o = agg.other_domains();
    if (o.delivered + o.deferred + o.bounced + o.rejected + o.imported + o.import_failed > 0)
        add(o);
    return out;
}

json reasons_json(const std::array<std::uint64_t, reject_reason_count>& r) {
    json j = json::object();
    for (int i = 0; i < reject_reason_count; ++i)
        j[std::string(reject_reason_name(static_cast<reject_reason>(i)))] =
            r[static_cast<std::size_t>(i)];
    return j;
}

json stats_json(const domain_stats& s) {
    return json{{"delivered", s.delivered},
                {"deferred", s.deferred},
                {"bounced", s.bounced},
                {"rejected", s.rejected},
                {"milter_rejected", s.milter_rejected},
                {"imported", s.imported},
                {"import_failed", s.import_failed},
                {"rejects_by_reason", reasons_json(s.rejects_by_reason)}};
}

json counter_map_json(const string_map<std::uint64_t>& m) {
    std::map<std::string, std::uint64_t> sorted(m.begin(), m.end());
    json j = json::object();
    for (const auto& [k, v] : sorted) j[k] = v;
    return j;
}

json top_json(const bounded_counter& c, std::size_t n, const char* key) {
    json a = json::array();
    for (const auto& [k, v] : c.top(n)) a.push_back(json{{key, k}, {"count", v}});
    return a;
}

std::string iso_time(std::int64_t t) {
    char buf[40];
    const time_t tt = static_cast<time_t>(t);
    struct tm tmv {};
    localtime_r(&tt, &tmv);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tmv);
    return buf;
}

const char* reason_label(reject_reason r) {
    switch (r) {
        case reject_reason::user_unknown:
            return "user unknown (5.1.1)";
        case reject_reason::connector_inactive:
            return "connector inactive (4.2.1)";
        case reject_reason::store_error:
            return "store error (4.3.0)";
        case reject_reason::milter_unavailable:
            return "milter unavailable (451 4.7.1)";
        case reject_reason::relay_denied:
            return "relay access denied";
        case reject_reason::other:
            return "other";
    }
    return "other";
}

// Aligned two-column rows: label padded to `width`, value right-aligned in 10.
void row(std::ostream& out, std::string_view label, std::uint64_t v, std::string_view note = {},
         int width = 34) {
    out << "  " << std::left << std::setw(width) << label << std::right << std::setw(10) << v;
    if (!note.empty()) out << "  " << note;
    out << '\n';
}

std::string fmt_seconds(double s) {
    char buf[32];
    if (s < 10)
        std::snprintf(buf, sizeof buf, "%.2f s", s);
    else if (s < 3600)
        std::snprintf(buf, sizeof buf, "%.0f s", s);
    else
        std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
    return buf;
}

}  // namespace

std::string printable(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return out;
}

std::string format_time(std::int64_t t) {
    char buf[32];
    const time_t tt = static_cast<time_t>(t);
    struct tm tmv {};
    localtime_r(&tt, &tmv);
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tmv);
    return buf;
}

nlohmann::json to_json(const aggregator& agg, const render_options& opt) {
    const totals& t = agg.total();
    json j;
    j["schema"] = "mx-log-report/1";
    j["period"] = agg.first_time() ? json{{"first", iso_time(agg.first_time())},
                                          {"last", iso_time(agg.last_time())},
                                          {"first_epoch", agg.first_time()},
                                          {"last_epoch", agg.last_time()}}
                                   : json(nullptr);
    json tot = {
        {"lines", t.lines},
        {"unparsed", t.unparsed},
        {"other_lines", t.other_lines},
        {"filtered_out", t.filtered_out},
        {"connections", t.connections},
        {"received", t.received},
        {"received_smtpd", t.received_smtpd},
        {"received_pickup", t.received_pickup},
        {"queued", t.queued},
        {"recipients", t.recipients},
        {"bytes_received", t.bytes_received},
        {"delivered", t.delivered},
        {"forwarded", t.forwarded},
        {"deferred", t.deferred},
        {"deferred_messages", t.deferred_messages},
        {"bounced", t.bounced},
        {"expired", t.expired},
        {"rejected", t.rejected},
        {"milter_rejected", t.milter_rejected},
        {"reject_warnings", t.reject_warnings},
        {"held", t.held},
        {"discarded", t.discarded},
        {"notifications", t.notifications},
        {"warnings", t.warnings},
        {"open_messages", agg.open_messages()},
        {"imported", t.imported},
        {"import_failed", t.import_failed},
        {"import_deferred", t.import_deferred},
        {"import_duplicates", t.import_duplicates},
        {"importer_lines", t.importer_lines},
    };
    tot["delivered_to_connectors"] =
        agg.connectors() ? json(t.delivered_to_connectors) : json(nullptr);
    j["totals"] = tot;
    j["rejects"] = {{"by_reason", reasons_json(agg.rejects_by_reason())},
                    {"by_stage", counter_map_json(agg.rejects_by_stage())},
                    {"milter_by_stage", counter_map_json(agg.milter_rejects_by_stage())},
                    {"by_code", counter_map_json(agg.rejects_by_code())}};
    j["top_rejected_recipients"] = top_json(agg.rejected_recipients(), opt.top, "address");
    j["top_rejecting_clients"] = top_json(agg.rejecting_clients(), opt.top, "client");
    j["deferral_reasons"] = top_json(agg.deferral_reasons(), opt.top, "reason");
    j["bounce_reasons"] = top_json(agg.bounce_reasons(), opt.top, "reason");
    j["import_failure_reasons"] = top_json(agg.import_failure_reasons(), opt.top, "reason");
    const delay_stats& d = agg.delays();
    j["delays"] = {{"count", d.count()},      {"mean", d.mean()},        {"p50", d.percentile(50)},
                   {"p90", d.percentile(90)}, {"p95", d.percentile(95)}, {"p99", d.percentile(99)},
                   {"max", d.max()}};
    json hours = json::array();
    for (std::size_t h = 0; h < 24; ++h) {
        const hour_stats& s = agg.hours()[h];
        hours.push_back({{"hour", h},
                         {"received", s.received},
                         {"delivered", s.delivered},
                         {"deferred", s.deferred},
                         {"bounced", s.bounced},
                         {"rejected", s.rejected}});
    }
    j["hourly"] = hours;
    json doms = json::array();
    for (const auto& ns : sorted_domains(agg)) {
        json e = stats_json(*ns.s);
        e["domain"] = ns.name;
        e["connector"] = ns.s->connector ? json(*ns.s->connector) : json(nullptr);
        doms.push_back(e);
    }
    j["domains"] = doms;
    json conns = json::array();
    for (const auto& [name, s] : connector_sums(agg)) {
        json e = stats_json(s);
        e["connector"] = name;
        conns.push_back(e);
    }
    j["connectors"] = agg.connectors() ? conns : json(nullptr);
    const report_filter& f = agg.filter();
    j["filters"] = {{"since", f.since ? json(iso_time(*f.since)) : json(nullptr)},
                    {"until", f.until ? json(iso_time(*f.until)) : json(nullptr)},
                    {"domains", f.domains},
                    {"connectors", f.connectors}};
    return j;
}

namespace {

// The title, the filters and the totals block of the text report.
void text_totals(const aggregator& agg, std::ostream& out) {
    const totals& t = agg.total();
    out << "Postfix log report";
    if (agg.first_time())
        out << "  " << format_time(agg.first_time()) << " .. " << format_time(agg.last_time());
    out << "\n";
    const report_filter& f = agg.filter();
    if (!f.domains.empty() || !f.connectors.empty() || f.since || f.until) {
        out << "Filters:";
        if (f.since) out << " since " << format_time(*f.since);
        if (f.until) out << " until " << format_time(*f.until);
        for (const auto& d : f.domains) out << " domain " << d;
        for (const auto& c : f.connectors) out << " connector " << c;
        out << "\n";
    }
    out << "\nTotals\n";
    row(out, "connections", t.connections);
    row(out, "received", t.received,
        "smtpd " + std::to_string(t.received_smtpd) + ", pickup " +
            std::to_string(t.received_pickup));
    row(out, "queued (accepted messages)", t.queued, std::to_string(t.bytes_received) + " bytes");
    row(out, "recipients", t.recipients);
    row(out, "delivered", t.delivered);
    if (agg.connectors()) row(out, "delivered to connectors", t.delivered_to_connectors);
    if (t.forwarded) row(out, "forwarded", t.forwarded);
    row(out, "deferred", t.deferred, std::to_string(t.deferred_messages) + " messages");
    row(out, "bounced", t.bounced);
    row(out, "expired", t.expired);
    row(out, "rejected", t.rejected);
    row(out, "  of which milter-reject", t.milter_rejected);
    if (t.reject_warnings) row(out, "reject warnings", t.reject_warnings);
    if (t.held) row(out, "held", t.held);
    if (t.discarded) row(out, "discarded", t.discarded);
    row(out, "notifications (bounces sent)", t.notifications);
    if (t.importer_lines) {
        row(out, "imported (mx-importer)", t.imported);
        row(out, "import failed (ImportFailed)", t.import_failed);
        row(out, "import deferred", t.import_deferred);
    }
    row(out, "warnings", t.warnings);
    row(out, "lines", t.lines,
        std::to_string(t.unparsed) + " unparsed, " + std::to_string(t.other_lines) +
            " other programs");
}

}  // namespace

void render_text(const aggregator& agg, const render_options& opt, std::ostream& out) {
    text_totals(agg, out);
    out << "\nRejects by reason\n";
    for (int i = 0; i < reject_reason_count; ++i)
        row(out, reason_label(static_cast<reject_reason>(i)),
            agg.rejects_by_reason()[static_cast<std::size_t>(i)]);
    if (!agg.rejects_by_stage().empty()) {
        out << "\nRejects by stage (milter-reject in brackets)\n";
        std::map<std::string, std::uint64_t> st(agg.rejects_by_stage().begin(),
                                                agg.rejects_by_stage().end());
        for (const auto& [k, v] : st) {
            auto m = agg.milter_rejects_by_stage().find(k);
            row(out, printable(k), v,
                m == agg.milter_rejects_by_stage().end() ? ""
                                                         : "[" + std::to_string(m->second) + "]");
        }
    }
    const auto top_block = [&](const char* title, const bounded_counter& c) {
        const auto v = c.top(opt.top);
        if (v.empty()) return;
        out << "\n" << title << "\n";
        for (const auto& [k, n] : v) {
            std::string label = printable(k);
            if (label.size() > 90) label = label.substr(0, 87) + "...";
            out << "  " << std::right << std::setw(8) << n << "  " << label << "\n";
        }
    };
    top_block("Top rejected recipients", agg.rejected_recipients());
    top_block("Top rejected clients", agg.rejecting_clients());
    top_block("Deferral reasons", agg.deferral_reasons());
    top_block("Bounce reasons", agg.bounce_reasons());
    top_block("Import failure reasons", agg.import_failure_reasons());

    const delay_stats& d = agg.delays();
    if (d.count()) {
        out << "\nDelivery delay (" << d.count() << " deliveries)\n";
        out << "  p50 " << fmt_seconds(d.percentile(50)) << "   p90 "
            << fmt_seconds(d.percentile(90)) << "   p95 " << fmt_seconds(d.percentile(95))
            << "   p99 " << fmt_seconds(d.percentile(99)) << "   max " << fmt_seconds(d.max())
            << "\n";
    }

    const auto conns = connector_sums(agg);
    const auto print_stats_table =
        [&](const char* title,
            const std::vector<std::pair<std::string, const domain_stats*>>& rows) {
            if (rows.empty()) return;
            out << "\n" << title << "\n";
            out << "  " << std::left << std::setw(34) << "" << std::right << std::setw(10)
                << "delivered" << std::setw(10) << "deferred" << std::setw(10) << "bounced"
                << std::setw(10) << "rejected" << std::setw(10) << "milter" << std::setw(10)
                << "imported" << std::setw(10) << "imp.fail"
                << "\n";
            for (const auto& [name, s] : rows) {
                std::string label = printable(name);
                if (label.size() > 34) label = label.substr(0, 31) + "...";
                out << "  " << std::left << std::setw(34) << label << std::right << std::setw(10)
                    << s->delivered << std::setw(10) << s->deferred << std::setw(10) << s->bounced
                    << std::setw(10) << s->rejected << std::setw(10) << s->milter_rejected
                    << std::setw(10) << s->imported << std::setw(10) << s->import_failed << "\n";
            }
        };
    if (!conns.empty()) {
        std::vector<std::pair<std::string, const domain_stats*>> rows;
        for (const auto& [k, s] : conns) rows.emplace_back(k, &s);
        print_stats_table("Per connector", rows);
    }
    {
        std::vector<std::pair<std::string, const domain_stats*>> rows;
        const auto doms = sorted_domains(agg);
        for (std::size_t i = 0; i < doms.size() && i < std::max<std::size_t>(opt.top, 20); ++i)
            rows.emplace_back(doms[i].name, doms[i].s);
        print_stats_table("Per recipient domain", rows);
    }

    out << "\nPer hour      received delivered  deferred   bounced  rejected\n";
    for (std::size_t h = 0; h < 24; ++h) {
        const hour_stats& s = agg.hours()[h];
        char label[16];
        std::snprintf(label, sizeof label, "  %02zu:00", h);
        out << std::left << std::setw(12) << label << std::right << std::setw(10) << s.received
            << std::setw(10) << s.delivered << std::setw(10) << s.deferred << std::setw(10)
            << s.bounced << std::setw(10) << s.rejected << "\n";
    }
}

void render_prometheus(const aggregator& agg, std::ostream& out) {
    const totals& t = agg.total();
    const auto counter = [&](const char* name, const char* help, std::uint64_t v) {
        out << "# HELP mx_log_" << name << " " << help << "\n# TYPE mx_log_" << name
            << " counter\nmx_log_" << name << " " << v << "\n";
    };
    counter("lines_total", "Log lines read.", t.lines);
    counter("unparsed_lines_total", "Postfix lines not understood.", t.unparsed);
    counter("connections_total", "smtpd connections.", t.connections);
    counter("received_total", "Messages received (smtpd client= and pickup).", t.received);
    counter("queued_total", "Messages that entered the queue manager.", t.queued);
    counter("recipients_total", "Recipients of queued messages.", t.recipients);
    counter("delivered_total", "Recipient deliveries with status=sent.", t.delivered);
    counter("deferred_total", "Deferral log lines.", t.deferred);
    counter("bounced_total", "Recipient deliveries with status=bounced.", t.bounced);
    counter("expired_total", "Messages returned to sender after the queue lifetime.", t.expired);
    counter("imported_total", "Recipients imported by mx-importer.", t.imported);
    counter("import_failed_total", "Recipients moved to ImportFailed by mx-importer.",
            t.import_failed);
    counter("milter_rejected_total", "milter-reject lines.", t.milter_rejected);
    out << "# HELP mx_log_rejected_total Reject lines (Postfix and milter) by reason.\n"
           "# TYPE mx_log_rejected_total counter\n";
    for (int i = 0; i < reject_reason_count; ++i)
        out << "mx_log_rejected_total{reason=\""
            << reject_reason_name(static_cast<reject_reason>(i)) << "\"} "
            << agg.rejects_by_reason()[static_cast<std::size_t>(i)] << "\n";
    const auto conns = connector_sums(agg);
    if (!conns.empty()) {
        // Connector names come from the store (a handful), never from log text.
        out << "# HELP mx_log_connector_deliveries_total Recipient outcomes per connector.\n"
               "# TYPE mx_log_connector_deliveries_total counter\n";
        for (const auto& [name, s] : conns) {
            const std::string l = mx::util::prometheus_label_value(name);
            out << "mx_log_connector_deliveries_total{connector=\"" << l << "\",status=\"sent\"} "
                << s.delivered << "\n";
            out << "mx_log_connector_deliveries_total{connector=\"" << l
                << "\",status=\"deferred\"} " << s.deferred << "\n";
            out << "mx_log_connector_deliveries_total{connector=\"" << l
                << "\",status=\"bounced\"} " << s.bounced << "\n";
            out << "mx_log_connector_deliveries_total{connector=\"" << l
                << "\",status=\"rejected\"} " << s.rejected << "\n";
        }
    }
    const delay_stats& d = agg.delays();
    out << "# HELP mx_log_delivery_delay_seconds Delivery delay percentiles (status=sent).\n"
           "# TYPE mx_log_delivery_delay_seconds summary\n";
    for (const double q : {0.5, 0.9, 0.99})
        out << "mx_log_delivery_delay_seconds{quantile=\"" << q << "\"} " << d.percentile(q * 100)
            << "\n";
    out << "mx_log_delivery_delay_seconds_sum " << d.mean() * static_cast<double>(d.count()) << "\n"
        << "mx_log_delivery_delay_seconds_count " << d.count() << "\n";
}

}  // namespace mx::logreport
