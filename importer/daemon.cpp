// daemon: mx-importer's main loop — connectors from the store (followed through the shm
// generation plus a periodic rescan), inotify on the active drop folders, batches through the
// engine, counters and heartbeat into shared memory, and the periodic tasks (bounce sender,
// journal retention).
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>

#include <spdlog/spdlog.h>

#include "global/logging.hpp"
#include "importer.hpp"
#include "target_health.hpp"
#include "util/signals.hpp"

namespace mx::importer {

void daemon::request_stop() noexcept {
    util::signal_pipe::post(SIGTERM);
}

daemon::daemon(const config& cfg, daemon_options o) : cfg_(cfg), o_(std::move(o)) {
    s_ = settings::from(cfg);
    s_.worker.exec_path = o_.self_exe;
}

daemon::~daemon() {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

bool daemon::reload_connectors() {
    try {
        if (!store_) store_ = store::open(cfg_, true);
        auto v = store_->read();
        std::vector<folder> fresh;
        for (const auto& c : v.connectors()) {
            if (!c.active || c.drop_folder.empty()) continue;  // inactive: files stay untouched
            fresh.push_back(folder::from(c));
        }
        bool changed = fresh.size() != folders_.size();
        for (std::size_t i = 0; !changed && i < fresh.size(); ++i)
            changed =
                fresh[i].connector != folders_[i].connector || fresh[i].drop != folders_[i].drop;
        folders_ = std::move(fresh);
        if (shm_) seen_generation_ = shm_->generation();
        if (changed) {
            std::string names;
            for (const auto& f : folders_) names += (names.empty() ? "" : ", ") + f.connector;
            spdlog::info("watching {} active connector(s): {}", folders_.size(), names);
            rebuild_watches();
        }
        return true;
    } catch (const std::exception& e) {
        // No store yet (or unreadable): never fail mail, look again at the next rescan.
        static std::string last;
        if (last != e.what()) spdlog::warn("store not available ({}); retrying", e.what());
        last = e.what();
        store_.reset();
        return false;
    }
}

// The targets' breakers for mxctl and Prometheus (target_health.hpp): written at most once a
// second when they change, else refreshed every 10 s (the file's "time" tells a reader it is
// current).
void daemon::publish_health(bool final) {
    using clock = std::chrono::steady_clock;
    static clock::time_point last{};
    if (!final) {
        if (!engine_) return;
        bool changed = engine_->health_changed();
        if (clock::now() - last < (changed ? std::chrono::seconds(1) : std::chrono::seconds(10)))
            return;
    }
    last = clock::now();
    nlohmann::json j =
        engine_ ? engine_->health()
                : nlohmann::json{{"time", ::time(nullptr)}, {"targets", nlohmann::json::array()}};
    try {
        write_target_health(cfg_, j);
    } catch (const std::exception& e) {
        spdlog::warn("cannot write {}: {}", target_health_path(cfg_).string(), e.what());
    }
}

void daemon::rebuild_watches() {
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ < 0) {
        spdlog::warn("inotify_init1 failed: {}; relying on rescans", std::strerror(errno));
        return;
    }
    for (const auto& f : folders_)
        for (const auto& dir : {f.drop, f.new_dir(), f.retry_dir()}) {
            std::error_code ec;
            std::filesystem::create_directories(dir, ec);
            ::inotify_add_watch(inotify_fd_, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE);
        }
}

int daemon::run() {
    // Blocked while starting up (a signal then waits in the pipe); taken from the loop's poll.
    util::signal_pipe sigs({SIGTERM, SIGINT});
    ::signal(SIGPIPE, SIG_IGN);

    // One line per file: buffered, not a write(2) per line (log_buffer.cpp); flushed every
    // second below, at warnings and at exit.
    if (cfg_.log_sink != "syslog") use_buffered_stderr_log("mx-importer");
    journal_ = journal::open(cfg_.journal_dir(), false);
    try {
        shm_ = shm_state::attach(cfg_);
    } catch (const std::exception& e) {
        spdlog::warn("shared memory not available ({}); running without counters", e.what());
    }
    engine_ = std::make_unique<engine>(cfg_, s_, *journal_, shm_ ? &*shm_ : nullptr);
    if (s_.journal_retention.count() > 0) {
        // Retention keeps the journal bounded; first run one interval after the start.
        add_task({"journal-prune", s_.prune_interval, [this] {
                      auto before = static_cast<std::int64_t>(::time(nullptr)) -
                                    static_cast<std::int64_t>(s_.journal_retention.count());
                      auto n = journal_->prune(before);
                      if (n > 0) spdlog::info("journal: pruned {} old entries", n);
                  }});
    }
    add_task({"log-flush", std::chrono::seconds(1), [] { flush_log(); }});
    // Read slots of killed readers (mxctl, a crashed importer) would keep old pages from
    // being reused: clear them now and then, in the journal and in the store.
    add_task({"lmdb-reader-check", std::chrono::seconds(60), [this] {
                  auto n = journal_->env().reader_check();
                  if (store_) n += store_->env().reader_check();
                  if (n > 0) spdlog::info("lmdb: cleared {} stale reader slot(s)", n);
              }});
    spdlog::info("mx-importer started (host {}, journal {}, durability {})", s_.host,
                 cfg_.journal_dir().string(),
                 s_.durability == sync_set::mode::syncfs ? "syncfs" : "fsync");
    using clock = std::chrono::steady_clock;
    auto next_rescan = clock::now();
    for (auto& t : tasks_) t.next = clock::now() + t.task.interval;
    std::map<std::string, std::int64_t> oldest;
    publish_health(true);
    sigs.start();
    for (int sig = sigs.take(); sig != SIGTERM && sig != SIGINT; sig = sigs.take()) {
        auto now = clock::now();
        if (shm_)
            shm_->layout().importer_heartbeat.store(static_cast<std::uint64_t>(::time(nullptr)));
        bool rescan =
            now >= next_rescan || !store_ || (shm_ && shm_->generation() != seen_generation_);
        if (rescan) {
            reload_connectors();
            next_rescan = now + s_.rescan_interval;
        }
        bool did_work = engine_->finish_parked() > 0, more = false;
        // Round-robin: one batch per folder per round, so a folder with a large backlog
        // never keeps another waiting for longer than one batch.
        for (const auto& f : folders_) {
            batch_stats bs;
            try {
                bs = engine_->run_batch(f, store_ ? &*store_ : nullptr, rescan);
            } catch (const std::exception& e) {
                // A journal/store failure: nothing is lost (files stay claimed); try later.
                spdlog::error("connector {}: batch failed: {}", f.connector, e.what());
            }
            if (rescan) oldest[f.connector] = bs.oldest;
            did_work |= bs.files > 0;
            more |= bs.files > 0 && bs.waiting > 0;
            if (shm_) {
                auto& c = shm_->counters(f.connector);
                c.backlog.store(bs.waiting);
                if (bs.waiting == 0) oldest[f.connector] = 0;
                c.oldest_file_time.store(static_cast<std::uint64_t>(oldest[f.connector]));
            }
        }
        did_work |= engine_->finish_parked() > 0;
        publish_health(false);
        // Periodic tasks (the bounce sender's among them): due ones run here, in this thread.
        for (auto& t : tasks_) {
            if (clock::now() < t.next) continue;
            try {
                t.task.run();
            } catch (const std::exception& e) {
                spdlog::error("periodic task {} failed: {}", t.task.name, e.what());
            }
            t.next = clock::now() + t.task.interval;
        }
        if (o_.drain && !did_work && !more && store_ && engine_->parked() == 0) break;
        if (more) continue;
        if (did_work && s_.batch_delay.count() > 0 && !o_.drain) {
            // A stream of files (Postfix delivering): let the next ones gather into one batch.
            // Signals and finished deliveries still wake the loop at once.
            struct pollfd p[2] = {{engine_->wake_fd(), POLLIN, 0}, {sigs.fd(), POLLIN, 0}};
            ::poll(p, 2, static_cast<int>(s_.batch_delay.count()));
            continue;
        }
        if (did_work) continue;
        auto wake = std::min(next_rescan, clock::now() + s_.poll_interval);
        for (auto& t : tasks_) wake = std::min(wake, t.next);
        auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(wake - clock::now()).count();
        // Wakes on new files (inotify) and on deliveries that finished on a lane.
        struct pollfd p[3] = {
            {engine_->wake_fd(), POLLIN, 0}, {sigs.fd(), POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
        ::poll(p, inotify_fd_ >= 0 ? 3 : 2, static_cast<int>(std::clamp<long>(ms, 0, 60000)));
        if (inotify_fd_ >= 0) {
            char buf[8192];
            while (::read(inotify_fd_, buf, sizeof buf) > 0) {
            }
        }
    }
    spdlog::info("mx-importer stopping");
    engine_.reset();
    publish_health(true);
    flush_log();
    return 0;
}

}  // namespace mx::importer
