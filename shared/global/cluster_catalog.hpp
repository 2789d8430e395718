// cluster_catalog: connectors, domains and mailboxes in PostgreSQL (the cluster's source of
// truth) and the local LMDB replica that follows them (docs/cluster.md).
//
// Schema (PostgreSQL schema mxc, created by create_catalog_schema):
//   catalog_generation  one row: catalog_id (random, new at `mxctl cluster init`), generation
//                       (+1 per committed change set), changed_at, retained_from (the oldest
//                       generation whose catalog_changes rows are still kept)
//   connectors(name, record json)   domains(pattern, connector)
//   mailboxes(address, connector, record json)     keys COLLATE "C" (LMDB's byte order)
//   catalog_changes(generation, seq, tbl, key, value)   value NULL = deleted; pruned after a day
//   nodes(node, last_heartbeat, applied_generation, version, roles, started_at)
// Each commit sends NOTIFY mxc_catalog with the new generation as payload.
//
// Promises:
// - commit_changes() runs in the caller's transaction after lock_catalog(): writers serialise
//   on the generation row, and a change set, its log rows and the new generation become
//   visible together (or not at all).
// - catch_up() brings a local store transaction to exactly the primary's state at the given
//   position: incremental from catalog_changes when the replica's position is retained and
//   from the same catalog, else a full copy (clear + append in key order). The replica's
//   position (cluster_id, cluster_generation, cluster_applied_ms) is written in the same LMDB
//   transaction, so a crash never leaves records and position apart.
// - Records are replayed byte for byte (the writer's store_tx enforced every rule).
// Security: nothing here handles secrets (cluster_secrets.hpp does); errors are libpqxx's,
// which never carry the conninfo's password.
#pragma once

#include <pqxx/pqxx>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "global/store.hpp"

namespace mx::cluster {

// The cluster has no catalog yet (run `mxctl cluster init`).
class no_catalog : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct catalog_position {
    std::string catalog_id;
    std::uint64_t generation = 0;
};

// --- PostgreSQL side
// The current position; nullopt when the schema or its row does not exist.
std::optional<catalog_position> read_position(pqxx::transaction_base& tx);
// The position, with the row locked until the transaction ends (writers serialise here);
// throws no_catalog.
catalog_position lock_catalog(pqxx::transaction_base& tx);
// Replaces the whole catalog with the local store's records under a new catalog_id (cluster
// init); returns the new position.
catalog_position seed_catalog(pqxx::transaction_base& tx, store_view& local);
// Writes a recorded change set as generation at.generation + 1 (tables, log, position,
// NOTIFY, occasional pruning); returns the new generation.
std::uint64_t commit_changes(pqxx::transaction_base& tx, const catalog_position& at,
                             const std::vector<store_change>& changes);
// Milliseconds since the oldest change after `applied` was committed (0: none pending).
std::int64_t lag_ms(pqxx::transaction_base& tx, std::uint64_t applied);

struct node_info {
    std::string node, version, roles;
    std::int64_t heartbeat_age_ms = -1;  // -1: never
    std::uint64_t applied_generation = 0;
    std::string last_heartbeat;  // ISO 8601 UTC
};
void heartbeat(pqxx::transaction_base& tx, const std::string& node, std::uint64_t applied,
               const std::string& version, const std::string& roles);
std::vector<node_info> list_nodes(pqxx::transaction_base& tx);

// --- local replica side
struct local_position {
    std::string catalog_id;  // empty: never synchronised
    std::uint64_t generation = 0;
    std::int64_t applied_ms = 0;  // unix ms of the last apply
};
local_position local_position_of(store_view& v);

enum class sync_kind { none, incremental, full };
struct sync_result {
    sync_kind kind = sync_kind::none;
    std::size_t changes = 0;  // records written or deleted
};
// See the promises above. `pg` should be REPEATABLE READ for a full copy of a busy catalog
// (the follower's is); under a writer's lock (lock_catalog) READ COMMITTED is enough.
sync_result catch_up(pqxx::transaction_base& pg, store_tx& local, const catalog_position& to);
// Records the replica's position in the local transaction.
void set_local_position(store_tx& local, const catalog_position& p);

// "mailboxes" etc. as PostgreSQL text[] literal helpers (exposed for tests).
std::string pg_array(const std::vector<std::optional<std::string>>& values);

}  // namespace mx::cluster
