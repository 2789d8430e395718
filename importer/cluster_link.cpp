// cluster_link: reservations, final marks and the lease thread (see the header).
#include "cluster_link.hpp"

#include <unistd.h>

#include <pqxx/pqxx>

#include <spdlog/spdlog.h>

#include "global/cluster_db.hpp"

namespace mx::importer {
namespace {

// One warning per distinct problem, not one per try.
void warn_once(std::string& last, const std::string& what, const std::string& msg) {
    if (msg == last) return;
    last = msg;
    spdlog::warn("cluster: {}: {}", what, msg);
}

std::unique_ptr<pqxx::connection> open_conn(const cluster::cluster_config& c, const char* program) {
    auto conn = cluster::connect(c, program);
    {
        // A host frozen while it holds row locks, or a stalled server, must not stall this
        // importer: the batch fails (its files wait for a retry) instead.
        pqxx::nontransaction n(*conn);
        n.exec("SET lock_timeout = '5s'");
        n.exec("SET statement_timeout = '30s'");
    }
    pqxx::work tx(*conn);
    cluster::import_journal::create_schema(tx);  // idempotent; the importer may start first
    tx.commit();
    return conn;
}

}  // namespace

cluster_link::cluster_link(cluster::cluster_config c, std::chrono::seconds retention)
    : cfg_(std::move(c)), journal_(cfg_.node, cfg_.lease), retention_(retention) {
    spdlog::info("cluster: node {}, lease {} s, PostgreSQL {}", cfg_.node, cfg_.lease.count(),
                 cluster::redact_conninfo(cfg_.postgresql));
    thread_ = std::thread([this] { lease_loop(); });
}

cluster_link::~cluster_link() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

std::vector<std::string> cluster_link::dead_nodes() const {
    std::lock_guard lk(mu_);
    if (std::chrono::steady_clock::now() - renewed_ > cfg_.lease / 2) return {};
    return dead_;
}

pqxx::connection& cluster_link::engine_conn() {
    if (conn_ && !conn_->is_open()) conn_.reset();
    if (!conn_) conn_ = open_conn(cfg_, "importer");
    return *conn_;
}

std::vector<cluster::reservation> cluster_link::reserve(
    const std::vector<cluster::reserve_request>& rs) {
    std::vector<cluster::reservation> out;
    std::string prev;
    try {
        pqxx::work tx(engine_conn());
        prev = journal_.renew_lease(tx, static_cast<long>(::getpid()));
        out = journal_.reserve(tx, rs);
        tx.commit();
    } catch (const pqxx::broken_connection&) {
        conn_.reset();
        throw;
    }
    std::lock_guard lk(mu_);
    note_renewal(prev);
    return out;
}

void cluster_link::mark(std::vector<cluster::final_mark> ms) {
    if (ms.empty()) return;
    try {
        pqxx::work tx(engine_conn());
        auto ours = journal_.mark(tx, ms);
        tx.commit();
        for (std::size_t i = 0; i < ms.size(); ++i)
            if (!ours[i])
                spdlog::warn(
                    "cluster: {} for a recipient of {} was held by another node (taken over "
                    "while this node was cut off)",
                    ms[i].imported ? "import" : "failure", ms[i].fingerprint.substr(0, 16));
        return;
    } catch (const std::exception& e) {
        if (dynamic_cast<const pqxx::broken_connection*>(&e)) conn_.reset();
        spdlog::warn("cluster: {} final mark(s) not written yet ({}); retrying", ms.size(),
                     e.what());
    }
    std::lock_guard lk(mu_);
    for (auto& m : ms) outbox_.push_back(std::move(m));
}

// After a renewal (mu_ held): `prev` is the instance that held the lease row before it.
void cluster_link::note_renewal(const std::string& prev) {
    if (!prev.empty() && prev != journal_.instance() && renewed_once_)
        spdlog::error(
            "cluster: ANOTHER importer renews the lease of node {} - node names must be unique "
            "([cluster] node): two importers with one name may import twice",
            journal_.node());
    renewed_once_ = true;
    renewed_ = std::chrono::steady_clock::now();
}

// One round of the lease thread: renew, learn the dead nodes, flush marks, prune now and then.
bool cluster_link::lease_tick(std::unique_ptr<pqxx::connection>& conn) {
    if (!conn) conn = open_conn(cfg_, "importer-lease");
    std::vector<cluster::final_mark> marks;
    {
        std::lock_guard lk(mu_);
        marks.swap(outbox_);
    }
    try {
        pqxx::work tx(*conn);
        auto prev = journal_.renew_lease(tx, static_cast<long>(::getpid()));
        auto dead = journal_.dead_nodes(tx);
        journal_.mark(tx, marks);
        tx.commit();
        std::lock_guard lk(mu_);
        note_renewal(prev);
        dead_ = std::move(dead);
        return true;
    } catch (...) {
        std::lock_guard lk(mu_);
        for (auto& m : marks) outbox_.push_back(std::move(m));
        throw;
    }
}

void cluster_link::lease_loop() {
    std::unique_ptr<pqxx::connection> conn;
    std::string last_error;
    auto next_prune = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    const auto every =
        std::max<std::chrono::milliseconds>(cfg_.lease / 3, std::chrono::milliseconds(500));
    for (;;) {
        try {
            lease_tick(conn);
            if (!last_error.empty()) spdlog::info("cluster: PostgreSQL reachable again");
            last_error.clear();
            if (retention_.count() > 0 && std::chrono::steady_clock::now() >= next_prune) {
                pqxx::work tx(*conn);
                auto n = journal_.prune(tx, retention_);
                tx.commit();
                if (n > 0) spdlog::info("cluster: pruned {} old import rows", n);
                next_prune = std::chrono::steady_clock::now() + std::chrono::hours(1);
            }
        } catch (const std::exception& e) {
            if (conn && !conn->is_open()) conn.reset();
            if (dynamic_cast<const pqxx::broken_connection*>(&e)) conn.reset();
            warn_once(last_error, "lease not renewed (nothing is imported until it is)", e.what());
        }
        std::unique_lock lk(mu_);
        if (cv_.wait_for(lk, every, [this] { return stop_; })) return;
    }
}

}  // namespace mx::importer
