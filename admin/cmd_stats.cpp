// mxctl stats: counters from the shared-memory segment, without talking to the daemons.
// Formats: aligned text, --json, --prometheus (text exposition format 0.0.4); --textfile PATH
// writes the Prometheus format atomically (temporary file + rename) for node_exporter's
// textfile collector, e.g. from a systemd timer or cron every minute.
// Process up/down comes from the heartbeats the daemons write into the segment every second.
// The import journal's size (bytes of data.mdb, entries per database) is read from the journal
// itself (read-only); without a journal (or no right to read it) it is simply left out.
#include <ctime>
#include <iostream>
#include <optional>
#include <sstream>

#include "global/journal.hpp"
#include "mxctl.hpp"
#include "target_health.hpp"
#include "util/fs.hpp"
#include "util/prometheus.hpp"

namespace mx::admin {
namespace {

struct counter_def {
    const char* name;
    const char* help;
    bool gauge;
    const std::atomic<std::uint64_t> connector_counters::*field;
};

const counter_def connector_defs[] = {
    {"accepted", "RCPT accepted by mx-milter", false, &connector_counters::accepted},
    {"rejected_unknown", "RCPT rejected 550 5.1.1 (no mailbox)", false,
     &connector_counters::rejected_unknown},
    {"tempfailed_inactive", "RCPT deferred 450 4.2.1 (connector inactive)", false,
     &connector_counters::tempfailed_inactive},
    {"tempfailed_error", "RCPT deferred 451 4.3.0 (store error)", false,
     &connector_counters::tempfailed_error},
    {"imported", "messages imported into mailboxes", false, &connector_counters::imported},
    {"failed_no_mailbox", "import failures: no mailbox", false,
     &connector_counters::failed_no_mailbox},
    {"failed_unparseable", "import failures: unparseable", false,
     &connector_counters::failed_unparseable},
    {"failed_too_large", "import failures: over size limit", false,
     &connector_counters::failed_too_large},
    {"failed_refused", "import failures: target refused", false,
     &connector_counters::failed_refused},
    {"failed_expired", "import failures: retried until maximum age", false,
     &connector_counters::failed_expired},
    {"retried", "temporary import failures retried", false, &connector_counters::retried},
    {"backlog", "files waiting in the drop folder", true, &connector_counters::backlog},
    {"oldest_file_time", "unix time of the oldest waiting file (0: none)", true,
     &connector_counters::oldest_file_time},
    {"bounces_sent", "non-delivery reports sent", false, &connector_counters::bounces_sent},
    {"bounces_suppressed", "non-delivery reports suppressed (null sender, auto-submitted, rate)",
     false, &connector_counters::bounces_suppressed},
    {"bounces_pending", "non-delivery reports waiting to be sent", true,
     &connector_counters::bounces_pending},
};

// A daemon counts as up when its heartbeat (written every second) is this fresh.
constexpr std::int64_t heartbeat_fresh_seconds = 15;

bool heartbeat_up(std::uint64_t hb, std::int64_t now) {
    return hb != 0 && now - static_cast<std::int64_t>(hb) <= heartbeat_fresh_seconds;
}

// Read as the state owner when run as root with `user` set: LMDB opens (and may create and
// truncate) lock.mdb by path even read-only, in a folder the daemon account owns. The rest of
// stats keeps root (a --textfile usually goes to a root-owned collector folder).
std::optional<importer::journal::size_info> journal_size(mxctl_context& ctx) {
    const auto& cfg = ctx.cfg();
    std::error_code ec;
    if (!std::filesystem::exists(cfg.journal_dir() / "data.mdb", ec)) return std::nullopt;
    try {
        auto text = ctx.read_as_state_owner([&] {
            auto j = importer::journal::open(cfg.journal_dir(), true);
            return nlohmann::json(j.size(cfg.journal_dir())).dump();
        });
        return nlohmann::json::parse(text).get<importer::journal::size_info>();
    } catch (const std::exception&) {
        return std::nullopt;  // not readable by this account: the counters still show
    }
}

std::string human_bytes(std::uint64_t b) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, ++u;
    std::ostringstream o;
    o.precision(u == 0 ? 0 : 1);
    o << std::fixed << v << " " << unit[u];
    return o.str();
}

// What every format shows, read once.
struct stats_view {
    std::optional<shm_state> shm;
    std::vector<const connector_counters*> slots;
    std::int64_t now = 0;
    std::optional<nlohmann::json> health;  // breakers, by mx-importer
    std::optional<importer::journal::size_info> journal;

    std::uint64_t get(const std::atomic<std::uint64_t> shm_layout::*f) const {
        return shm ? (shm->layout().*f).load() : 0;
    }
};

stats_view read_stats(mxctl_context& ctx) {
    stats_view v;
    v.shm = shm_state::attach_existing(ctx.cfg());
    if (v.shm) v.slots = v.shm->used_slots();
    v.now = static_cast<std::int64_t>(std::time(nullptr));
    v.health = importer::read_target_health(ctx.cfg());
    v.journal = journal_size(ctx);
    return v;
}

void metric_head(std::ostream& out, const std::string& name, const std::string& help, bool gauge) {
    out << "# HELP " << name << " " << help << "\n# TYPE " << name << " "
        << (gauge ? "gauge" : "counter") << "\n";
}

// The installation-wide metrics: processes, generation, unattributed RCPT counters.
void prometheus_global(std::ostream& out, const stats_view& v) {
    using l = shm_layout;
    metric_head(out, "mxconnector_up", "1 when the daemon's heartbeat is fresh (15 s).", true);
    out << "mxconnector_up{process=\"mx-milter\"} "
        << (heartbeat_up(v.get(&l::milter_heartbeat), v.now) ? 1 : 0) << "\n"
        << "mxconnector_up{process=\"mx-importer\"} "
        << (heartbeat_up(v.get(&l::importer_heartbeat), v.now) ? 1 : 0) << "\n";
    metric_head(out, "mxconnector_heartbeat_timestamp_seconds",
                "Unix time of the daemon's last heartbeat (0: never).", true);
    out << "mxconnector_heartbeat_timestamp_seconds{process=\"mx-milter\"} "
        << v.get(&l::milter_heartbeat) << "\n"
        << "mxconnector_heartbeat_timestamp_seconds{process=\"mx-importer\"} "
        << v.get(&l::importer_heartbeat) << "\n";
    metric_head(out, "mxconnector_generation", "Store change generation.", true);
    out << "mxconnector_generation " << v.get(&l::generation) << "\n";
    metric_head(out, "mxconnector_rcpt_not_ours_total", "RCPT for domains of no connector.", false);
    out << "mxconnector_rcpt_not_ours_total " << v.get(&l::not_ours) << "\n";
    metric_head(out, "mxconnector_rcpt_syntax_rejected_total", "RCPT rejected 501 5.1.3.", false);
    out << "mxconnector_rcpt_syntax_rejected_total " << v.get(&l::rejected_syntax) << "\n";
    metric_head(out, "mxconnector_rcpt_tempfailed_unattributed_total",
                "RCPT deferred 451 4.3.0 before a connector was known (store down).", false);
    out << "mxconnector_rcpt_tempfailed_unattributed_total "
        << v.get(&l::tempfailed_error_unattributed) << "\n";
}

std::string prometheus_text(const stats_view& v) {
    std::ostringstream out;
    prometheus_global(out, v);
    for (const auto& d : connector_defs) {
        std::string metric = std::string("mxconnector_") + d.name + (d.gauge ? "" : "_total");
        metric_head(out, metric, std::string(d.help) + ".", d.gauge);
        for (auto* s : v.slots)
            out << metric << "{connector=\"" << util::prometheus_label_value(s->name) << "\"} "
                << (s->*d.field).load() << "\n";
    }
    metric_head(out, "mxconnector_oldest_file_age_seconds",
                "Age of the oldest file waiting in the drop folder (0: none).", true);
    for (auto* s : v.slots) {
        auto t = static_cast<std::int64_t>(s->oldest_file_time.load());
        out << "mxconnector_oldest_file_age_seconds{connector=\""
            << util::prometheus_label_value(s->name) << "\"} "
            << (t > 0 && v.now > t ? v.now - t : 0) << "\n";
    }
    if (const auto& js = v.journal) {
        metric_head(out, "mxconnector_journal_bytes",
                    "Size of the import journal's data file (data.mdb).", true);
        out << "mxconnector_journal_bytes " << js->bytes << "\n";
        metric_head(out, "mxconnector_journal_entries", "Entries in the import journal.", true);
        const std::pair<const char*, std::uint64_t> dbs[] = {{"deliveries", js->deliveries},
                                                             {"files", js->files},
                                                             {"msgids", js->msgids},
                                                             {"queueids", js->queueids},
                                                             {"retries", js->retries}};
        for (auto [db, n] : dbs)
            out << "mxconnector_journal_entries{db=\"" << db << "\"} " << n << "\n";
    }
    if (v.health) out << importer::target_health_prometheus(*v.health);
    return out.str();
}

nlohmann::json stats_json(mxctl_context& ctx, const stats_view& v) {
    using l = shm_layout;
    nlohmann::json j = {{"segment", v.shm ? shm_state::segment_name(ctx.cfg()) : ""},
                        {"running_since", v.get(&l::created_time)},
                        {"generation", v.get(&l::generation)},
                        {"not_ours", v.get(&l::not_ours)},
                        {"rejected_syntax", v.get(&l::rejected_syntax)},
                        {"milter_heartbeat", v.get(&l::milter_heartbeat)},
                        {"importer_heartbeat", v.get(&l::importer_heartbeat)},
                        {"processes",
                         {{"mx-milter", heartbeat_up(v.get(&l::milter_heartbeat), v.now)},
                          {"mx-importer", heartbeat_up(v.get(&l::importer_heartbeat), v.now)}}}};
    nlohmann::json conns = nlohmann::json::object();
    for (auto* s : v.slots) {
        nlohmann::json c;
        for (const auto& d : connector_defs) c[d.name] = (s->*d.field).load();
        conns[s->name] = c;
    }
    j["connectors"] = conns;
    if (const auto& js = v.journal)
        j["journal"] = {{"bytes", js->bytes},
                        {"entries",
                         {{"deliveries", js->deliveries},
                          {"files", js->files},
                          {"msgids", js->msgids},
                          {"queueids", js->queueids},
                          {"retries", js->retries}}}};
    if (v.health) j["targets"] = v.health->value("targets", nlohmann::json::array());
    return j;
}

void print_stats(const nlohmann::json& j, const stats_view& v) {
    if (!v.shm) std::cout << "no counters yet (no daemon has run since boot)\n";
    std::cout << "mx-milter " << (j["processes"]["mx-milter"].get<bool>() ? "up" : "DOWN")
              << ", mx-importer " << (j["processes"]["mx-importer"].get<bool>() ? "up" : "DOWN")
              << "\n";
    std::cout << "generation " << j["generation"] << ", not ours " << j["not_ours"]
              << ", syntax rejects " << j["rejected_syntax"] << "\n";
    std::vector<std::vector<std::string>> rows{{"CONNECTOR"}};
    for (const auto& d : connector_defs) rows[0].push_back(d.name);
    for (auto* s : v.slots) {
        std::vector<std::string> r{s->name};
        for (const auto& d : connector_defs) r.push_back(std::to_string((s->*d.field).load()));
        rows.push_back(r);
    }
    if (rows.size() > 1) print_table(rows);
    if (const auto& js = v.journal)
        std::cout << "journal " << human_bytes(js->bytes) << ", " << js->deliveries
                  << " deliveries, " << js->retries << " retries\n";
    if (v.health)
        for (const auto& line : importer::target_health_lines(*v.health)) std::cout << line << "\n";
}

}  // namespace

void add_stats_command(CLI::App& app, mxctl_context& ctx) {
    auto* cmd =
        app.add_subcommand("stats", "show milter and importer counters (from shared memory)");
    struct opts {
        bool json = false, prometheus = false;
        std::string textfile;
    };
    auto o = std::make_shared<opts>();
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->add_flag("--prometheus", o->prometheus, "Prometheus text exposition format");
    cmd->add_option("--textfile", o->textfile,
                    "write the Prometheus format atomically to this file (node_exporter textfile "
                    "collector, e.g. /var/lib/prometheus/node-exporter/mx-connector.prom)");
    cmd->callback([&ctx, o] {
        auto v = read_stats(ctx);
        if (!o->textfile.empty()) {
            // Atomic for the collector: it never reads a half-written file.
            util::write_file_durable(o->textfile, prometheus_text(v), 0644);
        } else if (o->prometheus) {
            std::cout << prometheus_text(v);
        } else if (o->json) {
            print_json(stats_json(ctx, v));
        } else {
            print_stats(stats_json(ctx, v), v);
        }
    });
}

}  // namespace mx::admin
