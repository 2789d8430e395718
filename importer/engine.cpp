// engine: one batch of one drop folder, exactly once (see importer.hpp for the steps). This
// file holds the settings and the batch's order of steps; the steps live in engine_claim.cpp
// (1), engine_plan.cpp (2-4) and engine_finish.cpp (5-8).
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <thread>

#include "cluster_link.hpp"
#include "delivery_lanes.hpp"
#include "engine_item.hpp"
#include "global/cluster.hpp"
#include "global/config_reader.hpp"
#include "target_health.hpp"
#include "util/fs.hpp"

namespace mx::importer {

std::int64_t now_unix() {
    return static_cast<std::int64_t>(::time(nullptr));
}

// Test-only fault injection (MX_IMPORTER_FAULT_INJECTION=1 in the environment, never in
// production): a drop file whose name contains "mx-test-journal-fault-<step>" makes that
// step's journal write fail for this file, as a full disk or a refused key would.
void inject_journal_fault(const std::string& name, const char* step) {
    const char* e = std::getenv("MX_IMPORTER_FAULT_INJECTION");
    if (!e || std::string_view(e) != "1") return;
    if (name.find(std::string("mx-test-journal-fault-") + step) != std::string::npos)
        throw lmdb::error("mdb_put", MDB_BAD_VALSIZE);
}

void inject_crash(const std::string& name, const char* step) {
    const char* e = std::getenv("MX_IMPORTER_FAULT_INJECTION");
    if (!e || std::string_view(e) != "1") return;
    if (name.find(std::string("mx-test-crash-") + step) != std::string::npos) ::raise(SIGKILL);
}

settings settings::from(const config& cfg) {
    settings s;
    config_reader r(cfg, "importer");
    auto secs = [](double v) { return std::chrono::seconds(static_cast<long>(v)); };
    auto ms = [](double v) { return std::chrono::milliseconds(static_cast<long>(v * 1000)); };
    s.max_age = secs(r.number("max_age_days", 5, 0, 3650) * 86400);
    s.retry_base = secs(r.number("retry_base_seconds", 60, 0, 86400));
    s.retry_max = secs(r.number("retry_max_seconds", 3600, 0, 30 * 86400));
    s.batch_size = static_cast<std::size_t>(r.integer("batch_size", 256, 1, 100000));
    // An explicit batch_size alone fixes the size of every batch (as before this key existed).
    const std::int64_t backlog_default =
        r.has("batch_size") ? static_cast<std::int64_t>(s.batch_size) : 2048;
    auto backlog = r.integer("backlog_batch_size", backlog_default, 1, 100000);
    s.backlog_batch_size = std::max(s.batch_size, static_cast<std::size_t>(backlog));
    s.rescan_interval = ms(r.number("rescan_seconds", 5, 0.01, 86400));
    s.batch_delay = std::chrono::milliseconds(r.integer("batch_delay_ms", 100, 0, 10000));
    s.eml_settle = secs(r.number("eml_settle_seconds", 2, 0, 86400));
    s.worker.base_timeout = ms(r.number("parse_timeout_seconds", 10, 0.1, 3600));
    s.worker.memory_limit =
        static_cast<std::uint64_t>(r.integer("parse_memory_mb", 1024, 16, 1 << 20)) << 20;
    s.parse_workers = static_cast<std::size_t>(r.integer("parse_workers", 2, 1, 16));
    s.worker.limits.max_header_bytes =
        static_cast<std::size_t>(r.integer("max_header_bytes", 100 * 1024, 1024, 64 << 20));
    s.journal_retention = secs(r.number("journal_days", 30, 0, 36500) * 86400);  // 0: keep
    s.prune_interval = ms(r.number("journal_prune_seconds", 3600, 1, 30 * 86400));
    s.delivery_threads = static_cast<std::size_t>(r.integer("delivery_threads", 8, 1, 256));
    s.delivery_grace = std::chrono::milliseconds(r.integer("delivery_grace_ms", 200, 0, 600000));
    s.durability = r.word("durability", "syncfs", {"syncfs", "fsync"}) == "fsync"
                       ? sync_set::mode::fsync
                       : sync_set::mode::syncfs;
    s.host = cfg.hostname.empty() ? "localhost" : cfg.hostname;
    for (char& c : s.host)
        if (c == '/' || c == '\0' || static_cast<unsigned char>(c) < 32) c = '_';
    if (s.host == "." || s.host == "..") s.host.assign(1, '_');
    // In a cluster the work folder is the node's (.work/<node>/): another host takes it over
    // by that name when this node's lease ends (the name is validated by cluster_of()).
    if (auto c = cluster::cluster_of(cfg)) s.host = c->node;
    return s;
}

folder folder::from(const mx::connector& c) {
    folder f;
    f.connector = c.name;
    f.drop = c.drop_folder;
    f.max_size = c.max_message_size;
    f.default_target = c.default_target;
    return f;
}

engine::engine(const config& cfg, settings s, journal& j, shm_state* shm)
    : cfg_(cfg)
    , s_(std::move(s))
    , journal_(j)
    , shm_(shm)
    , targets_(cfg)
    , health_(std::make_unique<target_health>(breaker_settings::from(cfg)))
    , wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC))
    , lanes_(std::make_unique<delivery_lanes>(s_.delivery_threads)) {
    std::size_t n = s_.worker.exec_path.empty() ? 1 : std::max<std::size_t>(1, s_.parse_workers);
    // Exec mode: one factory prepares itself once (~250 charset converters) and forks every
    // worker, now and after each crash; created here, on the daemon's own thread, which the
    // workers' parent-death signal follows.
    if (!s_.worker.exec_path.empty() && !s_.worker.factory)
        s_.worker.factory = std::make_shared<worker_factory>(s_.worker);
    // Started side by side, then awaited: a worker that cannot start is still the start-up's
    // failure.
    for (std::size_t i = 0; i < n; ++i)
        workers_.push_back(std::make_unique<parse_worker>(s_.worker, false));
    for (auto& w : workers_) w->ready();
    if (auto c = cluster::cluster_of(cfg))
        cluster_ = std::make_unique<cluster_link>(std::move(*c), s_.journal_retention);
}

engine::~engine() {
    await_parsing();  // a claim ahead finishes first (its files stay claimed for the next start)
    // Running deliveries end first (each bounded by its target's timeout); parked files that
    // are left stay claimed with their pending records: the next start recovers them.
    lanes_.reset();
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::vector<parse_result> engine::parse_all(const std::vector<item*>& items) {
    // Each file with what its claim saw (size, and mtime for a private one: no fstat).
    using iter = std::vector<item*>::const_iterator;
    auto parse_on = [](parse_worker& w, iter from, iter to) {
        std::vector<std::filesystem::path> paths;
        std::vector<std::uint64_t> sizes;
        std::vector<std::int64_t> mtimes;
        for (auto p = from; p != to; ++p) {
            paths.push_back((*p)->work);
            sizes.push_back((*p)->size_hint);
            mtimes.push_back((*p)->mtime_hint);
        }
        return w.parse_batch(paths, sizes, false, mtimes);
    };
    if (workers_.size() < 2 || items.size() < 16)
        return parse_on(*workers_.front(), items.begin(), items.end());
    // Two halves in parallel (two cores): the second half on a thread of its own.
    auto mid = items.begin() + static_cast<long>(items.size() / 2);
    std::vector<parse_result> r2;
    std::exception_ptr err;
    std::thread t([&] {
        try {
            r2 = parse_on(*workers_[1], mid, items.end());
        } catch (...) {
            err = std::current_exception();
        }
    });
    std::vector<parse_result> r1;
    try {
        r1 = parse_on(*workers_[0], items.begin(), mid);
    } catch (...) {
        t.join();
        throw;
    }
    t.join();
    if (err) std::rethrow_exception(err);
    for (auto& r : r2) r1.push_back(std::move(r));
    return r1;
}

void engine::await_parsing() {
    for (auto& [drop, p] : prefetch_)
        if (p->parsing.valid()) p->parsing.wait();
}

void engine::take_prefetched(batch& b) {
    auto at = prefetch_.find(b.f->drop);
    if (at == prefetch_.end()) return;
    auto p = std::move(at->second);
    prefetch_.erase(at);
    // get() waits for the claim and the parse (p->items are complete after it); results in
    // the items' order. A failure of the parse as a whole (the workers could not be
    // restarted) leaves the files claimed: parse_items tries them again.
    std::vector<parse_result> results;
    try {
        results = p->parsing.get();
    } catch (const std::exception& e) {
        spdlog::warn("connector {}: parsing ahead failed: {}; parsing again", b.f->connector,
                     e.what());
    }
    for (std::size_t i = 0; i < p->items.size(); ++i) {
        if (i < results.size()) {
            p->items[i]->pr = std::move(results[i]);
            p->items[i]->parsed = true;
        }
        b.items.push_back(std::move(p->items[i]));
    }
}

void engine::set_budget(batch& b) const {
    // Files still on a lane count against the batch size: a slow target's backlog is bounded.
    std::size_t busy = parked_of(b.f->connector);
    auto less_busy = [&](std::size_t n) { return n > busy ? n - busy : 0; };
    b.budget = less_busy(s_.batch_size);
    // A backlog (claim_new: more than 4 x batch_size waiting in a folder) is taken in batches
    // of up to backlog_batch_size: each batch pays two journal commits, a syncfs and a scan of
    // the folder, so 10,000 files drain at ~10,400/s with 2048 against ~7,200/s with 256.
    // Mail arriving at a steady rate, which leaves few files waiting, keeps batches of
    // batch_size: the first file of a batch waits for all of it (a fixed 2048 raised the
    // pipeline's import latency). docs/BENCHMARKS.md, Importer.
    b.backlog_budget = less_busy(s_.backlog_batch_size);
}

void engine::prefetch_next(const batch& b) {
    // Only while new files are left for lack of budget (a backlog): a batch that took all
    // there was has nothing to claim ahead, and a quiet folder is not listed twice. Not while
    // files of the work folder wait for budget (crash leftovers, due retries): the next batch
    // takes them first, else new files claimed ahead batch after batch would keep them waiting
    // until the backlog is gone.
    if (b.new_left == 0 || b.own_left > 0 || prefetch_.count(b.f->drop)) return;
    auto p = std::make_unique<prefetch>();
    auto nb = std::make_shared<batch>();
    nb->f = b.f;
    nb->now = b.now;
    nb->work = b.work;
    set_budget(*nb);
    await_parsing();  // the workers serve one parse at a time
    // Claimed and parsed on a thread of its own while this batch plans, delivers and
    // settles: nothing else claims from this folder until take_prefetched() has waited for
    // it (the next batch of the folder starts there), and the files it renames into the
    // work folder are not this batch's.
    p->parsing = std::async(std::launch::async, [this, nb, pp = p.get()] {
        claim_new(*nb);
        std::vector<item*> claimed;
        claimed.reserve(nb->items.size());
        for (const auto& it : nb->items) claimed.push_back(it.get());
        pp->items = std::move(nb->items);  // the items themselves stay where they are
        if (claimed.empty()) return std::vector<parse_result>{};
        return parse_all(claimed);
    });
    prefetch_.emplace(b.f->drop, std::move(p));
}

bool engine::prepare(batch& b) {
    try {
        util::make_dirs(b.work, 0750);
        util::make_dirs(b.f->failed_dir(), 0750);
        return true;
    } catch (const std::system_error& e) {
        spdlog::error("connector {}: cannot prepare {}: {}", b.f->connector, b.work.string(),
                      e.what());
        return false;
    }
}

std::size_t engine::parked_of(const std::string& connector) const {
    std::lock_guard lk(done_mu_);
    std::size_t n = 0;
    for (const auto& it : parked_) n += it->from->connector == connector;
    return n;
}

std::size_t engine::parked() const {
    std::lock_guard lk(done_mu_);
    return parked_.size();
}

batch_stats engine::run_batch(const folder& f, store* st, bool want_oldest) {
    batch b;
    if (!st) return b.bs;
    b.f = std::make_shared<const folder>(f);
    b.now = now_unix();
    b.work = f.work_dir(s_.host);
    b.want_oldest = want_oldest;
    set_budget(b);
    if (!prepare(b)) return b.bs;
    take_prefetched(b);  // 1+2. claimed and parsed while the previous batch finished
    adopt_orphans(b);    // 1. cluster: the claimed files of a node whose lease ended
    claim_own(b);        // 1. crash recovery and retries that are due
    claim_new(b);        // 1. new files by rename
    if (b.items.empty()) return b.bs;
    parse_items(b);      // 2.
    prefetch_next(b);    // 1+2. of the next batch, parsed while this one goes on
    plan_items(b, *st);  // 3.
    cluster_reserve(b);  // 3b. cluster: reserve in PostgreSQL (or leave to the holder)
    write_pending(b);    // 4.
    dispatch(b);         // 5. onto the lanes
    {
        // The batch waits for its deliveries while they make progress (Maildir links take
        // microseconds), at most delivery_grace; a slice without any delivery finishing means
        // a slow target: what is still running is parked and finished by finish_parked().
        std::unique_lock lk(done_mu_);
        auto all_done = [&] { return batch_outstanding_ == 0; };
        if (s_.delivery_grace.count() == 0) {
            done_cv_.wait(lk, all_done);  // 0: never park (every batch waits for its targets)
        } else {
            auto until = std::chrono::steady_clock::now() + s_.delivery_grace;
            while (!all_done() && std::chrono::steady_clock::now() < until) {
                // Slow: a delivery that was already running at the start of a slice in which
                // none finished (one waiting for a thread is not slow yet).
                auto seen = completions_;
                bool running = batch_started_ > batch_ended_;
                done_cv_.wait_for(lk, std::chrono::milliseconds(5), all_done);
                if (running && completions_ == seen) break;
            }
        }
    }
    std::vector<item*> ready;
    {
        std::lock_guard lk(done_mu_);
        for (auto& it : b.items) {
            if (it->outstanding == 0) {
                ready.push_back(it.get());
                continue;
            }
            it->from = b.f;  // from now on its deliveries wake the daemon's loop
            parked_.push_back(std::move(it));
        }
        batch_outstanding_ = 0;  // the rest belongs to parked files
    }
    settle(f, ready, b.bs);  // 5-8.
    return b.bs;
}

std::size_t engine::finish_parked() {
    if (wake_fd_ >= 0) {
        std::uint64_t n;
        (void)!::read(wake_fd_, &n, sizeof n);
    }
    item_list done;
    {
        std::lock_guard lk(done_mu_);
        for (auto& it : parked_)
            if (it->outstanding == 0) done.push_back(std::move(it));
        std::erase(parked_, nullptr);
    }
    // By connector: each group is one settle (one sync, one journal transaction).
    std::map<std::string, std::vector<item*>> groups;
    for (auto& it : done) groups[it->from->connector].push_back(it.get());
    for (auto& [conn, items] : groups) {
        batch_stats bs;
        try {
            settle(*items.front()->from, items, bs);
        } catch (const std::exception& e) {
            // Nothing is lost: the files stay claimed with their pending records.
            spdlog::error("connector {}: finishing deliveries failed: {}", conn, e.what());
        }
    }
    return done.size();
}

bool engine::health_changed() const {
    return health_->changed();
}

nlohmann::json engine::health() {
    return health_->snapshot(now_unix());
}

}  // namespace mx::importer
