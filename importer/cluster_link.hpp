// cluster_link: the importer's side of the cluster-wide import journal (global/cluster_journal.hpp)
// — only built when the config has a [cluster] section; single-host importers never touch
// PostgreSQL.
//
// Two connections: one for the engine's thread (reservations before a delivery, final marks
// after it) and one for the lease thread, which renews this node's lease every lease/3, learns
// which nodes' leases ended (their .work/<node>/ files are taken over by the engine), retries
// final marks that could not be written, and prunes old rows. A slow target never delays the
// lease: the thread does nothing else.
// Promises: reserve() throws when PostgreSQL cannot answer — the engine then delivers nothing
// of that batch (retried later: nothing lost, nothing twice). mark() never throws: a mark that
// cannot be written is kept in memory and retried by the lease thread (should the process die
// first, the row stays "pending" with its location and whoever meets it again checks the
// target before delivering).
// Security: connection errors are logged with redact_conninfo(); no secret passes here.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "global/cluster.hpp"
#include "global/cluster_journal.hpp"

namespace mx::importer {

class cluster_link {
  public:
    // retention: final rows older than this are pruned (0: never).
    cluster_link(cluster::cluster_config c, std::chrono::seconds retention);
    ~cluster_link();
    cluster_link(const cluster_link&) = delete;
    cluster_link& operator=(const cluster_link&) = delete;

    const std::string& node() const { return journal_.node(); }
    std::chrono::seconds lease() const { return journal_.lease(); }
    // Nodes whose lease ended, as the lease thread saw them last (empty while our own lease is
    // not fresh: a host cut off from PostgreSQL takes nothing over).
    std::vector<std::string> dead_nodes() const;
    // Renews our lease and reserves every request, in one transaction (in the given order;
    // callers sort to avoid deadlocks between hosts). Throws on any database failure.
    std::vector<cluster::reservation> reserve(const std::vector<cluster::reserve_request>& rs);
    void mark(std::vector<cluster::final_mark> ms);

  private:
    void lease_loop();
    bool lease_tick(std::unique_ptr<pqxx::connection>& conn);
    void note_renewal(const std::string& prev);
    pqxx::connection& engine_conn();

    cluster::cluster_config cfg_;
    cluster::import_journal journal_;
    std::chrono::seconds retention_;
    std::unique_ptr<pqxx::connection> conn_;  // the engine thread's
    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::vector<std::string> dead_;
    std::chrono::steady_clock::time_point renewed_{};  // last successful renewal
    bool renewed_once_ = false;  // then another instance's renewal shows as a foreign `prev`
    std::vector<cluster::final_mark> outbox_;
    std::thread thread_;  // last: started once everything else exists
};

}  // namespace mx::importer
