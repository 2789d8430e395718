// cluster_journal: the cluster-wide import journal and the importers' leases (see the header).
#include "global/cluster_journal.hpp"

#include "global/cluster_db.hpp"
#include "global/journal.hpp"

namespace mx::cluster {
namespace {

std::string key(std::string_view s) {
    return importer::journal::key_part(s);
}

std::string col(const pqxx::row& r, const char* name) {
    const auto& f = r[name];
    return f.is_null() ? std::string() : f.as<std::string>();
}

}  // namespace

std::string_view to_string(reserve_outcome o) {
    switch (o) {
        case reserve_outcome::reserved:
            return "reserved";
        case reserve_outcome::taken_over:
            return "taken_over";
        case reserve_outcome::retaken:
            return "retaken";
        case reserve_outcome::busy:
            return "busy";
        case reserve_outcome::imported:
            return "imported";
    }
    return "?";
}

void create_import_schema(pqxx::transaction_base& tx) {
    import_journal::create_schema(tx);
}

void import_journal::create_schema(pqxx::transaction_base& tx) {
    // Two importers starting at once would race on CREATE TABLE IF NOT EXISTS (a unique
    // violation in pg_type): one at a time, for this transaction.
    tx.exec("SELECT pg_advisory_xact_lock(hashtext('mxc.import_schema'))");
    tx.exec0("CREATE SCHEMA IF NOT EXISTS mxc");
    tx.exec0(R"(CREATE TABLE IF NOT EXISTS mxc.imports (
        fingerprint   text NOT NULL,
        recipient_key text NOT NULL,
        state         text NOT NULL CHECK (state IN ('pending', 'imported', 'failed')),
        node          text NOT NULL,
        connector     text NOT NULL DEFAULT '',
        target        text NOT NULL DEFAULT '',
        location      text NOT NULL DEFAULT '',
        path          text NOT NULL DEFAULT '',
        failed_path   text NOT NULL DEFAULT '',
        status        text NOT NULL DEFAULT '',
        claimed_at    timestamptz NOT NULL DEFAULT now(),
        updated_at    timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (fingerprint, recipient_key)))");
    tx.exec0(
        "CREATE INDEX IF NOT EXISTS imports_pending_by_node ON mxc.imports (node) "
        "WHERE state = 'pending'");
    tx.exec0(
        "CREATE INDEX IF NOT EXISTS imports_final_by_time ON mxc.imports (updated_at) "
        "WHERE state <> 'pending'");
    tx.exec0(R"(CREATE TABLE IF NOT EXISTS mxc.importer_leases (
        node        text PRIMARY KEY,
        expires_at  timestamptz NOT NULL,
        renewed_at  timestamptz NOT NULL DEFAULT now(),
        started_at  timestamptz NOT NULL DEFAULT now(),
        pid         bigint NOT NULL DEFAULT 0))");
}

void import_journal::renew_lease(pqxx::transaction_base& tx, long pid) const {
    tx.exec_params0(
        "INSERT INTO mxc.importer_leases (node, expires_at, renewed_at, started_at, pid) "
        "VALUES ($1, now() + make_interval(secs => $2), now(), now(), $3) "
        "ON CONFLICT (node) DO UPDATE SET expires_at = EXCLUDED.expires_at, "
        "renewed_at = now(), pid = EXCLUDED.pid, "
        "started_at = CASE WHEN mxc.importer_leases.pid = EXCLUDED.pid "
        "THEN mxc.importer_leases.started_at ELSE now() END",
        node_, static_cast<double>(lease_.count()), pid);
}

std::vector<std::string> import_journal::dead_nodes(pqxx::transaction_base& tx) const {
    std::vector<std::string> out;
    auto r = tx.exec_params(
        "SELECT node FROM mxc.importer_leases WHERE node <> $1 AND expires_at < now() "
        "ORDER BY node",
        node_);
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
}

reservation import_journal::reserve(pqxx::transaction_base& tx, const reserve_request& q) const {
    const std::string fp = key(q.fingerprint), rk = key(q.recipient);
    auto ins = tx.exec_params(
        "INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, connector, target, "
        "location) VALUES ($1, $2, 'pending', $3, $4, $5, $6) "
        "ON CONFLICT (fingerprint, recipient_key) DO NOTHING RETURNING 1",
        fp, rk, node_, q.connector, q.target, q.location);
    if (!ins.empty()) return {};
    // The row exists: lock it and look at its holder's lease (a node without a lease row never
    // renewed one: gone as well).
    auto r = tx.exec_params(
        "SELECT i.state, i.node, i.target, i.location, "
        "(l.expires_at IS NULL OR l.expires_at < now()) AS gone "
        "FROM mxc.imports i LEFT JOIN mxc.importer_leases l ON l.node = i.node "
        "WHERE i.fingerprint = $1 AND i.recipient_key = $2 FOR UPDATE OF i",
        fp, rk);
    if (r.empty()) return reserve(tx, q);  // removed meanwhile (pruned): insert again
    const auto row = r[0];
    reservation out;
    out.node = col(row, "node");
    out.target = col(row, "target");
    out.location = col(row, "location");
    const std::string state = col(row, "state");
    if (state == "imported") {
        out.what = reserve_outcome::imported;
        return out;
    }
    if (state == "pending" && out.node != node_ && !row["gone"].as<bool>()) {
        out.what = reserve_outcome::busy;
        return out;
    }
    out.what = state == "failed"   ? reserve_outcome::retaken
               : out.node == node_ ? reserve_outcome::reserved
                                   : reserve_outcome::taken_over;
    tx.exec_params0(
        "UPDATE mxc.imports SET state = 'pending', node = $3, connector = $4, target = $5, "
        "location = $6, path = '', failed_path = '', status = '', claimed_at = now(), "
        "updated_at = now() WHERE fingerprint = $1 AND recipient_key = $2",
        fp, rk, node_, q.connector, q.target, q.location);
    return out;
}

bool import_journal::mark(pqxx::transaction_base& tx, const final_mark& m) const {
    const std::string fp = key(m.fingerprint), rk = key(m.recipient);
    auto r = tx.exec_params(
        "SELECT node, state FROM mxc.imports WHERE fingerprint = $1 AND recipient_key = $2 "
        "FOR UPDATE",
        fp, rk);
    bool ours = !r.empty() && r[0][0].as<std::string>() == node_;
    if (!r.empty() && r[0][1].as<std::string>() == "imported" && !m.imported)
        return ours;  // imported stays imported (a failure mark never undoes it)
    tx.exec_params0(
        "INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, target, location, "
        "path, failed_path, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
        "ON CONFLICT (fingerprint, recipient_key) DO UPDATE SET state = EXCLUDED.state, "
        "node = EXCLUDED.node, target = EXCLUDED.target, location = EXCLUDED.location, "
        "path = EXCLUDED.path, failed_path = EXCLUDED.failed_path, status = EXCLUDED.status, "
        "updated_at = now()",
        fp, rk, m.imported ? "imported" : "failed", node_, m.target, m.location, m.path,
        m.failed_path, m.status);
    return ours;
}

std::size_t import_journal::prune(pqxx::transaction_base& tx, std::chrono::seconds age,
                                  std::size_t limit) const {
    auto r = tx.exec_params(
        "DELETE FROM mxc.imports WHERE ctid IN (SELECT ctid FROM mxc.imports "
        "WHERE state <> 'pending' AND updated_at < now() - make_interval(secs => $1) LIMIT $2)",
        static_cast<double>(age.count()), static_cast<long>(limit));
    return static_cast<std::size_t>(r.affected_rows());
}

void import_journal::release(pqxx::transaction_base& tx, std::string_view fingerprint,
                             std::string_view recipient) const {
    tx.exec_params0(
        "DELETE FROM mxc.imports WHERE fingerprint = $1 AND recipient_key = $2 AND node = $3 "
        "AND state = 'pending'",
        key(fingerprint), key(recipient), node_);
}

}  // namespace mx::cluster
