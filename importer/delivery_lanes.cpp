// delivery_lanes: serial lanes per key on a small thread pool (see delivery_lanes.hpp).
#include "delivery_lanes.hpp"

#include <exception>

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

void delivery_lanes::submit(const std::string& key, std::function<void()> job) {
    std::lock_guard lk(mu_);
    auto [it, fresh] = lanes_.try_emplace(key);
    it->second.push_back(std::move(job));
    // A key is in ready_ when it has jobs and none running; a running key re-queues itself.
    if (fresh) ready_.push_back(key);
    // Threads start on demand, up to the limit (most batches use one or two).
    if (idle_ == 0 && threads_.size() < max_threads_) threads_.emplace_back([this] { work(); });
    cv_.notify_one();
}

void delivery_lanes::work() {
    std::unique_lock lk(mu_);
    for (;;) {
        ++idle_;
        cv_.wait(lk, [&] { return !ready_.empty() || (stop_ && lanes_.empty()); });
        --idle_;
        if (ready_.empty()) return;  // stopping, everything done
        std::string key = std::move(ready_.front());
        ready_.pop_front();
        auto lane = lanes_.find(key);
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
        lane = lanes_.find(key);
        if (lane->second.empty()) {
            lanes_.erase(lane);
            if (stop_ && lanes_.empty()) cv_.notify_all();
        } else {
            ready_.push_back(key);  // behind the other keys: turns
            cv_.notify_one();
        }
    }
}

}  // namespace mx::importer
