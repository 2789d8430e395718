// ops cluster: ops::write() with a [cluster] section — the change is checked by the local
// store's rules and committed to PostgreSQL, then (unless no_wait) to this host's replica.
//
// Order of one write (docs/cluster.md, "Writes"):
//   1. connect; BEGIN; lock the catalog's generation row (writers of all hosts serialise here)
//   2. local LMDB write transaction: catch up to the locked generation (the follower may be
//      a moment behind), then run fn with a change recorder — every rule of store_tx applies
//   3. the recorded changes (+ secrets) as generation+1 into PostgreSQL; COMMIT (NOTIFY goes
//      out to every follower)
//   4. the LMDB transaction commits with the replica's position = generation+1, so this host
//      decides with the change when write() returns; no_wait aborts it instead and leaves
//      the change to the follower.
// A failure before 3's COMMIT changes nothing anywhere; after it, the change is made and a
// failing local commit is repaired by the follower (or the next write's catch-up).
#include <pqxx/pqxx>

#include <cctype>

#include "global/cluster_catalog.hpp"
#include "global/cluster_db.hpp"
#include "global/cluster_secrets.hpp"
#include "ops.hpp"

namespace mx::ops {
namespace {

// Thrown out of store::write to abort the local transaction (no_wait, committed already).
struct leave_local {};

std::unique_ptr<pqxx::connection> connect_for_write(const cluster::cluster_config& c) {
    try {
        return cluster::connect(c, "mxctl");
    } catch (const std::exception& ex) {
        std::string why = ex.what();  // libpq's text spans lines: one line here
        for (auto& ch : why)
            if (ch == '\n' || ch == '\t') ch = ' ';
        while (!why.empty() && std::isspace(static_cast<unsigned char>(why.back()))) why.pop_back();
        throw op_error("cluster: PostgreSQL is not reachable (" +
                       cluster::redact_conninfo(c.postgresql) + "): " + why +
                       "; nothing was changed (this host keeps deciding from its replica)");
    }
}

void write_secrets(pqxx::transaction_base& w, const cluster::cluster_config& c,
                   const secret_changes& s) {
    for (auto& [k, v] : s.set) {
        if (v.empty())
            cluster::remove_secret_prefix(w, k);
        else
            cluster::put_secret(w, c, k, v);
    }
    for (auto& p : s.remove_prefixes) cluster::remove_secret_prefix(w, p);
}

}  // namespace

std::uint64_t cluster_write(env& e, const cluster::cluster_config& c,
                            const std::function<void(store_tx&)>& fn,
                            const secret_changes* secrets) {
    auto conn = connect_for_write(c);
    bool committed = false;
    std::uint64_t gen = 0;
    try {
        pqxx::work w(*conn);
        const auto at = cluster::lock_catalog(w);
        gen = at.generation;
        auto& local = e.open_store();
        try {
            local.write([&](store_tx& tx) {
                if (committed) throw leave_local{};  // map growth after COMMIT: follower's job
                cluster::catch_up(w, tx, at);
                std::vector<store_change> log;
                tx.record_into(&log);
                fn(tx);
                tx.record_into(nullptr);
                if (log.empty() &&
                    !(secrets && (!secrets->set.empty() || !secrets->remove_prefixes.empty())))
                    return;  // nothing changed: no new generation
                cluster::set_local_position(tx, {at.catalog_id, at.generation + 1});
                gen = cluster::commit_changes(w, at, log);
                if (secrets) write_secrets(w, c, *secrets);
                w.commit();
                committed = true;
                if (e.no_wait()) throw leave_local{};
            });
        } catch (const leave_local&) {
        } catch (const lmdb::error&) {
            if (!committed) throw;
            // PostgreSQL has it; the follower brings this replica up to it.
        }
    } catch (const cluster::no_catalog& ex) {
        throw op_error(std::string("cluster: ") + ex.what());
    } catch (const pqxx::in_doubt_error& ex) {
        throw op_error(std::string("cluster: PostgreSQL went away during COMMIT; the change may "
                                   "or may not be made (see mxctl cluster status): ") +
                       ex.what());
    } catch (const pqxx::broken_connection& ex) {
        throw op_error(std::string("cluster: lost the connection to PostgreSQL; nothing was "
                                   "changed: ") +
                       ex.what());
    }
    if (committed && secrets) {
        try {
            cluster::sync_secrets(*conn, c, e.secrets());
        } catch (const std::exception&) {
            // No key on this host (milter only) or PostgreSQL gone: the follower retries.
        }
    }
    return gen;
}

}  // namespace mx::ops
