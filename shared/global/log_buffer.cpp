// log_buffer: a daemon's stderr log without a synchronous write per line (mx-milter: one line
// per RCPT decision; mx-importer: one per file).
// The shared stderr logger (setup_logging) flushes every line: one write(2) per line, made
// while holding the logger's mutex (with 8 or 64 milter connections the libmilter workers
// queued behind each other's writes), and the "%P" pattern cost a getpid(2) per line. Here
// every line is still written (same format), appended to a buffer under the lock;
// the buffer is written when it reaches 64 KiB, at any warning or error (flush_on(warn)), every
// second by the daemon's loop (flush_log) and when the logger goes away. What a crash (SIGKILL,
// power loss) can lose is at most the last second of info lines. syslog is left as it is
// (each syslog() call is its own message).
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <memory>
#include <mutex>
#include <string>

#include "global/logging.hpp"

namespace mx {
namespace {

constexpr std::size_t buffer_limit = 64 * 1024;

class buffered_fd_sink final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    explicit buffered_fd_sink(int fd) : fd_(fd) { buf_.reserve(buffer_limit + 1024); }
    ~buffered_fd_sink() override {
        std::lock_guard lk(mutex_);
        write_out();
    }

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t formatted;
        formatter_->format(msg, formatted);
        buf_.append(formatted.data(), formatted.size());
        if (buf_.size() >= buffer_limit) write_out();
    }
    void flush_() override { write_out(); }

  private:
    // Called with mutex_ held. A failing stderr cannot be reported anywhere: drop the text
    // rather than grow without bound.
    void write_out() noexcept {
        std::size_t off = 0;
        while (off < buf_.size()) {
            ssize_t n = ::write(fd_, buf_.data() + off, buf_.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        buf_.clear();
    }

    int fd_;
    std::string buf_;
};

}  // namespace

void use_buffered_stderr_log(const std::string& program) {
    auto old = spdlog::default_logger();
    auto sink = std::make_shared<buffered_fd_sink>(STDERR_FILENO);
    auto logger = std::make_shared<spdlog::logger>(program + "-buffered", std::move(sink));
    // Same line format as setup_logging's, with the pid written once instead of per line.
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z " + program + "[" + std::to_string(::getpid()) +
                        "]: %l: %v");
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
