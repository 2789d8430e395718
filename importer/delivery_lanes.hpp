// delivery_lanes: a small thread pool with one serial lane per key (the import target), so a
// slow or hanging target holds up its own lane only.
//
// Promises: jobs of one key run one at a time in submission order; jobs of different keys run
// at once on up to `threads` threads; keys that have work take turns (round-robin), so one
// busy key never starves the others. The destructor waits for the running jobs and drops the
// queued ones.
// Jobs must not throw (an escaping exception is logged and swallowed).
// Cost: a batch's jobs go in under one lock with one wake-up per thread needed (submit_all),
// and a thread that finishes a job goes on with the same lane while no other lane waits, so a
// run of Maildir links (microseconds each) costs no thread hand-off per job.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mx::importer {

class delivery_lanes {
  public:
    explicit delivery_lanes(std::size_t threads) : max_threads_(threads ? threads : 1) {}
    delivery_lanes(const delivery_lanes&) = delete;
    delivery_lanes& operator=(const delivery_lanes&) = delete;
    ~delivery_lanes() noexcept;
    void submit(const std::string& key, std::function<void()> job);
    // All of `jobs` at once, in order per key (one lock, one notify per thread to wake).
    void submit_all(std::vector<std::pair<std::string, std::function<void()>>> jobs);

  private:
    void work();
    // Under mu_: queues one job; true when its key became ready (needs a thread).
    bool enqueue(const std::string& key, std::function<void()> job);
    // Under mu_: wakes (or starts) threads for `n` newly ready keys.
    void wake(std::size_t n);
    std::size_t max_threads_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, std::deque<std::function<void()>>> lanes_;
    std::deque<std::string> ready_;  // keys with queued jobs and no job running
    std::size_t idle_ = 0;
    bool stop_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace mx::importer
