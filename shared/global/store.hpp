// store: the connector/domain/mailbox table in LMDB, shared by mx-milter, mx-importer, mxctl.
//
// Schema (one environment at <state_dir>/store, schema_version 1):
//   meta        "schema_version" -> "1", "generation" -> decimal change counter
//   connectors  name -> JSON (model.hpp, without domains and secrets)
//   domains     pattern ("example.com" | ".example.com" | ".") -> connector name
//   mailboxes   normalised address ("local@domain", or "@domain" catch-all) -> JSON
//   meta "cluster_*" keys: a cluster replica's position (docs/cluster.md; cluster_catalog.hpp)
//
// Promises:
// - Readers use one short read-only transaction per store_view; everything returned is a copy.
// - Every write() is one transaction: all of it commits or none of it. Rules are enforced in
//   the transaction, so a refused change (rule_error) leaves the store untouched.
// - A domain pattern belongs to one connector. Different patterns may cover one domain
//   ("a.example.com" in A, ".example.com" in B): the most specific wins (exact, then the
//   longest ".parent", then "."). A mailbox's domain must resolve to the mailbox's connector.
// - Each commit bumps the generation (in meta and, when attached, in shared memory) so running
//   daemons notice; the map grows on MDB_MAP_FULL and the write is retried.
// - An expected miss is std::nullopt; LMDB failures throw mx::lmdb::error (callers at SMTP time
//   turn those into 451, never 5xx).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "global/model.hpp"
#include "util/lmdb.hpp"

namespace mx {

class shm_state;

// A change refused by the store's rules; the message says what to fix.
class rule_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct domain_match {
    std::string pattern;    // the pattern that matched
    std::string connector;  // its owner
};

class store;

// Cluster mode (docs/cluster.md): one record change as a writer made it — the exact bytes
// stored, so a replica that replays it holds byte-identical records. value nullopt: deleted.
enum class store_table : std::uint8_t { connectors, domains, mailboxes };
struct store_change {
    store_table table;
    std::string key;
    std::optional<std::string> value;
};
std::string_view to_string(store_table t);
std::optional<store_table> store_table_from(std::string_view name);

class store;

class store_view {
  public:
    store_view(store_view&&) noexcept = default;
    store_view& operator=(store_view&&) noexcept = default;
    // A read view's transaction goes back to its store's pool (lmdb::read_txn_pool).
    ~store_view();

    std::uint64_t generation();
    std::optional<connector> find_connector(std::string_view name, bool with_domains = false);
    // Whether connector `name` is active (nullopt: no such connector), without copying it.
    std::optional<bool> connector_active(std::string_view name);
    std::vector<connector> connectors();                         // sorted by name, with domains
    std::vector<std::pair<std::string, std::string>> domains();  // (pattern, connector), sorted
    std::optional<std::string> domain_owner(std::string_view pattern);
    // Most specific pattern covering an ASCII domain.
    std::optional<domain_match> match_domain(std::string_view ascii_domain);
    std::optional<mailbox> find_mailbox(std::string_view key);
    // Only the connector of mailbox `key` (all an RCPT decision needs), read from the record
    // without building a JSON document; nullopt when there is no such mailbox. A malformed
    // record throws, as find_mailbox does.
    std::optional<std::string> mailbox_connector(std::string_view key);
    bool has_mailbox(std::string_view key);
    // Visits mailboxes in key order; fn returns false to stop. Optional connector filter.
    void for_each_mailbox(const std::function<bool(const mailbox&)>& fn,
                          std::string_view connector_filter = {});
    std::size_t mailbox_count();
    // A "cluster_*" meta value (a replica's position); nullopt when unset.
    std::optional<std::string> meta(std::string_view key);
    // Which committed state of which store this read view sees: two read views with the same
    // value see the same contents (a serial unique to each opened store in this process, and
    // LMDB's transaction id of the snapshot). nullopt for a write transaction, whose reads
    // change with its own writes. For memos that are valid for one snapshot.
    std::optional<std::pair<std::uint64_t, std::uint64_t>> snapshot() const;

  protected:
    friend class store;
    store_view(store& s, lmdb::txn t, lmdb::read_txn_pool* pool = nullptr)
        : store_(&s), txn_(std::move(t)), pool_(pool) {}
    store* store_;
    lmdb::txn txn_;
    lmdb::read_txn_pool* pool_ = nullptr;  // read views only
    bool read_only_ = false;               // a read view without a pool
};

class store_tx : public store_view {
  public:
    // Adds a connector and its domains (c.domains); rule_error on any conflict.
    void add_connector(const connector& c);
    // Replaces a connector's settings (name must exist; domains unchanged).
    void update_connector(const connector& c);
    // Removes a connector with its domains; with mailboxes only when `force` (removes them too).
    void remove_connector(std::string_view name, bool force);
    void add_domain(std::string_view connector, std::string_view pattern);
    void remove_domain(std::string_view connector, std::string_view pattern);
    // m.address must be normalised (parse_address / "@domain"); rule_error on duplicates.
    void add_mailbox(const mailbox& m);
    void update_mailbox(const mailbox& m);
    bool remove_mailbox(std::string_view key);
    // Empties connectors, domains and mailboxes (apply builds the new state in the same txn).
    void clear_all();

    // Cluster mode: every put and delete this transaction makes from now on is appended to
    // *log (nullptr stops recording); clear_all() records a delete per record.
    void record_into(std::vector<store_change>* log) { log_ = log; }
    // Replays a change recorded by another writer (its store_tx enforced the rules); `append`
    // (MDB_APPEND) for keys given in ascending order into an emptied table.
    void apply(const store_change& c, bool append = false);
    // Sets a "cluster_*" meta key (other keys are the store's own: std::invalid_argument).
    void set_meta(std::string_view key, std::string_view value);

  private:
    friend class store;
    using store_view::store_view;
    void check_mailbox_domain(const mailbox& m);
    const lmdb::dbi& dbi_of(store_table t) const;
    bool put(store_table t, std::string_view key, std::string_view value, unsigned flags = 0);
    bool del(store_table t, std::string_view key);
    std::vector<store_change>* log_ = nullptr;
    std::map<std::string, std::optional<std::string>, std::less<>> owner_cache_;  // domain->conn
    std::map<std::string, bool, std::less<>> connector_cache_;
};

class store {
  public:
    static store open(const std::filesystem::path& dir, bool read_only, bool no_sync = false,
                      std::size_t initial_map_size = std::size_t{64} << 20);
    static store open(const config& cfg, bool read_only) {
        return open(cfg.store_dir(), read_only);
    }

    store(store&&) noexcept = default;
    store& operator=(store&&) noexcept = default;
    // Out of line: inlined into a caller's std::optional<store>, the pool pointer's destructor
    // made GCC 12 at -O2 warn "may be used uninitialized" (a false positive).
    ~store();

    store_view read();
    // One atomic change. Returns the new generation. fn may run more than once (map growth),
    // so it must not have side effects outside the transaction.
    std::uint64_t write(const std::function<void(store_tx&)>& fn);
    // Commits also publish the generation into this segment.
    void attach(shm_state* shm) { shm_ = shm; }
    lmdb::env& env() { return env_; }
    const std::filesystem::path& dir() const { return dir_; }

  private:
    friend class store_view;
    friend class store_tx;
    store() = default;
    std::filesystem::path dir_;
    lmdb::env env_;
    // Reset read transactions for read() (after env_: goes first). A pointer: a store moves.
    std::unique_ptr<lmdb::read_txn_pool> readers_{};
    lmdb::dbi meta_, connectors_, domains_, mailboxes_;
    shm_state* shm_ = nullptr;
    std::uint64_t serial_ = 0;  // store_view::snapshot(): unique per store::open() in a process
};

inline constexpr int store_schema_version = 1;

}  // namespace mx
