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
#include "target_health.hpp"
#include "mxctl.hpp"
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
        auto shm = shm_state::attach_existing(ctx.cfg());
        std::vector<const connector_counters*> slots;
        if (shm) slots = shm->used_slots();
        const shm_layout* l = shm ? &shm->layout() : nullptr;
        auto g = [&](const std::atomic<std::uint64_t> shm_layout::*f) -> std::uint64_t {
            return l ? (l->*f).load() : 0;
        };
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        const auto health = importer::read_target_health(ctx.cfg());  // breakers, by mx-importer
        if (o->prometheus || !o->textfile.empty()) {
            std::ostringstream out;
            auto metric_head = [&](const std::string& name, const char* help, bool gauge) {
                out << "# HELP " << name << " " << help << "\n# TYPE " << name << " "
                    << (gauge ? "gauge" : "counter") << "\n";
            };
            metric_head("mxconnector_up", "1 when the daemon's heartbeat is fresh (15 s).", true);
            out << "mxconnector_up{process=\"mx-milter\"} "
                << (heartbeat_up(g(&shm_layout::milter_heartbeat), now) ? 1 : 0) << "\n"
                << "mxconnector_up{process=\"mx-importer\"} "
                << (heartbeat_up(g(&shm_layout::importer_heartbeat), now) ? 1 : 0) << "\n";
            metric_head("mxconnector_heartbeat_timestamp_seconds",
                        "Unix time of the daemon's last heartbeat (0: never).", true);
            out << "mxconnector_heartbeat_timestamp_seconds{process=\"mx-milter\"} "
                << g(&shm_layout::milter_heartbeat) << "\n"
                << "mxconnector_heartbeat_timestamp_seconds{process=\"mx-importer\"} "
                << g(&shm_layout::importer_heartbeat) << "\n";
            metric_head("mxconnector_generation", "Store change generation.", true);
            out << "mxconnector_generation " << g(&shm_layout::generation) << "\n";
            metric_head("mxconnector_rcpt_not_ours_total", "RCPT for domains of no connector.",
                        false);
            out << "mxconnector_rcpt_not_ours_total " << g(&shm_layout::not_ours) << "\n";
            metric_head("mxconnector_rcpt_syntax_rejected_total", "RCPT rejected 501 5.1.3.",
                        false);
            out << "mxconnector_rcpt_syntax_rejected_total " << g(&shm_layout::rejected_syntax)
                << "\n";
            metric_head("mxconnector_rcpt_tempfailed_unattributed_total",
                        "RCPT deferred 451 4.3.0 before a connector was known (store down).",
                        false);
            out << "mxconnector_rcpt_tempfailed_unattributed_total "
                << g(&shm_layout::tempfailed_error_unattributed) << "\n";
            for (const auto& d : connector_defs) {
                std::string metric =
                    std::string("mxconnector_") + d.name + (d.gauge ? "" : "_total");
                metric_head(metric, (std::string(d.help) + ".").c_str(), d.gauge);
                for (auto* s : slots)
                    out << metric << "{connector=\"" << util::prometheus_label_value(s->name)
                        << "\"} " << (s->*d.field).load() << "\n";
            }
            metric_head("mxconnector_oldest_file_age_seconds",
                        "Age of the oldest file waiting in the drop folder (0: none).", true);
            for (auto* s : slots) {
                auto t = static_cast<std::int64_t>(s->oldest_file_time.load());
                out << "mxconnector_oldest_file_age_seconds{connector=\""
                    << util::prometheus_label_value(s->name) << "\"} "
                    << (t > 0 && now > t ? now - t : 0) << "\n";
            }
            if (auto js = journal_size(ctx)) {
                metric_head("mxconnector_journal_bytes",
                            "Size of the import journal's data file (data.mdb).", true);
                out << "mxconnector_journal_bytes " << js->bytes << "\n";
                metric_head("mxconnector_journal_entries", "Entries in the import journal.", true);
                const std::pair<const char*, std::uint64_t> dbs[] = {{"deliveries", js->deliveries},
                                                                     {"files", js->files},
                                                                     {"msgids", js->msgids},
                                                                     {"queueids", js->queueids},
                                                                     {"retries", js->retries}};
                for (auto [db, n] : dbs)
                    out << "mxconnector_journal_entries{db=\"" << db << "\"} " << n << "\n";
            }
            if (health) out << importer::target_health_prometheus(*health);
            if (!o->textfile.empty()) {
                // Atomic for the collector: it never reads a half-written file.
                util::write_file_durable(o->textfile, out.str(), 0644);
                return;
            }
            std::cout << out.str();
            return;
        }
        nlohmann::json j = {
            {"segment", shm ? shm_state::segment_name(ctx.cfg()) : ""},
            {"running_since", g(&shm_layout::created_time)},
            {"generation", g(&shm_layout::generation)},
            {"not_ours", g(&shm_layout::not_ours)},
            {"rejected_syntax", g(&shm_layout::rejected_syntax)},
            {"milter_heartbeat", g(&shm_layout::milter_heartbeat)},
            {"importer_heartbeat", g(&shm_layout::importer_heartbeat)},
            {"processes",
             {{"mx-milter", heartbeat_up(g(&shm_layout::milter_heartbeat), now)},
              {"mx-importer", heartbeat_up(g(&shm_layout::importer_heartbeat), now)}}}};
        nlohmann::json conns = nlohmann::json::object();
        for (auto* s : slots) {
            nlohmann::json c;
            for (const auto& d : connector_defs) c[d.name] = (s->*d.field).load();
            conns[s->name] = c;
        }
        j["connectors"] = conns;
        auto js = journal_size(ctx);
        if (js)
            j["journal"] = {{"bytes", js->bytes},
                            {"entries",
                             {{"deliveries", js->deliveries},
                              {"files", js->files},
                              {"msgids", js->msgids},
                              {"queueids", js->queueids},
                              {"retries", js->retries}}}};
        if (health) j["targets"] = health->value("targets", nlohmann::json::array());
        if (o->json) return print_json(j);
        if (!shm) std::cout << "no counters yet (no daemon has run since boot)\n";
        std::cout << "mx-milter " << (j["processes"]["mx-milter"].get<bool>() ? "up" : "DOWN")
                  << ", mx-importer " << (j["processes"]["mx-importer"].get<bool>() ? "up" : "DOWN")
                  << "\n";
        std::cout << "generation " << j["generation"] << ", not ours " << j["not_ours"]
                  << ", syntax rejects " << j["rejected_syntax"] << "\n";
        std::vector<std::vector<std::string>> rows{{"CONNECTOR"}};
        for (const auto& d : connector_defs) rows[0].push_back(d.name);
        for (auto* s : slots) {
            std::vector<std::string> r{s->name};
            for (const auto& d : connector_defs) r.push_back(std::to_string((s->*d.field).load()));
            rows.push_back(r);
        }
        if (rows.size() > 1) print_table(rows);
        if (js)
            std::cout << "journal " << human_bytes(js->bytes) << ", " << js->deliveries
                      << " deliveries, " << js->retries << " retries\n";
        if (health)
            for (const auto& line : importer::target_health_lines(*health))
                std::cout << line << "\n";
    });
}

}  // namespace mx::admin
