// delivery_lanes: a small thread pool with one serial lane per key (the import target), so a
// slow or hanging target holds up its own lane only.
//
// Promises: jobs of one key run one at a time in submission order; jobs of different keys run
// at once on up to `threads` threads; keys that have work take turns (round-robin), so one
// busy key never starves the others. The destructor waits for the running jobs and drops the
// queued ones.
// Jobs must not throw (an escaping exception is logged and swallowed).
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

  private:
    void work();
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
