// delivery_lanes: serial lanes per key on a small thread pool (see delivery_lanes.hpp).
#include "delivery_lanes.hpp"

#include <algorithm>
#include <exception>
#include <optional>

#include <spdlog/spdlog.h>

namespace mx::importer {

delivery_lanes::~delivery_lanes() noexcept {
    {
        // Queued jobs are dropped (their files stay claimed with pending records: the next
        // start recovers them); only the running ones are waited for, each bounded by its
        // target's timeout.
        std::lock_guard lk(mu_);
        stop_ = true;
        // (A running job is already out of its queue; its lane entry stays for its worker.)
        for (auto& [key, q] : lanes_) q.clear();
        for (const auto& key : ready_) lanes_.erase(key);
        ready_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

bool delivery_lanes::enqueue(const std::string& key, std::function<void()> job) {
    auto [it, fresh] = lanes_.try_emplace(key);
    it->second.push_back(std::move(job));
    // A key is in ready_ when it has jobs and none running; a running key re-queues itself.
    if (fresh) ready_.push_back(key);
    return fresh;
}

void delivery_lanes::wake(std::size_t n) {
    // Threads start on demand, up to the limit (most batches use one or two).
    std::size_t waking = std::min(n, idle_);
    while (waking < n && threads_.size() < max_threads_) {
        threads_.emplace_back([this] { work(); });
        ++waking;
    }
    for (std::size_t i = 0; i < std::min(n, idle_); ++i) cv_.notify_one();
}

void delivery_lanes::submit(const std::string& key, std::function<void()> job) {
    std::lock_guard lk(mu_);
    wake(enqueue(key, std::move(job)) ? 1 : 0);
}

void delivery_lanes::submit_all(std::vector<std::pair<std::string, std::function<void()>>> jobs) {
    std::lock_guard lk(mu_);
    std::size_t fresh = 0;
    for (auto& [key, job] : jobs) fresh += enqueue(key, std::move(job));
    wake(fresh);
}

void delivery_lanes::work() {
    std::unique_lock lk(mu_);
    std::optional<std::string> key;  // the lane this thread is running
    for (;;) {
        if (!key) {
            ++idle_;
            cv_.wait(lk, [&] { return !ready_.empty() || (stop_ && lanes_.empty()); });
            --idle_;
            if (ready_.empty()) return;  // stopping, everything done
            key = std::move(ready_.front());
            ready_.pop_front();
        }
        auto lane = lanes_.find(*key);
        auto job = std::move(lane->second.front());
        lane->second.pop_front();
        lk.unlock();
        try {
            job();
        } catch (const std::exception& e) {
            spdlog::error("delivery lane: job failed: {}", e.what());
        } catch (...) {
            spdlog::error("delivery lane: job failed");
        }
        lk.lock();
        lane = lanes_.find(*key);
        if (lane->second.empty()) {
            lanes_.erase(lane);
            key.reset();
            if (stop_ && lanes_.empty()) cv_.notify_all();
        } else if (!ready_.empty() || stop_) {
            ready_.push_back(std::move(*key));  // behind the other keys: turns
            key.reset();
            if (idle_ > 0) cv_.notify_one();
        }
        // Otherwise no other lane waits: this thread goes on with the same one.
    }
}

}  // namespace mx::importer
