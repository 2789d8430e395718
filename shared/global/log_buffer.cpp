// log_buffer: a daemon's stderr log without a synchronous write per line (mx-milter: one line
// per RCPT decision; mx-importer: one per file).
// The shared stderr logger (setup_logging) flushes every line: one write(2) per line, made
// while holding the logger's mutex (with 8 or 64 milter connections the libmilter workers
// queued behind each other's writes), and the "%P" pattern cost a getpid(2) per line. Here
// every line is still written (same format), formatted by its thread and appended to a buffer
// under a lock held only for the append;
// the buffer is written when it reaches 64 KiB, at any warning or error (flush_on(warn)), every
// second by the daemon's loop (flush_log) and when the logger goes away. What a crash (SIGKILL,
// power loss) can lose is at most the last second of info lines. syslog is left as it is
// (each syslog() call is its own message). Lines are formatted by daemon_line_formatter (the
// pattern below, without spdlog's generic pattern walk).
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>

#include "global/logging.hpp"

namespace mx {
namespace {

constexpr std::size_t buffer_limit = 64 * 1024;

// Each thread formats its lines itself, outside any lock, with its own copy of the formatter
// (spdlog's pattern_formatter caches the time text: one instance cannot serve two threads);
// only appending the finished line to the shared buffer is under the lock. spdlog's base_sink
// formats under its mutex: with 8 milter connections on 2 cores a thread preempted while
// formatting made the others sleep on the mutex (futex wait/wake on ~4 % of the decisions).
class buffered_fd_sink final : public spdlog::sinks::sink {
  public:
    explicit buffered_fd_sink(int fd) : fd_(fd) {
        buf_.reserve(buffer_limit + 1024);
        set_formatter(std::make_unique<spdlog::pattern_formatter>());
    }
    ~buffered_fd_sink() override {
        std::lock_guard lk(mu_);
        std::lock_guard wk(write_mu_);
        write_out(buf_);
    }

    void log(const spdlog::details::log_msg& msg) override {
        struct per_thread {
            std::uint64_t generation = 0;  // of the formatter cloned (unique for all sinks)
            std::unique_ptr<spdlog::formatter> formatter;
            spdlog::memory_buf_t line;
        };
        thread_local per_thread t;
        if (t.generation != generation_.load(std::memory_order_acquire)) {
            std::lock_guard lk(formatter_mu_);
            t.formatter = formatter_->clone();
            t.generation = generation_.load(std::memory_order_relaxed);
        }
        t.line.clear();
        t.formatter->format(msg, t.line);
        std::unique_lock lk(mu_);
        buf_.append(t.line.data(), t.line.size());
        if (buf_.size() >= buffer_limit) write_locked(lk);
    }
    void flush() override {
        std::unique_lock lk(mu_);
        write_locked(lk);
    }
    void set_pattern(const std::string& pattern) override {
        set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern));
    }
    void set_formatter(std::unique_ptr<spdlog::formatter> f) override {
        std::lock_guard lk(formatter_mu_);
        formatter_ = std::move(f);
        generation_.store(++generations, std::memory_order_release);
    }

  private:
    // Takes the buffered text (lk holds mu_) and writes it without holding mu_, so other
    // threads go on appending; write_mu_, taken before mu_ is let go, keeps the order of the
    // chunks on the fd.
    void write_locked(std::unique_lock<std::mutex>& lk) {
        if (buf_.empty()) return;  // the flush every second of a quiet daemon
        std::string out;
        out.reserve(buffer_limit + 1024);
        out.swap(buf_);
        std::lock_guard wk(write_mu_);
        lk.unlock();
        write_out(out);
    }
    // A failing stderr cannot be reported anywhere: drop the text rather than grow without
    // bound.
    void write_out(const std::string& text) noexcept {
        std::size_t off = 0;
        while (off < text.size()) {
            ssize_t n = ::write(fd_, text.data() + off, text.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
    }

    static inline std::atomic<std::uint64_t> generations{0};
    int fd_;
    std::mutex mu_;        // buf_
    std::mutex write_mu_;  // the fd (order of the chunks)
    std::string buf_;
    std::mutex formatter_mu_;  // formatter_ (cloned by each thread once per generation)
    std::unique_ptr<spdlog::formatter> formatter_;
    std::atomic<std::uint64_t> generation_{0};
};

// The daemon line format, "%Y-%m-%dT%H:%M:%S.%e%z <prefix>: %l: %v", written directly: the
// date text and the UTC offset are made once per second, then each line is a few appends.
// spdlog's pattern_formatter, walking one flag formatter per field, was ~1,500 instructions
// of a milter decision's ~20,000 (callgrind). Same bytes as the pattern (test_log_buffer.cpp
// compares them).
class daemon_line_formatter final : public spdlog::formatter {
  public:
    explicit daemon_line_formatter(std::string prefix) : prefix_(std::move(prefix)) {}

    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        auto since_epoch = msg.time.time_since_epoch();
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
        if (secs != cached_second_ || date_.empty()) cache_second(secs);
        auto millis = static_cast<unsigned>(
            std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - secs).count());
        char ms[4] = {'.', static_cast<char>('0' + millis / 100),
                      static_cast<char>('0' + millis / 10 % 10),
                      static_cast<char>('0' + millis % 10)};
        dest.append(date_.data(), date_.data() + date_.size());
        dest.append(ms, ms + 4);
        dest.append(offset_.data(), offset_.data() + offset_.size());
        dest.push_back(' ');
        dest.append(prefix_.data(), prefix_.data() + prefix_.size());
        dest.append(std::string_view(": "));
        auto level = spdlog::level::to_string_view(msg.level);
        dest.append(level.data(), level.data() + level.size());
        dest.append(std::string_view(": "));
        dest.append(msg.payload.data(), msg.payload.data() + msg.payload.size());
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<daemon_line_formatter>(prefix_);
    }

  private:
    void cache_second(std::chrono::seconds secs) {
        cached_second_ = secs;
        std::time_t t = static_cast<std::time_t>(secs.count());
        std::tm tm{};
        ::localtime_r(&t, &tm);
        char buf[32];
        std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
        date_.assign(buf, n);
        long minutes = tm.tm_gmtoff / 60;
        char sign = minutes < 0 ? '-' : '+';
        if (minutes < 0) minutes = -minutes;
        char off[8];
        std::snprintf(off, sizeof off, "%c%02ld:%02ld", sign, minutes / 60 % 100, minutes % 60);
        offset_ = off;
    }

    std::string prefix_;  // "<program>[<pid>]"
    std::chrono::seconds cached_second_{0};
    std::string date_;
    std::string offset_;
};

}  // namespace

std::unique_ptr<spdlog::formatter> make_daemon_line_formatter(const std::string& prefix) {
    return std::make_unique<daemon_line_formatter>(prefix);
}

void use_buffered_stderr_log(const std::string& program) {
    auto old = spdlog::default_logger();
    auto sink = std::make_shared<buffered_fd_sink>(STDERR_FILENO);
    auto logger = std::make_shared<spdlog::logger>(program + "-buffered", std::move(sink));
    // Same line format as setup_logging's, with the pid written once instead of per line.
    logger->set_formatter(
        make_daemon_line_formatter(program + "[" + std::to_string(::getpid()) + "]"));
    logger->set_level(old ? old->level() : spdlog::level::info);
    logger->flush_on(spdlog::level::warn);
    if (old) old->flush();
    spdlog::set_default_logger(std::move(logger));
}

void flush_log() noexcept {
    try {
        spdlog::default_logger()->flush();
    } catch (...) {
    }
}

}  // namespace mx
