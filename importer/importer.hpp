// importer: the import engine (engine.cpp) and the daemon around it (daemon.cpp).
//
// One batch for one connector's drop folder:
//   1. claim: rename files from new/, *.eml, .retry/ into <drop>/.work/<host>/ (exactly one
//      importer wins a file), oldest first by the arrival time in the Maildir name (no stat);
//      files already there are our own earlier claims (crash recovery) or retries whose time
//      has come
//   2. parse all of them in the parse worker (crash/hang -> re-parse envelope-only -> else
//      unparseable); fingerprint = SHA-256 of the bytes
//   3. per (fingerprint, recipient): journal says imported, or an earlier file of this batch
//      (or a parked one) has it -> duplicate, nothing to do;
//      resolve the mailbox (same lookup as the milter), choose the target, plan a location
//   4. journal commit: "pending" + planned locations
//   5. deliver (hard link / copy / HTTP / command) on the targets' lanes: one lane per target,
//      lanes in parallel, so a slow target delays only its own files; what is not done after
//      a short grace is parked and finished later; then ONE sync of what was delivered
//      A target whose breaker is open (target_health.hpp) is not planned at all: its files
//      wait with a retry at the end of the pause.
//   6. late failures: reason JSON -> spool bounce -> move the file to ImportFailed
//   7. journal commit: "imported"/"failed"/"held", indexes, retry schedule
//   8. unlink the claimed files that are done
// While a backlog lasts, steps 1 and 2 of the folder's next batch run ahead on a thread of
// their own (prefetch_next: claim by rename, parse) during steps 3-8 of this one; the next
// batch starts with those items. Nothing else moves earlier, so duplicates, mailboxes and the
// journal see exactly what one batch after another would.
// One file's trouble is that file's alone: an exception while planning or delivering it, or a
// journal write that fails for it (the batch's transactions are redone file by file), defers
// only that file (retry record), never the batch.
// A crash anywhere leaves the file in the work folder and the journal consistent with the
// mailboxes: the restart re-runs the batch, and pending records are checked against the
// target (delivered(planned)) — never a duplicate, never a loss.
// Cluster mode ([cluster], engine_cluster.cpp, docs/cluster-import.md): step 1 also takes over
// the work folder of a node whose lease ended, each planned delivery is reserved in PostgreSQL
// between steps 3 and 4 (imported elsewhere: a duplicate; held by a live node: it waits), and
// the imported/failed marks go there after step 7, before the files are unlinked.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "global/config.hpp"
#include "global/journal.hpp"
#include "global/model.hpp"
#include "global/shm_state.hpp"
#include "global/store.hpp"
#include "import_target.hpp"
#include "parse_worker.hpp"

namespace mx::importer {

struct settings {
    std::chrono::seconds max_age{5 * 86400};  // then temporary -> ImportFailed 5.4.7
    std::chrono::seconds retry_base{60};      // first retry; doubles up to retry_max
    std::chrono::seconds retry_max{3600};
    std::size_t batch_size = 256;
    // A backlog (more than 4 x batch_size files waiting in a folder) is taken in batches of up
    // to this many (engine::set_budget). Default 2048; = batch_size when only that is set.
    std::size_t backlog_batch_size = 2048;
    sync_set::mode durability = sync_set::mode::syncfs;
    std::chrono::milliseconds rescan_interval{5000};  // full rescan (network shares)
    std::chrono::milliseconds poll_interval{250};     // shm generation polling
    // After a round that took files but left none waiting, the next round waits this long
    // so that files arriving in a stream are taken as one batch: a batch's fixed cost (two
    // journal commits, one syncfs, the folder scans) otherwise lands on a file or two each.
    // A file arriving while the importer is idle is still taken at once. 0: never wait.
    std::chrono::milliseconds batch_delay{100};
    std::chrono::seconds eml_settle{2};  // *.eml younger than this may still be written
    worker_options worker;
    // Parse workers run in parallel on halves of a batch (exec mode only: forking a
    // multi-threaded process without exec is avoided). [importer] parse_workers.
    std::size_t parse_workers = 2;
    std::string host;  // work folder name and "importer_host" (config hostname)
    // Journal retention: final delivery records (imported, failed) older than this are pruned
    // with their index entries, and retry records of files that are gone. 0: keep forever.
    std::chrono::seconds journal_retention{30 * 86400};
    std::chrono::milliseconds prune_interval{3600 * 1000};
    // Deliveries run on per-target lanes (delivery_lanes.hpp) on up to delivery_threads
    // threads; a batch waits delivery_grace for them while they progress, then parks what is
    // still running (0: never park, wait for every delivery).
    std::size_t delivery_threads = 8;
    std::chrono::milliseconds delivery_grace{200};

    // [importer] keys: max_age_days, retry_base_seconds, retry_max_seconds, batch_size,
    // backlog_batch_size, batch_delay_ms,
    // durability ("syncfs"|"fsync"), rescan_seconds, eml_settle_seconds, parse_timeout_seconds,
    // parse_memory_mb, max_header_bytes, journal_days, journal_prune_seconds, delivery_threads,
    // delivery_grace_ms (breaker_* keys: target_health.hpp).
    static settings from(const config& cfg);
};

struct folder {
    std::string connector;
    std::filesystem::path drop;
    std::uint64_t max_size = 0;
    std::string default_target;

    std::filesystem::path new_dir() const { return drop / "new"; }
    std::filesystem::path work_dir(const std::string& host) const { return drop / ".work" / host; }
    std::filesystem::path failed_dir() const { return drop / "ImportFailed"; }
    std::filesystem::path retry_dir() const { return drop / ".retry"; }
    static folder from(const mx::connector& c);
};

struct batch_stats {
    std::size_t files = 0;     // files handled (finished, failed or rescheduled)
    std::size_t imported = 0;  // recipient deliveries
    std::size_t failed = 0;    // recipient failures
    std::size_t deferred = 0;  // files rescheduled
    std::size_t duplicates = 0;
    std::size_t waiting = 0;  // files seen but not taken (batch full, retry not yet due)
    std::int64_t oldest = 0;  // unix time of the oldest waiting file (when computed)
};

class delivery_lanes;
class target_health;
class cluster_link;
struct breaker_settings;

class engine {
  public:
    engine(const config& cfg, settings s, journal& j, shm_state* shm);
    ~engine();
    // Claims and imports up to batch_size files of one folder. `st` may be null (store
    // missing): then nothing is claimed. `want_oldest` stats waiting files for the gauge.
    // Deliveries still running after settings::delivery_grace are parked: their files are
    // finished by a later finish_parked() (the batch does not wait for a slow target).
    batch_stats run_batch(const folder& f, store* st, bool want_oldest = false);
    // Finishes parked files whose deliveries are all done (steps 5-8); returns how many.
    std::size_t finish_parked();
    // Files whose deliveries are still running.
    std::size_t parked() const;
    // Readable (eventfd) when a parked delivery finished: the daemon polls it.
    int wake_fd() const { return wake_fd_; }
    // The breakers' state for the status file, and whether it changed since the last health().
    bool health_changed() const;
    nlohmann::json health();
    parse_worker& worker() { return *workers_.front(); }

    // The engine's files share these (engine_item.hpp); nothing else uses them.
    struct item;
    struct batch;
    using item_list = std::vector<std::unique_ptr<item>>;
    struct prefetch;

  private:
    // The documented steps (importer.hpp top), each on the batch it works on.
    bool prepare(batch& b);    // work and ImportFailed folders exist
    void claim_own(batch& b);  // 1: our claims (crash recovery, due retries)
    void claim_new(batch& b);  // 1: new files by rename
    // 1+2 ahead: while a backlog lasts, the next batch's new files are claimed and parsed
    // (parse workers, in the background) while this batch plans, delivers and settles.
    void take_prefetched(batch& b);
    void prefetch_next(const batch& b);
    void set_budget(batch& b) const;
    void await_parsing();                  // the parse workers are free (no prefetch parse running)
    void parse_items(batch& b);            // 2: parse worker
    void plan_items(batch& b, store& st);  // 3: duplicates, mailbox, target, location
    void plan_file(batch& b, item& it, store_view& view, lmdb::txn& rt);
    // Cluster mode only (engine_cluster.cpp; no-ops without [cluster]):
    void adopt_orphans(batch& b);                    // 1: a dead node's claimed files
    void cluster_reserve(batch& b);                  // 3b: reserve in PostgreSQL, or skip
    void cluster_finish(std::vector<item*>& items);  // 7b: imported/failed in PostgreSQL
    bool recover_pending(item& it, std::size_t r, const nlohmann::json& rec);
    void write_pending(batch& b);  // 4: pending records
    void dispatch(batch& b);       // 5: deliveries onto the targets' lanes
    void settle(const folder& f, std::vector<item*>& items, batch_stats& bs);        // 5-8
    void sync_items(const folder& f, std::vector<item*>& items);                     // 5: durable
    void decide(const folder& f, std::vector<item*>& items, std::int64_t now);       // 6
    void write_final(const folder& f, std::vector<item*>& items, std::int64_t now);  // 7
    void report(const folder& f, std::vector<item*>& items, batch_stats& bs);        // 8
    void finish_failed(const folder& f, item& it);
    nlohmann::json retry_record(const item& it, const std::string& last_error, std::int64_t now);
    std::vector<parse_result> parse_all(const std::vector<item*>& items);  // in items' order
    std::size_t parked_of(const std::string& connector) const;

    const config& cfg_;
    settings s_;
    journal& journal_;
    shm_state* shm_;
    std::vector<std::unique_ptr<parse_worker>> workers_;
    // By drop folder: files claimed ahead for its next batch (after workers_: destroyed
    // first, a running parse is awaited). Crash or stop: they stay claimed in the work
    // folder and claim_own takes them again.
    std::map<std::filesystem::path, std::unique_ptr<prefetch>> prefetch_;
    target_cache targets_;
    std::unique_ptr<target_health> health_;
    // Items whose deliveries run on the lanes; guarded by done_mu_ with their results.
    mutable std::mutex done_mu_;
    std::condition_variable done_cv_;
    item_list parked_;
    std::uint64_t completions_ = 0;      // deliveries finished so far (progress of a batch)
    std::size_t batch_outstanding_ = 0;  // deliveries of the running batch not yet done
    std::size_t batch_started_ = 0, batch_ended_ = 0;  // of the running batch, on the lanes
    std::map<std::string, std::size_t> lane_jobs_;     // deliveries queued/running per target
    int wake_fd_ = -1;
    // Work files whose retry record could not be written (journal failing): their next try,
    // so one file never makes the folder spin. Lost on restart, which then retries at once.
    std::map<std::string, std::int64_t> unrecorded_retries_;
    std::unique_ptr<cluster_link> cluster_;  // [cluster]: the shared journal and the lease
    std::unique_ptr<delivery_lanes> lanes_;  // last: its threads go first
};

// A periodic task of the daemon's main loop (see daemon::add_task).
struct periodic_task {
    std::string name;
    std::chrono::milliseconds interval;
    std::function<void()> run;  // exceptions are logged, never fatal
};

struct daemon_options {
    bool drain = false;    // exit when no active folder has ready work left (tests, benchmarks)
    std::string self_exe;  // for the parse worker's exec; empty: fork only
};

class daemon {
  public:
    daemon(const config& cfg, daemon_options o);
    ~daemon();
    void add_task(periodic_task t) { tasks_.push_back({std::move(t), {}}); }
    int run();  // until SIGTERM/SIGINT (or drained); returns the exit status
    static void request_stop() noexcept;

  private:
    struct task_state {
        periodic_task task;
        std::chrono::steady_clock::time_point next;
    };
    bool reload_connectors();
    void rebuild_watches();
    void publish_health(bool final);
    const config& cfg_;
    daemon_options o_;
    settings s_;
    std::optional<journal> journal_;
    std::optional<shm_state> shm_;
    std::optional<store> store_;
    std::unique_ptr<engine> engine_;
    std::vector<folder> folders_;
    std::vector<task_state> tasks_;
    std::uint64_t seen_generation_ = ~std::uint64_t{0};
    int inotify_fd_ = -1;
};

}  // namespace mx::importer
