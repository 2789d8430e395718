// cluster_journal: the cluster-wide import journal and the importers' leases (see the header).
#include "global/cluster_journal.hpp"

#include <unistd.h>

#include <array>
#include <map>
#include <random>
#include <set>

#include "global/cluster_db.hpp"
#include "global/journal.hpp"
#include "util/hex.hpp"

namespace mx::cluster {
namespace {

std::string key(std::string_view s) {
    return importer::journal::key_part(s);
}

// A text[] literal for a parameter: every element quoted, '"' and '\\' escaped.
std::string pg_array(const std::vector<std::string>& v) {
    std::string s = "{";
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) s += ',';
        s += '"';
        for (char c : v[i]) {
            if (c == '"' || c == '\\') s += '\\';
            s += c;
        }
        s += '"';
    }
    return s + "}";
}

struct existing {
    std::string state, node, target, location;
    bool gone = false;
};

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
        pid         bigint NOT NULL DEFAULT 0,
        instance    text NOT NULL DEFAULT ''))");
}

import_journal::import_journal(std::string node, std::chrono::seconds lease, std::string instance)
    : node_(std::move(node)), lease_(lease), instance_(std::move(instance)) {
    if (instance_.empty()) {
        std::random_device rd;
        instance_ = util::sha256_hex(std::to_string(rd()) + std::to_string(rd()) +
                                     std::to_string(::getpid()))
                        .substr(0, 16);
    }
}

std::string import_journal::renew_lease(pqxx::transaction_base& tx, long pid) const {
    auto r = tx.exec_params1(
        "WITH prev AS (SELECT instance FROM mxc.importer_leases WHERE node = $1) "
        "INSERT INTO mxc.importer_leases (node, expires_at, renewed_at, started_at, pid, instance) "
        "VALUES ($1, now() + make_interval(secs => $2), now(), now(), $3, $4) "
        "ON CONFLICT (node) DO UPDATE SET expires_at = EXCLUDED.expires_at, "
        "renewed_at = now(), pid = EXCLUDED.pid, instance = EXCLUDED.instance, "
        "started_at = CASE WHEN mxc.importer_leases.instance = EXCLUDED.instance "
        "THEN mxc.importer_leases.started_at ELSE now() END "
        "RETURNING (SELECT instance FROM prev)",
        node_, static_cast<double>(lease_.count()), pid, instance_);
    return r[0].is_null() ? std::string() : r[0].as<std::string>();
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

std::vector<reservation> import_journal::reserve(pqxx::transaction_base& tx,
                                                 const std::vector<reserve_request>& rs) const {
    std::vector<reservation> out(rs.size());
    if (rs.empty()) return out;
    std::vector<std::string> fp, rk, conn, target, loc;
    for (const auto& q : rs) {
        fp.push_back(key(q.fingerprint));
        rk.push_back(key(q.recipient));
        conn.push_back(q.connector);
        target.push_back(q.target);
        loc.push_back(q.location);
    }
    // 1. New rows are ours (a pair given twice is inserted once: DO NOTHING skips the second).
    std::set<std::string> fresh;
    for (const auto& row : tx.exec_params(
             "INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, connector, target, "
             "location) SELECT f, r, 'pending', $6, c, t, l FROM unnest($1::text[], $2::text[], "
             "$3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS u(f, r, c, t, l, n) "
             "ORDER BY n ON CONFLICT (fingerprint, recipient_key) DO NOTHING "
             "RETURNING fingerprint, recipient_key",
             pg_array(fp), pg_array(rk), pg_array(conn), pg_array(target), pg_array(loc), node_))
        fresh.insert(row[0].as<std::string>() + '\n' + row[1].as<std::string>());
    // 2. The others exist: lock them (in key order) and look at their holders' leases (a node
    // without a lease row never renewed one: gone as well).
    std::vector<std::size_t> rest;
    std::vector<std::string> rfp, rrk;
    for (std::size_t i = 0; i < rs.size(); ++i) {
        if (fresh.erase(fp[i] + '\n' + rk[i])) continue;
        rest.push_back(i);
        rfp.push_back(fp[i]);
        rrk.push_back(rk[i]);
    }
    if (rest.empty()) return out;
    std::map<std::string, existing> found;
    for (const auto& row : tx.exec_params(
             "SELECT i.fingerprint, i.recipient_key, i.state, i.node, i.target, i.location, "
             "(l.expires_at IS NULL OR l.expires_at < now()) AS gone "
             "FROM mxc.imports i LEFT JOIN mxc.importer_leases l ON l.node = i.node "
             "WHERE (i.fingerprint, i.recipient_key) IN "
             "(SELECT * FROM unnest($1::text[], $2::text[])) "
             "ORDER BY i.fingerprint, i.recipient_key FOR UPDATE OF i",
             pg_array(rfp), pg_array(rrk)))
        found[col(row, "fingerprint") + '\n' + col(row, "recipient_key")] = {
            col(row, "state"), col(row, "node"), col(row, "target"), col(row, "location"),
            row["gone"].as<bool>()};
    // 3. Decide; what becomes ours is taken in one update.
    std::vector<reserve_request> missing;
    std::vector<std::size_t> missing_at;
    std::vector<std::string> tfp, trk, tconn, ttarget, tloc;
    for (std::size_t i : rest) {
        auto it = found.find(fp[i] + '\n' + rk[i]);
        if (it == found.end()) {  // removed meanwhile (pruned): insert it again
            missing.push_back(rs[i]);
            missing_at.push_back(i);
            continue;
        }
        const existing& e = it->second;
        reservation& r = out[i];
        r.node = e.node;
        r.target = e.target;
        r.location = e.location;
        if (e.state == "imported") {
            r.what = reserve_outcome::imported;
            continue;
        }
        if (e.state == "pending" && e.node != node_ && !e.gone) {
            r.what = reserve_outcome::busy;
            continue;
        }
        r.what = e.state == "failed" ? reserve_outcome::retaken
                 : e.node == node_   ? reserve_outcome::reserved
                                     : reserve_outcome::taken_over;
        if (r.what == reserve_outcome::reserved && e.location == loc[i]) continue;
        tfp.push_back(fp[i]);
        trk.push_back(rk[i]);
        tconn.push_back(conn[i]);
        ttarget.push_back(target[i]);
        tloc.push_back(loc[i]);
    }
    if (!tfp.empty())
        tx.exec_params0(
            "UPDATE mxc.imports SET state = 'pending', node = $6, connector = u.c, target = u.t, "
            "location = u.l, path = '', failed_path = '', status = '', claimed_at = now(), "
            "updated_at = now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
            "$5::text[]) AS u(f, r, c, t, l) WHERE fingerprint = u.f AND recipient_key = u.r",
            pg_array(tfp), pg_array(trk), pg_array(tconn), pg_array(ttarget), pg_array(tloc),
            node_);
    if (!missing.empty()) {
        auto again = reserve(tx, missing);
        for (std::size_t k = 0; k < again.size(); ++k) out[missing_at[k]] = again[k];
    }
    return out;
}

std::vector<bool> import_journal::mark(pqxx::transaction_base& tx,
                                       const std::vector<final_mark>& ms) const {
    std::vector<bool> ours(ms.size(), false);
    if (ms.empty()) return ours;
    // One mark per pair (ON CONFLICT DO UPDATE may touch a row once per statement): an import
    // wins over a failure, else the last one.
    std::map<std::string, std::size_t> pick;
    std::vector<std::string> fp(ms.size()), rk(ms.size()), keys(ms.size());
    for (std::size_t i = 0; i < ms.size(); ++i) {
        fp[i] = key(ms[i].fingerprint);
        rk[i] = key(ms[i].recipient);
        keys[i] = fp[i] + '\n' + rk[i];
        auto [it, added] = pick.emplace(keys[i], i);
        if (!added && (ms[i].imported || !ms[it->second].imported)) it->second = i;
    }
    std::vector<std::string> lfp, lrk;
    for (const auto& [k, i] : pick) {
        lfp.push_back(fp[i]);
        lrk.push_back(rk[i]);
    }
    std::map<std::string, std::pair<std::string, std::string>> held;  // key -> node, state
    for (const auto& row : tx.exec_params(
             "SELECT fingerprint, recipient_key, node, state FROM mxc.imports "
             "WHERE (fingerprint, recipient_key) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
             "ORDER BY fingerprint, recipient_key FOR UPDATE",
             pg_array(lfp), pg_array(lrk)))
        held[row[0].as<std::string>() + '\n' + row[1].as<std::string>()] = {
            row[2].as<std::string>(), row[3].as<std::string>()};
    // f, r, state, target, location, path, failed_path, status
    std::array<std::vector<std::string>, 8> a;
    std::map<std::string, bool> mine_of;
    for (const auto& [k, i] : pick) {
        auto h = held.find(k);
        mine_of[k] = h == held.end() || h->second.first == node_;
        // imported stays imported (a failure mark never undoes it)
        if (h != held.end() && h->second.second == "imported" && !ms[i].imported) continue;
        const auto& m = ms[i];
        for (const auto& [n, v] : std::initializer_list<std::pair<int, std::string>>{
                 {0, fp[i]},
                 {1, rk[i]},
                 {2, m.imported ? "imported" : "failed"},
                 {3, m.target},
                 {4, m.location},
                 {5, m.path},
                 {6, m.failed_path},
                 {7, m.status}})
            a[n].push_back(v);
    }
    for (std::size_t j = 0; j < ms.size(); ++j) ours[j] = mine_of[keys[j]];
    if (a[0].empty()) return ours;
    tx.exec_params0(
        "INSERT INTO mxc.imports (fingerprint, recipient_key, state, node, target, location, path, "
        "failed_path, status) SELECT f, r, s, $9, t, l, p, fp, st FROM unnest($1::text[], "
        "$2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) "
        "AS u(f, r, s, t, l, p, fp, st) "
        "ON CONFLICT (fingerprint, recipient_key) DO UPDATE SET state = EXCLUDED.state, "
        "node = EXCLUDED.node, target = EXCLUDED.target, location = EXCLUDED.location, "
        "path = EXCLUDED.path, failed_path = EXCLUDED.failed_path, status = EXCLUDED.status, "
        "updated_at = now()",
        pg_array(a[0]), pg_array(a[1]), pg_array(a[2]), pg_array(a[3]), pg_array(a[4]),
        pg_array(a[5]), pg_array(a[6]), pg_array(a[7]), node_);
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
