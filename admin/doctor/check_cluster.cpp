// doctor: cluster mode — PostgreSQL reachable, this replica's staleness and lag, mx-replica
// alive (docs/cluster.md). Nothing to check on a single host.
#include <pqxx/pqxx>

#include <chrono>

#include "doctor/doctor.hpp"
#include "global/cluster.hpp"
#include "global/cluster_catalog.hpp"
#include "global/cluster_db.hpp"

namespace mx::admin::doctor {

void check_cluster(doctor_state& d) {
    auto c = cluster::cluster_of(d.cfg());
    if (!c) return;
    const std::string check = "cluster";
    using namespace std::chrono;
    const auto now = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    std::uint64_t contact = 0;
    if (auto* s = d.ctx.shm()) contact = s->layout().cluster_contact_ms.load();
    const std::int64_t stale_s = contact ? (now - static_cast<std::int64_t>(contact)) / 1000 : -1;
    const std::string start = "systemctl start mx-replica (log: journalctl -u mx-replica)";
    if (stale_s < 0)
        d.r.fail(check, "mx-replica has never reached PostgreSQL since this boot", start);
    else if (c->max_staleness.count() > 0 &&
             now - static_cast<std::int64_t>(contact) > c->max_staleness.count() * 1000)
        d.r.fail(check,
                 "the replica's last contact with PostgreSQL was " + age_string(stale_s) +
                     " ago, more than max_staleness: mx-milter answers 451 to every recipient",
                 "make PostgreSQL reachable from this host; check mx-replica");
    else if (stale_s > 3 * c->check_interval.count())
        d.r.warn(check,
                 "the replica's last contact with PostgreSQL was " + age_string(stale_s) +
                     " ago: decisions use the data of then",
                 "make PostgreSQL reachable from this host; check mx-replica");
    else
        d.r.ok(check, "replica in contact with PostgreSQL (" + age_string(stale_s) + " ago)");
    try {
        auto conn = cluster::connect(*c, "mxctl-doctor");
        pqxx::read_transaction t(*conn);
        auto p = cluster::read_position(t);
        if (!p) {
            d.r.fail(check, "PostgreSQL has no catalog yet", d.cmd_prefix() + " cluster init");
            return;
        }
        auto v = d.ctx.open_store_read_only().read();
        auto here = cluster::local_position_of(v);
        auto lag = cluster::lag_ms(t, here.catalog_id == p->catalog_id ? here.generation : 0);
        if (lag > 5000)
            d.r.warn(check,
                     "replica at generation " + std::to_string(here.generation) + " of " +
                         std::to_string(p->generation) + ", " + std::to_string(lag / 1000) +
                         " s behind",
                     start);
        else
            d.r.ok(check, "PostgreSQL reachable, replica at generation " +
                              std::to_string(here.generation) + " of " +
                              std::to_string(p->generation));
    } catch (const std::exception& e) {
        std::string why = e.what();
        for (auto& ch : why)
            if (ch == '\n' || ch == '\t') ch = ' ';
        while (!why.empty() && why.back() == ' ') why.pop_back();
        d.r.warn(check,
                 "PostgreSQL not reachable (" + cluster::redact_conninfo(c->postgresql) +
                     "): " + why + "; mxctl changes fail until it is back",
                 "start PostgreSQL or fix [cluster] postgresql");
    }
}

}  // namespace mx::admin::doctor
