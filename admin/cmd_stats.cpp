// mxctl stats: counters from the shared-memory segment, without talking to the daemons.
// Formats: aligned text, --json, --prometheus (text exposition format 0.0.4).
#include <ctime>
#include <iostream>

#include "mxctl.hpp"

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

}  // namespace

void add_stats_command(CLI::App& app, mxctl_context& ctx) {
    auto* cmd =
        app.add_subcommand("stats", "show milter and importer counters (from shared memory)");
    struct opts {
        bool json = false, prometheus = false;
    };
    auto o = std::make_shared<opts>();
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->add_flag("--prometheus", o->prometheus, "Prometheus text exposition format");
    cmd->callback([&ctx, o] {
        auto shm = shm_state::attach_existing(ctx.cfg());
        std::vector<const connector_counters*> slots;
        if (shm) slots = shm->used_slots();
        const shm_layout* l = shm ? &shm->layout() : nullptr;
        auto g = [&](const std::atomic<std::uint64_t> shm_layout::*f) -> std::uint64_t {
            return l ? (l->*f).load() : 0;
        };
        if (o->prometheus) {
            std::cout << "# HELP mxconnector_generation Store change generation.\n"
                         "# TYPE mxconnector_generation gauge\n"
                      << "mxconnector_generation " << g(&shm_layout::generation) << "\n";
            std::cout
                << "# HELP mxconnector_rcpt_not_ours_total RCPT for domains of no connector.\n"
                   "# TYPE mxconnector_rcpt_not_ours_total counter\n"
                << "mxconnector_rcpt_not_ours_total " << g(&shm_layout::not_ours) << "\n";
            std::cout << "# HELP mxconnector_rcpt_syntax_rejected_total RCPT rejected 501 5.1.3.\n"
                         "# TYPE mxconnector_rcpt_syntax_rejected_total counter\n"
                      << "mxconnector_rcpt_syntax_rejected_total "
                      << g(&shm_layout::rejected_syntax) << "\n";
            for (const auto& d : connector_defs) {
                std::string metric =
                    std::string("mxconnector_") + d.name + (d.gauge ? "" : "_total");
                std::cout << "# HELP " << metric << " " << d.help << ".\n# TYPE " << metric << " "
                          << (d.gauge ? "gauge" : "counter") << "\n";
                for (auto* s : slots)
                    std::cout << metric << "{connector=\"" << s->name << "\"} "
                              << (s->*d.field).load() << "\n";
            }
            return;
        }
        nlohmann::json j = {{"segment", shm ? shm_state::segment_name(ctx.cfg()) : ""},
                            {"running_since", g(&shm_layout::created_time)},
                            {"generation", g(&shm_layout::generation)},
                            {"not_ours", g(&shm_layout::not_ours)},
                            {"rejected_syntax", g(&shm_layout::rejected_syntax)},
                            {"milter_heartbeat", g(&shm_layout::milter_heartbeat)},
                            {"importer_heartbeat", g(&shm_layout::importer_heartbeat)}};
        nlohmann::json conns = nlohmann::json::object();
        for (auto* s : slots) {
            nlohmann::json c;
            for (const auto& d : connector_defs) c[d.name] = (s->*d.field).load();
            conns[s->name] = c;
        }
        j["connectors"] = conns;
        if (o->json) return print_json(j);
        if (!shm) std::cout << "no counters yet (no daemon has run since boot)\n";
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
    });
}

}  // namespace mx::admin
