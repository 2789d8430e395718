// log_buffer (global/logging.hpp use_buffered_stderr_log): lines formatted by many threads at
// once reach stderr each exactly once, whole (never two lines interleaved), in each thread's
// order; a pattern set later applies to every thread's next line; flush_log() writes what
// waits. Runs in the ThreadSanitizer pass (label tsan).
#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "global/logging.hpp"

namespace {

// stderr goes to a file while the test runs.
struct captured_stderr {
    std::filesystem::path path;
    int saved = -1;
    captured_stderr() {
        path = std::filesystem::temp_directory_path() /
               ("mx-log-buffer-" + std::to_string(::getpid()) + ".txt");
        int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(fd >= 0);
        saved = ::dup(STDERR_FILENO);
        ::dup2(fd, STDERR_FILENO);
        ::close(fd);
    }
    ~captured_stderr() {
        mx::flush_log();
        ::dup2(saved, STDERR_FILENO);
        ::close(saved);
        std::filesystem::remove(path);
    }
    std::vector<std::string> lines() const {
        std::ifstream in(path);
        std::vector<std::string> out;
        for (std::string l; std::getline(in, l);) out.push_back(l);
        return out;
    }
};

}  // namespace

TEST_CASE("buffered stderr log: concurrent lines whole, once each, in order", "[log]") {
    auto previous = spdlog::default_logger();
    {
        captured_stderr cap;
        mx::use_buffered_stderr_log("mx-test");
        constexpr int threads = 8, per_thread = 5000;  // > 64 KiB: the buffer is written often
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t)
            ts.emplace_back([t] {
                for (int i = 0; i < per_thread; ++i)
                    spdlog::info("thread={} line={} {}", t, i, std::string(40, 'x'));
            });
        for (auto& th : ts) th.join();
        mx::flush_log();
        std::map<int, int> next;  // thread -> next line number expected
        std::size_t count = 0;
        for (const auto& l : cap.lines()) {
            if (l.find("thread=") == std::string::npos) continue;
            ++count;
            INFO(l);
            REQUIRE(l.find(" mx-test[") != std::string::npos);
            REQUIRE(l.find("]: info: thread=") != std::string::npos);
            int t = -1, i = -1;
            REQUIRE(std::sscanf(l.c_str() + l.find("thread="), "thread=%d line=%d", &t, &i) == 2);
            REQUIRE(l.size() - l.find(" line=") ==
                    std::string(" line=").size() + std::to_string(i).size() + 41);
            REQUIRE(i == next[t]);
            next[t] = i + 1;
        }
        CHECK(count == std::size_t{threads} * per_thread);

        // A new pattern reaches a thread that formatted with the old one before.
        spdlog::info("before main");
        spdlog::default_logger()->set_pattern("NEW %v");
        std::vector<std::thread> again;
        for (int t = 0; t < 2; ++t) again.emplace_back([t] { spdlog::info("after t{}", t); });
        for (auto& th : again) th.join();
        spdlog::info("after main");
        mx::flush_log();
        auto all = cap.lines();
        CHECK(std::count(all.begin(), all.end(), "NEW after t0") == 1);
        CHECK(std::count(all.begin(), all.end(), "NEW after t1") == 1);
        CHECK(std::count(all.begin(), all.end(), "NEW after main") == 1);
    }
    spdlog::set_default_logger(previous);
}
