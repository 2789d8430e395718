// cluster_journal: the import journal shared by every host of a cluster, in PostgreSQL
// (tables mxc.imports and mxc.importer_leases; library mx_cluster).
//
// mxc.imports holds one row per (message fingerprint, recipient): state pending -> imported or
// failed, the node that holds it, the planned target and location. The importer reserves a row
// before it delivers (in the same order as its local journal's "pending" record) and marks it
// imported once the target reported the message durable, so a (fingerprint, recipient) is
// imported once across all hosts. mxc.importer_leases holds one row per importer node with the
// time its lease ends; a node renews it while it lives. A pending row of a node whose lease
// ended is taken over by the next importer that meets it.
// Promises: every function runs in the caller's transaction (all or nothing); reserve() locks
// the row (SELECT ... FOR UPDATE), so two hosts never both hold one; times are PostgreSQL's
// now(), so the hosts' clocks do not matter. Key parts derived from mail are bounded with
// journal::key_part() (the same keys as the local journal).
// Security: nothing here logs; rows hold no message content, only names, paths and states.
#pragma once

#include <pqxx/pqxx>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mx::cluster {

// What a reservation found.
enum class reserve_outcome {
    reserved,    // new row, or ours already (our own earlier try): deliver
    taken_over,  // pending by a node whose lease ended: now ours; check `location` first
    retaken,     // failed earlier (a retry): pending again, ours
    busy,        // pending by a node that is alive: that node does it
    imported,    // done (by `node`): never again
};
std::string_view to_string(reserve_outcome o);

struct reserve_request {
    std::string fingerprint;
    std::string recipient;  // normalised recipient (bounded with key_part())
    std::string connector;
    std::string target;    // target spec planned by us
    std::string location;  // location planned by us
};

struct reservation {
    reserve_outcome what = reserve_outcome::reserved;
    std::string node;      // holder before this call (busy, taken_over, imported, retaken)
    std::string target;    // the holder's target spec (taken_over, busy, imported)
    std::string location;  // the holder's planned location (taken_over, busy, imported)
};

struct final_mark {
    std::string fingerprint, recipient;
    bool imported = false;  // else failed
    std::string target, location, path, failed_path, status;
};

class import_journal {
  public:
    // `instance` tells this process from another one with the same node name (a random token
    // by default).
    import_journal(std::string node, std::chrono::seconds lease, std::string instance = {});
    const std::string& node() const { return node_; }
    std::chrono::seconds lease() const { return lease_; }

    // The tables (idempotent; serialized by an advisory lock so two importers starting at once
    // do not race on CREATE TABLE).
    static void create_schema(pqxx::transaction_base& tx);

    // Our lease ends lease() from now (PostgreSQL's clock); inserts the row at first. Returns
    // the instance that held the row before ("" for a new row): after our own first renewal,
    // anything but our own instance means another live importer uses our node name.
    std::string renew_lease(pqxx::transaction_base& tx, long pid) const;
    const std::string& instance() const { return instance_; }
    // Nodes other than us whose lease has ended.
    std::vector<std::string> dead_nodes(pqxx::transaction_base& tx) const;
    // Reserves (fingerprint, recipient) pairs for us, in a few statements whatever their number;
    // see reserve_outcome. Rows are locked in (fingerprint, recipient) order: callers that pass
    // them sorted so never deadlock with another host. A pair given twice: the second one finds
    // the first's reservation (reserved, with its location).
    std::vector<reservation> reserve(pqxx::transaction_base& tx,
                                     const std::vector<reserve_request>& rs) const;
    reservation reserve(pqxx::transaction_base& tx, const reserve_request& r) const {
        return reserve(tx, std::vector<reserve_request>{r}).front();
    }
    // After the target reported durable (imported) or the file went to ImportFailed (failed).
    // Returns false when the row was held by another node (taken over meanwhile); the mark is
    // written all the same (it is the truth about the mailbox).
    // One result per mark, in a few statements whatever their number.
    std::vector<bool> mark(pqxx::transaction_base& tx, const std::vector<final_mark>& ms) const;
    bool mark(pqxx::transaction_base& tx, const final_mark& m) const {
        return mark(tx, std::vector<final_mark>{m}).front();
    }
    // Imported/failed rows older than `age` (at most `limit` per call); returns how many.
    std::size_t prune(pqxx::transaction_base& tx, std::chrono::seconds age,
                      std::size_t limit = 10000) const;
    // Drops our reservation of a row still pending by us (e.g. the delivery was not made).
    void release(pqxx::transaction_base& tx, std::string_view fingerprint,
                 std::string_view recipient) const;

  private:
    std::string node_;
    std::chrono::seconds lease_;
    std::string instance_;
};

}  // namespace mx::cluster
