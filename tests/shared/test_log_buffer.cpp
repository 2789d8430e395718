// log_buffer (global/logging.hpp use_buffered_stderr_log): lines formatted by many threads at
// once reach stderr each exactly once, whole (never two lines interleaved), in each thread's
// order; a pattern set later applies to every thread's next line; flush_log() writes what
// waits. Runs in the ThreadSanitizer pass (label tsan).
#include <fcntl.h>
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
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

TEST_CASE("daemon line formatter: the same bytes as spdlog's pattern", "[log]") {
    const std::string prefix = "mx-test[4242]";
    spdlog::pattern_formatter pattern("%Y-%m-%dT%H:%M:%S.%e%z " + prefix + ": %l: %v");
    auto fast = mx::make_daemon_line_formatter(prefix);
    auto copy = fast->clone();
    using namespace std::chrono;
    // Times across second, minute and year boundaries, every millisecond digit, each level;
    // each formatter sees them in the same order (both cache per second).
    const auto base = spdlog::log_clock::time_point(seconds(1767225599));  // 2025-12-31T23:59:59Z
    std::vector<spdlog::log_clock::time_point> times;
    for (int ms : {0, 1, 9, 10, 99, 100, 500, 999, 1000, 1001, 1999, 61'000, 3'600'007})
        times.push_back(base + milliseconds(ms));
    times.push_back(spdlog::log_clock::now());
    const spdlog::level::level_enum levels[] = {spdlog::level::trace, spdlog::level::debug,
                                                spdlog::level::info,  spdlog::level::warn,
                                                spdlog::level::err,   spdlog::level::critical};
    int n = 0;
    for (auto t : times)
        for (auto lvl : levels) {
            std::string text = "msg " + std::to_string(n++) + " rcpt=<a@b> reason=x";
            spdlog::details::log_msg msg(t, spdlog::source_loc{}, "logger", lvl, text);
            spdlog::memory_buf_t want, got, got_copy;
            pattern.format(msg, want);
            fast->format(msg, got);
            copy->format(msg, got_copy);
            INFO(std::string(want.data(), want.size()));
            CHECK(std::string(got.data(), got.size()) == std::string(want.data(), want.size()));
            CHECK(std::string(got_copy.data(), got_copy.size()) ==
                  std::string(want.data(), want.size()));
        }
}

TEST_CASE("log_clean: exactly the values log_safe leaves as they are", "[log]") {
    auto bytewise = [](std::string_view v) {
        for (unsigned char c : v)
            if (c < 0x20 || c == 0x7f) return false;
        return true;
    };
    // Every byte value at every position of strings of every length up to 24 (the word-wise
    // part and the tail), over backgrounds of ASCII, UTF-8 continuation and 0xff bytes (a
    // borrow across bytes must not hide or invent a control character).
    for (char fill : {'a', '\x80', '\xff', '~', ' '})
        for (std::size_t len = 1; len <= 24; ++len)
            for (std::size_t pos = 0; pos < len; ++pos)
                for (int b = 0; b < 256; ++b) {
                    std::string s(len, fill);
                    s[pos] = static_cast<char>(b);
                    INFO("fill " << int(static_cast<unsigned char>(fill)) << " len " << len
                                 << " pos " << pos << " byte " << b);
                    REQUIRE(mx::log_clean(s) == bytewise(s));
                    if (mx::log_clean(s)) REQUIRE(mx::log_safe(s, 256) == s);
                }
    CHECK(mx::log_clean(""));
    CHECK_FALSE(mx::log_clean(std::string("ok\0ok", 5)));
}
