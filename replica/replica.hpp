// mx-replica: this host's follower of the cluster catalog (docs/cluster.md). Keeps the local
// LMDB store equal to PostgreSQL's connectors, domains and mailboxes, so mx-milter and
// mx-importer go on deciding from local data — also while PostgreSQL is unreachable.
//
// Promises:
// - LISTEN mxc_catalog for speed, plus a generation check every [cluster] check_seconds that
//   repairs a missed notification; each apply is one LMDB transaction (records and the
//   replica's position together) that bumps the shared-memory generation like an mxctl write.
// - Incremental from the retained change log, a full copy when new, re-initialised or behind
//   the retention window.
// - Every successful round trip publishes the contact time and primary generation into shared
//   memory (mx-milter's max_staleness, mxctl cluster status) and, every check interval, a
//   heartbeat row into mxc.nodes.
// - Secrets (mxc.secrets) are read and decrypted only when they may have changed: once after
//   each (re)connect, then when a fingerprint of the sealed rows (one aggregate query, no
//   decryption; every write reseals with a fresh nonce) or the key file (added, replaced) moved.
// - Every check interval, reader slots left by killed processes in the store are cleared
//   (lmdb::env::reader_check): a stale slot pins old pages and the file grows.
// - PostgreSQL down: the store stays as it was (decisions go on), reconnects with back-off
//   (1 s doubling, at most twice check_seconds and 30 s), logs each distinct failure once.
// Security: runs as the configured daemon account (dropped at start); the conninfo is only
// logged redacted.
#pragma once

#include <pqxx/pqxx>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "global/cluster.hpp"
#include "global/cluster_catalog.hpp"
#include "global/config.hpp"
#include "global/secrets.hpp"
#include "global/shm_state.hpp"
#include "global/store.hpp"

namespace mx::replica {

class follower {
  public:
    follower(const config& cfg, cluster::cluster_config c);
    // Until request_stop() (SIGTERM/SIGINT): returns the exit status.
    int run();
    // One synchronisation and heartbeat, then return (mx-replica --once); throws on failure.
    int run_once();
    // One pass on an open connection: apply what changed, publish the contact. Exposed for
    // tests and `mx-replica --once`.
    cluster::sync_result sync(pqxx::connection& conn);
    static void request_stop() noexcept;

  private:
    void open_local();
    void publish_contact(std::uint64_t primary_generation);
    void heartbeat(pqxx::connection& conn);
    void sync_secrets(pqxx::connection& conn);
    // What sync_secrets depends on: the rows' fingerprint and the key file's identity.
    std::string secrets_state(pqxx::connection& conn) const;
    void clear_stale_readers();
    void presize_for_full_copy(pqxx::connection& conn);
    void follow(pqxx::connection& conn);

    config cfg_;
    cluster::cluster_config c_;
    std::optional<store> store_;
    std::optional<shm_state> shm_;
    std::optional<secret_store> secrets_;
    std::string last_error_;
    std::chrono::steady_clock::time_point last_heartbeat_{};
    // secrets_state() of the last sync_secrets that ran to its end; empty: sync at once.
    std::string secrets_synced_;
};

}  // namespace mx::replica
