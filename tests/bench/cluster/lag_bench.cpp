// lag_bench: replication lag of cluster mode — a change committed to PostgreSQL (the way
// mxctl commits it: lock_catalog + commit_changes, one mailbox per transaction) until node B's
// local store, the one B's mx-milter decides from, has it (written by B's running mx-replica).
//
// Usage: lag_bench CONNINFO B_STORE_DIR CHANGES RATE [WRITERS [PER_TX]]
//   RATE 0: idle — one change at a time, the next 20 ms after the previous one was seen.
//   RATE n: n changes/s spread over WRITERS connections (default 4), PER_TX changes per
//   transaction (default 1: as many transactions as changes), lag measured for each change.
// Prints one JSON line: n, rate_achieved, p50_ms, p99_ms, max_ms.
#include <unistd.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "global/cluster_catalog.hpp"
#include "global/store.hpp"

using clk = std::chrono::steady_clock;

namespace {

struct pending {
    std::string key;
    clk::time_point committed;
};

std::mutex mu;
std::list<pending> waiting;
std::atomic<long> next_id{0};
std::string run_tag;

int per_tx = 1;

// One transaction with per_tx new mailboxes (all pending from its commit on).
void write_one(pqxx::connection& c) {
    std::vector<mx::store_change> changes;
    for (int i = 0; i < per_tx; ++i)
        changes.push_back({mx::store_table::mailboxes,
                           "lag" + run_tag + "-" + std::to_string(next_id++) + "@bench.test",
                           std::string(R"({"connector":"bench","target":""})")});
    pqxx::work w(c);
    auto at = mx::cluster::lock_catalog(w);
    mx::cluster::commit_changes(w, at, changes);
    w.commit();
    auto now = clk::now();
    std::lock_guard lk(mu);
    for (auto& ch : changes) waiting.push_back({ch.key, now});
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: lag_bench CONNINFO B_STORE_DIR CHANGES RATE [WRITERS]\n");
        return 2;
    }
    const std::string conninfo = argv[1];
    const long total = std::stol(argv[3]);
    const double rate = std::stod(argv[4]);
    const int writers = argc > 5 ? std::stoi(argv[5]) : 4;
    per_tx = rate > 0 && argc > 6 ? std::max(1, std::stoi(argv[6])) : 1;
    run_tag = std::to_string(::getpid());
    auto b = mx::store::open(argv[2], true);
    std::vector<double> lags;
    std::atomic<bool> done{false};
    // The poller: every pending key B's store has now is done; lag = now - its commit. One
    // read transaction per pass (what a milter decision opens), re-mapped when B's replica
    // grew the map.
    auto poll_once = [&] {
        std::vector<pending> batch;
        {
            std::lock_guard lk(mu);
            batch.assign(waiting.begin(), waiting.end());
        }
        if (batch.empty()) return;
        std::vector<std::string> done_keys;
        for (int attempt = 0; attempt < 2; ++attempt) {
            try {
                auto v = b.read();
                auto now = clk::now();
                for (auto& p : batch)
                    if (v.has_mailbox(p.key)) {
                        lags.push_back(
                            std::chrono::duration<double, std::milli>(now - p.committed).count());
                        done_keys.push_back(p.key);
                    }
                break;
            } catch (const mx::lmdb::error&) {
                b.env().adopt_map_size();
            }
        }
        if (done_keys.empty()) return;
        std::sort(done_keys.begin(), done_keys.end());
        std::lock_guard lk(mu);
        waiting.remove_if([&](const pending& q) {
            return std::binary_search(done_keys.begin(), done_keys.end(), q.key);
        });
    };
    auto t0 = clk::now();
    if (rate <= 0) {
        pqxx::connection c(conninfo);
        for (long i = 0; i < total; ++i) {
            write_one(c);
            while (!waiting.empty()) poll_once();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    } else {
        std::vector<std::thread> ts;
        for (int w = 0; w < writers; ++w)
            ts.emplace_back([&, w] {
                pqxx::connection c(conninfo);
                const auto step = std::chrono::duration<double>(writers * per_tx / rate);
                auto next =
                    clk::now() + std::chrono::duration_cast<clk::duration>(step * w / writers);
                while (next_id < total) {
                    std::this_thread::sleep_until(next);
                    next += std::chrono::duration_cast<clk::duration>(step);
                    write_one(c);
                }
            });
        std::thread poller([&] {
            while (!done || !waiting.empty()) {
                poll_once();
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        });
        for (auto& t : ts) t.join();
        done = true;
        poller.join();
    }
    double secs = std::chrono::duration<double>(clk::now() - t0).count();
    std::sort(lags.begin(), lags.end());
    auto pct = [&](double q) {
        return lags.empty() ? 0.0 : lags[std::min(lags.size() - 1, std::size_t(q * lags.size()))];
    };
    std::printf(
        "{\"n\":%zu,\"rate_target\":%.0f,\"rate_achieved\":%.1f,\"p50_ms\":%.2f,"
        "\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
        lags.size(), rate, lags.size() / secs, pct(0.5), pct(0.99),
        lags.empty() ? 0.0 : lags.back());
    return 0;
}
