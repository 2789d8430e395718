// follower: mx-replica's loop (see replica.hpp for what it promises).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "global/cluster_db.hpp"
#include "global/cluster_secrets.hpp"
#include "global/logging.hpp"
#include "replica.hpp"
#include "util/service.hpp"

namespace mx::replica {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
    g_stop = 1;
}

std::uint64_t now_ms() {
    using namespace std::chrono;
    return static_cast<std::uint64_t>(
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

// Sets a flag when the catalog moved; the loop does the work outside the notification.
class catalog_listener : public pqxx::notification_receiver {
  public:
    explicit catalog_listener(pqxx::connection_base& c)
        : pqxx::notification_receiver(c, "mxc_catalog") {}
    void operator()(const std::string&, int) override { pending = true; }
    bool pending = true;  // sync once right after (re)connecting
};

// Sleeps up to d, waking early on a stop request.
void nap(std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!g_stop && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

}  // namespace

void follower::request_stop() noexcept {
    g_stop = 1;
}

follower::follower(const config& cfg, cluster::cluster_config c) : cfg_(cfg), c_(std::move(c)) {}

void follower::publish_contact(std::uint64_t primary_generation) {
    if (!shm_) return;
    shm_->layout().cluster_primary_generation.store(primary_generation, std::memory_order_relaxed);
    shm_->layout().cluster_contact_ms.store(now_ms(), std::memory_order_release);
}

void follower::presize_for_full_copy(pqxx::connection& conn) {
    // A full copy restarts from scratch when the map fills (store::write retries): grow the
    // map once, up front, to about twice PostgreSQL's size of the tables.
    pqxx::read_transaction t(conn);
    auto r = t.exec1(
        "SELECT coalesce(sum(pg_table_size(c)), 0) FROM unnest(ARRAY['mxc.connectors', "
        "'mxc.domains', 'mxc.mailboxes']::regclass[]) AS c");
    auto want = static_cast<std::size_t>(r[0].as<std::uint64_t>()) * 2;
    for (int i = 0; i < 12 && store_->env().map_size() < want; ++i) store_->env().grow();
}

cluster::sync_result follower::sync(pqxx::connection& conn) {
    std::optional<cluster::catalog_position> at;
    {
        pqxx::read_transaction t(conn);
        at = cluster::read_position(t);
    }
    if (!at) {
        publish_contact(0);
        if (last_error_ != "no catalog")
            spdlog::warn("the cluster has no catalog yet (mxctl cluster init)");
        last_error_ = "no catalog";
        return {};
    }
    cluster::local_position here;
    {
        auto v = store_->read();
        here = cluster::local_position_of(v);
    }
    cluster::sync_result res;
    if (here.catalog_id != at->catalog_id || here.generation != at->generation) {
        const bool full_likely = here.catalog_id != at->catalog_id;
        if (full_likely) presize_for_full_copy(conn);
        // A snapshot: the position and every table as of one moment, even while writers go on.
        pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> t(conn);
        at = cluster::read_position(t);
        if (!at) return {};
        auto started = std::chrono::steady_clock::now();
        store_->write([&](store_tx& tx) { res = cluster::catch_up(t, tx, *at); });
        t.commit();
        if (res.kind == cluster::sync_kind::full)
            spdlog::info("full copy of catalog {} at generation {}: {} records in {} ms",
                         at->catalog_id, at->generation, res.changes,
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - started)
                             .count());
        else if (res.kind == cluster::sync_kind::incremental)
            spdlog::debug("applied generation {} ({} changes)", at->generation, res.changes);
    }
    publish_contact(at->generation);
    return res;
}

void follower::heartbeat(pqxx::connection& conn) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_heartbeat_ < c_.check_interval) return;
    last_heartbeat_ = now;
    cluster::local_position here;
    {
        auto v = store_->read();
        here = cluster::local_position_of(v);
    }
    pqxx::work t(conn);
    cluster::heartbeat(t, c_.node, here.generation, PROJECT_VERSION_STRING, "replica");
    t.commit();
    sync_secrets(conn);
    clear_stale_readers();
}

std::string follower::secrets_state(pqxx::connection& conn) const {
    std::string state;
    {
        pqxx::read_transaction t(conn);
        auto r = t.exec1(
            "SELECT count(*)::text || '/' || coalesce(md5(string_agg(name || ':' || "
            "md5(sealed), ',' ORDER BY name)), '') FROM mxc.secrets");
        state = r[0].as<std::string>();
    }
    // A key file that appears or is replaced makes the same rows open (or open differently).
    struct stat sb {};
    if (::stat(c_.key_file.c_str(), &sb) == 0)
        state += fmt::format(" key {}:{}:{}.{}", sb.st_ino, sb.st_size, sb.st_mtim.tv_sec,
                             sb.st_mtim.tv_nsec);
    return state;
}

void follower::sync_secrets(pqxx::connection& conn) {
    try {
        auto state = secrets_state(conn);
        if (state == secrets_synced_) return;
        if (!secrets_) secrets_ = secret_store::open(cfg_, false);
        if (auto n = cluster::sync_secrets(conn, c_, *secrets_); n > 0)
            spdlog::info("secrets: {} read from the cluster", n);
        secrets_synced_ = std::move(state);
    } catch (const std::exception& e) {
        // No key on a milter-only host is normal; say it once.
        static std::string last;
        if (last != e.what()) spdlog::info("secrets not replicated here: {}", log_safe(e.what()));
        last = e.what();
    }
}

void follower::clear_stale_readers() {
    try {
        if (auto n = store_->env().reader_check(); n > 0)
            spdlog::warn("store: cleared {} reader slot(s) of processes that died", n);
    } catch (const std::exception& e) {
        spdlog::warn("store: {}", log_safe(e.what()));
    }
}

void follower::follow(pqxx::connection& conn) {
    secrets_synced_.clear();  // once after every (re)connect: a change may have been missed
    catalog_listener listener(conn);
    auto next_check = std::chrono::steady_clock::now();
    while (!g_stop) {
        auto now = std::chrono::steady_clock::now();
        if (listener.pending || now >= next_check) {
            listener.pending = false;
            next_check = now + c_.check_interval;
            // After an apply the heartbeat goes out at once: `cluster nodes` shows the new
            // applied generation without waiting for the next interval.
            if (sync(conn).kind != cluster::sync_kind::none) last_heartbeat_ = {};
            heartbeat(conn);
        }
        util::service::notify_watchdog();
        // Wakes on a notification; at most a second, so a stop request is seen promptly.
        conn.await_notification(1, 0);
    }
}

void follower::open_local() {
    store_ = store::open(cfg_, false);
    try {
        shm_ = shm_state::attach(cfg_);
        store_->attach(&*shm_);
    } catch (const std::exception& e) {
        spdlog::warn(
            "shared memory not available ({}): daemons notice changes at their "
            "periodic checks only",
            log_safe(e.what()));
    }
}

int follower::run_once() {
    open_local();
    auto conn = cluster::connect(c_, "mx-replica");
    auto r = sync(*conn);
    heartbeat(*conn);
    spdlog::info("synchronised: {} change(s)", r.changes);
    return 0;
}

int follower::run() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    open_local();
    // Ready at once: the local store serves decisions whether PostgreSQL answers or not, and
    // the units ordered after this one must not wait for it.
    util::service::notify_ready("following " + cluster::redact_conninfo(c_.postgresql));
    spdlog::info("mx-replica started (node {}, PostgreSQL {}, check every {} s)", c_.node,
                 cluster::redact_conninfo(c_.postgresql), c_.check_interval.count());
    std::chrono::milliseconds backoff(1000);
    while (!g_stop) {
        try {
            auto conn = cluster::connect(c_, "mx-replica");
            spdlog::info("connected to PostgreSQL");
            last_error_.clear();
            backoff = std::chrono::milliseconds(1000);
            follow(*conn);
        } catch (const std::exception& e) {
            std::string why = log_safe(e.what());
            if (why != last_error_)
                spdlog::warn("PostgreSQL: {} (deciding from the local replica; retrying)", why);
            last_error_ = why;
            clear_stale_readers();  // also while PostgreSQL is away
            nap(backoff);
            // At most twice the check interval: the contact time (max_staleness) is only as
            // fresh as our attempts.
            const auto cap = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(30000),
                                                                 2 * c_.check_interval);
            backoff = std::min<std::chrono::milliseconds>(backoff * 2, cap);
        }
    }
    util::service::notify_stopping();
    spdlog::info("mx-replica stopped");
    return 0;
}

}  // namespace mx::replica
