// cluster_catalog: the catalog tables in PostgreSQL and the replica's apply (see the header).
#include "global/cluster_catalog.hpp"

#include <chrono>
#include <map>

#include "global/cluster_db.hpp"

namespace mx::cluster {
namespace {

// Statements carry many rows at once as text[] parameters (unnest): one round trip per batch
// instead of per record — a million-mailbox import is a few hundred statements.
constexpr std::size_t batch_rows = 5000;
// Changes older than this (and not among the newest retained generations) are pruned; a replica
// further behind does a full copy.
constexpr const char* retention = "1 day";
constexpr std::uint64_t prune_every = 100;  // generations

std::int64_t now_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::uint64_t to_u64(const pqxx::field& f) {
    return f.is_null() ? 0 : f.as<std::uint64_t>();
}

const char* state_table(store_table t) {
    switch (t) {
        case store_table::connectors:
            return "mxc.connectors";
        case store_table::domains:
            return "mxc.domains";
        case store_table::mailboxes:
            break;
    }
    return "mxc.mailboxes";
}

const char* key_column(store_table t) {
    switch (t) {
        case store_table::connectors:
            return "name";
        case store_table::domains:
            return "pattern";
        case store_table::mailboxes:
            break;
    }
    return "address";
}

// Upserts (key, value) rows into the state table of t.
void upsert(pqxx::transaction_base& tx, store_table t,
            const std::vector<std::optional<std::string>>& keys,
            const std::vector<std::optional<std::string>>& values) {
    if (keys.empty()) return;
    std::string sql;
    switch (t) {
        case store_table::connectors:
            sql =
                "INSERT INTO mxc.connectors (name, record) SELECT k, v::json FROM "
                "unnest($1::text[], $2::text[]) AS u(k, v) ON CONFLICT (name) DO UPDATE SET "
                "record = EXCLUDED.record";
            break;
        case store_table::domains:
            sql =
                "INSERT INTO mxc.domains (pattern, connector) SELECT k, v FROM "
                "unnest($1::text[], $2::text[]) AS u(k, v) ON CONFLICT (pattern) DO UPDATE SET "
                "connector = EXCLUDED.connector";
            break;
        case store_table::mailboxes:
            sql =
                "INSERT INTO mxc.mailboxes (address, connector, record) SELECT k, "
                "v::json->>'connector', v::json FROM unnest($1::text[], $2::text[]) AS u(k, v) "
                "ON CONFLICT (address) DO UPDATE SET connector = EXCLUDED.connector, "
                "record = EXCLUDED.record";
            break;
    }
    tx.exec_params(sql, pg_array(keys), pg_array(values));
}

void remove(pqxx::transaction_base& tx, store_table t,
            const std::vector<std::optional<std::string>>& keys) {
    if (keys.empty()) return;
    tx.exec_params(std::string("DELETE FROM ") + state_table(t) + " WHERE " + key_column(t) +
                       " = ANY($1::text[])",
                   pg_array(keys));
}

// The final state of every key a change set touched, written to the state tables in batches.
void write_state(pqxx::transaction_base& tx, const std::vector<store_change>& changes) {
    std::map<std::pair<store_table, std::string>, const std::optional<std::string>*> last;
    for (const auto& c : changes) last[{c.table, c.key}] = &c.value;
    for (auto t : {store_table::connectors, store_table::domains, store_table::mailboxes}) {
        std::vector<std::optional<std::string>> up_k, up_v, del_k;
        auto flush = [&] {
            // Deletes first: a connector re-created in one change set keeps its new record.
            remove(tx, t, del_k);
            upsert(tx, t, up_k, up_v);
            up_k.clear();
            up_v.clear();
            del_k.clear();
        };
        for (auto it = last.lower_bound({t, std::string()});
             it != last.end() && it->first.first == t; ++it) {
            if (*it->second) {
                up_k.emplace_back(it->first.second);
                up_v.emplace_back(**it->second);
            } else {
                del_k.emplace_back(it->first.second);
            }
            if (up_k.size() + del_k.size() >= batch_rows) flush();
        }
        flush();
    }
}

void write_log(pqxx::transaction_base& tx, std::uint64_t gen,
               const std::vector<store_change>& changes) {
    std::vector<std::optional<std::string>> tbl, key, val;
    std::size_t base = 0;
    auto flush = [&] {
        if (tbl.empty()) return;
        tx.exec_params(
            "INSERT INTO mxc.catalog_changes (generation, seq, tbl, key, value) "
            "SELECT $1, $2 + ord, t, k, v FROM unnest($3::text[], $4::text[], "
            "$5::text[]) WITH ORDINALITY AS u(t, k, v, ord)",
            gen, base, pg_array(tbl), pg_array(key), pg_array(val));
        base += tbl.size();
        tbl.clear();
        key.clear();
        val.clear();
    };
    for (const auto& c : changes) {
        tbl.emplace_back(std::string(to_string(c.table)));
        key.emplace_back(c.key);
        val.push_back(c.value);
        if (tbl.size() >= batch_rows) flush();
    }
    flush();
}

// Full copy: every table cleared and refilled from PostgreSQL in key order (MDB_APPEND).
std::size_t copy_all(pqxx::transaction_base& pg, store_tx& local) {
    local.clear_all();
    std::size_t n = 0;
    for (auto t : {store_table::connectors, store_table::domains, store_table::mailboxes}) {
        const std::string value_col = t == store_table::domains ? "connector" : "record::text";
        const std::string cursor = std::string("mxc_copy_") + std::string(to_string(t));
        pg.exec0("DECLARE " + cursor + " NO SCROLL CURSOR FOR SELECT " + key_column(t) + ", " +
                 value_col + " FROM " + state_table(t) + " ORDER BY " + key_column(t));
        for (;;) {
            auto r = pg.exec("FETCH 20000 FROM " + cursor);
            if (r.empty()) break;
            store_change c{t, {}, std::string()};
            for (const auto& row : r) {
                c.key = row[0].c_str();
                c.value->assign(row[1].c_str(), row[1].size());
                local.apply(c, true);
                ++n;
            }
        }
        pg.exec0("CLOSE " + cursor);
    }
    return n;
}

}  // namespace

std::string pg_array(const std::vector<std::optional<std::string>>& values) {
    std::string out = "{";
    for (std::size_t i = 0; i < values.size(); ++i) {
        if (i) out += ',';
        if (!values[i]) {
            out += "NULL";
            continue;
        }
        out += '"';
        for (char ch : *values[i]) {
            if (ch == '"' || ch == '\\') out += '\\';
            out += ch;
        }
        out += '"';
    }
    out += '}';
    return out;
}

void create_catalog_schema(pqxx::transaction_base& tx) {
    // Keys COLLATE "C": the primary-key order is LMDB's byte order, so a full copy streams
    // straight into MDB_APPEND without a sort.
    tx.exec0(R"sql(
CREATE TABLE IF NOT EXISTS mxc.catalog_generation (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    catalog_id    text NOT NULL,
    generation    bigint NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    retained_from bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mxc.connectors (
    name   text COLLATE "C" PRIMARY KEY,
    record json NOT NULL
);
CREATE TABLE IF NOT EXISTS mxc.domains (
    pattern   text COLLATE "C" PRIMARY KEY,
    connector text NOT NULL
);
CREATE TABLE IF NOT EXISTS mxc.mailboxes (
    address   text COLLATE "C" PRIMARY KEY,
    connector text NOT NULL,
    record    json NOT NULL
);
CREATE INDEX IF NOT EXISTS mailboxes_connector ON mxc.mailboxes (connector);
CREATE TABLE IF NOT EXISTS mxc.catalog_changes (
    generation   bigint NOT NULL,
    seq          bigint NOT NULL,
    tbl          text NOT NULL CHECK (tbl IN ('connectors', 'domains', 'mailboxes')),
    key          text NOT NULL,
    value        text,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (generation, seq)
);
CREATE TABLE IF NOT EXISTS mxc.nodes (
    node               text PRIMARY KEY,
    last_heartbeat     timestamptz NOT NULL DEFAULT now(),
    applied_generation bigint NOT NULL DEFAULT 0,
    version            text NOT NULL DEFAULT '',
    roles              text NOT NULL DEFAULT '',
    started_at         timestamptz NOT NULL DEFAULT now()
);
)sql");
}

std::optional<catalog_position> read_position(pqxx::transaction_base& tx) {
    auto exists = tx.exec1("SELECT to_regclass('mxc.catalog_generation') IS NOT NULL");
    if (!exists[0].as<bool>()) return std::nullopt;
    auto r = tx.exec("SELECT catalog_id, generation FROM mxc.catalog_generation");
    if (r.empty()) return std::nullopt;
    return catalog_position{r[0][0].c_str(), to_u64(r[0][1])};
}

catalog_position lock_catalog(pqxx::transaction_base& tx) {
    if (!read_position(tx)) throw no_catalog("the cluster has no catalog yet (mxctl cluster init)");
    auto r = tx.exec1("SELECT catalog_id, generation FROM mxc.catalog_generation FOR UPDATE");
    return catalog_position{r[0].c_str(), to_u64(r[1])};
}

catalog_position seed_catalog(pqxx::transaction_base& tx, store_view& local) {
    create_schema(tx);
    tx.exec0("LOCK TABLE mxc.catalog_generation IN EXCLUSIVE MODE");
    auto old = read_position(tx);
    tx.exec0("TRUNCATE mxc.connectors, mxc.domains, mxc.mailboxes, mxc.catalog_changes");
    // A new id: every replica of an older catalog (a re-init) notices and copies it whole.
    catalog_position p;
    p.catalog_id = tx.exec1("SELECT md5(random()::text || clock_timestamp()::text)")[0].c_str();
    p.generation = (old ? old->generation : 0) + 1;
    std::vector<store_change> all;
    for (auto& c : local.connectors()) {
        connector stored = c;
        stored.domains.clear();
        all.push_back({store_table::connectors, c.name, to_json(stored).dump()});
    }
    for (auto& [pattern, owner] : local.domains())
        all.push_back({store_table::domains, pattern, owner});
    write_state(tx, all);
    all.clear();
    // Mailboxes byte for byte (the local record bytes), in batches.
    std::vector<std::optional<std::string>> k, v;
    local.for_each_mailbox([&](const mailbox& m) {
        nlohmann::json j = to_json(m);
        j.erase("address");
        k.emplace_back(m.address);
        v.emplace_back(j.dump());
        if (k.size() >= batch_rows) {
            upsert(tx, store_table::mailboxes, k, v);
            k.clear();
            v.clear();
        }
        return true;
    });
    upsert(tx, store_table::mailboxes, k, v);
    tx.exec0("DELETE FROM mxc.catalog_generation");
    tx.exec_params(
        "INSERT INTO mxc.catalog_generation (catalog_id, generation, retained_from) "
        "VALUES ($1, $2, $2)",
        p.catalog_id, p.generation);
    tx.exec0("NOTIFY mxc_catalog, '" + std::to_string(p.generation) + "'");
    return p;
}

std::uint64_t commit_changes(pqxx::transaction_base& tx, const catalog_position& at,
                             const std::vector<store_change>& changes) {
    const std::uint64_t gen = at.generation + 1;
    write_state(tx, changes);
    write_log(tx, gen, changes);
    tx.exec_params("UPDATE mxc.catalog_generation SET generation = $1, changed_at = now()", gen);
    if (gen % prune_every == 0) {
        // Keep a day of changes (at least the newest prune_every generations); a replica
        // behind retained_from copies the whole catalog instead.
        auto r = tx.exec_params1(
            std::string("SELECT coalesce(max(generation), 0) FROM mxc.catalog_changes WHERE "
                        "committed_at < now() - interval '") +
                retention + "' AND generation <= $1",
            gen - prune_every);
        if (auto upto = to_u64(r[0]); upto > 0) {
            tx.exec_params("DELETE FROM mxc.catalog_changes WHERE generation <= $1", upto);
            tx.exec_params("UPDATE mxc.catalog_generation SET retained_from = $1", upto + 1);
        }
    }
    tx.exec0("NOTIFY mxc_catalog, '" + std::to_string(gen) + "'");
    return gen;
}

std::int64_t lag_ms(pqxx::transaction_base& tx, std::uint64_t applied) {
    auto r = tx.exec_params1(
        "SELECT coalesce((extract(epoch FROM now() - min(committed_at)) * 1000)::bigint, -1) "
        "FROM mxc.catalog_changes WHERE generation > $1",
        applied);
    auto ms = r[0].as<std::int64_t>();
    if (ms >= 0) return ms;
    // Nothing retained after `applied`: either up to date or behind the retention window.
    auto g = tx.exec1(
        "SELECT generation, (extract(epoch FROM now() - changed_at) * 1000)::bigint FROM "
        "mxc.catalog_generation");
    return to_u64(g[0]) > applied ? g[1].as<std::int64_t>() : 0;
}

void heartbeat(pqxx::transaction_base& tx, const std::string& node, std::uint64_t applied,
               const std::string& version, const std::string& roles) {
    tx.exec_params(
        "INSERT INTO mxc.nodes (node, last_heartbeat, applied_generation, version, roles) "
        "VALUES ($1, now(), $2, $3, $4) ON CONFLICT (node) DO UPDATE SET last_heartbeat = now(), "
        "applied_generation = EXCLUDED.applied_generation, version = EXCLUDED.version, "
        "roles = EXCLUDED.roles",
        node, applied, version, roles);
}

std::vector<node_info> list_nodes(pqxx::transaction_base& tx) {
    std::vector<node_info> out;
    auto r = tx.exec(
        "SELECT node, version, roles, (extract(epoch FROM now() - last_heartbeat) * 1000)::bigint, "
        "applied_generation, to_char(last_heartbeat AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM mxc.nodes ORDER BY node");
    for (const auto& row : r)
        out.push_back({row[0].c_str(), row[1].c_str(), row[2].c_str(), row[3].as<std::int64_t>(),
                       to_u64(row[4]), row[5].c_str()});
    return out;
}

local_position local_position_of(store_view& v) {
    local_position p;
    if (auto id = v.meta("cluster_id")) p.catalog_id = *id;
    if (auto g = v.meta("cluster_generation")) p.generation = std::stoull(*g);
    if (auto t = v.meta("cluster_applied_ms")) p.applied_ms = std::stoll(*t);
    return p;
}

void set_local_position(store_tx& local, const catalog_position& p) {
    local.set_meta("cluster_id", p.catalog_id);
    local.set_meta("cluster_generation", std::to_string(p.generation));
    local.set_meta("cluster_applied_ms", std::to_string(now_ms()));
}

sync_result catch_up(pqxx::transaction_base& pg, store_tx& local, const catalog_position& to) {
    sync_result res;
    auto here = local_position_of(local);
    if (here.catalog_id == to.catalog_id && here.generation == to.generation) return res;
    auto g = pg.exec1("SELECT retained_from FROM mxc.catalog_generation");
    const bool incremental = here.catalog_id == to.catalog_id && here.generation < to.generation &&
                             here.generation + 1 >= to_u64(g[0]);
    if (incremental) {
        res.kind = sync_kind::incremental;
        auto r = pg.exec_params(
            "SELECT tbl, key, value FROM mxc.catalog_changes WHERE generation > $1 AND "
            "generation <= $2 ORDER BY generation, seq",
            here.generation, to.generation);
        for (const auto& row : r) {
            auto t = store_table_from(row[0].c_str());
            if (!t) continue;  // CHECK constraint: cannot happen
            store_change c{*t, row[1].c_str(), std::nullopt};
            if (!row[2].is_null()) c.value = std::string(row[2].c_str(), row[2].size());
            local.apply(c);
            ++res.changes;
        }
    } else {
        res.kind = sync_kind::full;
        res.changes = copy_all(pg, local);
    }
    set_local_position(local, to);
    return res;
}

}  // namespace mx::cluster
