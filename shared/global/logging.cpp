#include "global/logging.hpp"

#include <syslog.h>

#include <cstdint>
#include <cstring>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

namespace mx {

void setup_logging(const config& cfg, const std::string& program) {
    std::shared_ptr<spdlog::logger> logger;
    if (cfg.log_sink == "syslog") {
        logger = spdlog::syslog_logger_mt(program, program, LOG_PID, LOG_MAIL);
        logger->set_pattern("%v");
    } else {
        logger = spdlog::stderr_logger_mt(program + "-stderr");
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z " + program + "[%P]: %l: %v");
    }
    logger->set_level(spdlog::level::from_str(cfg.log_level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
}

// Eight bytes per step: the milter checks ~150 bytes per decision, nearly always clean, and a
// byte loop was ~5 % of a decision's instructions. For a word x, (x - n*0x01..01) & ~x &
// 0x80..80 is non-zero exactly when some byte of x is below n (n <= 0x80; the "hasless" test of
// Bit Twiddling Hacks); DEL is a byte below 1 of x ^ 0x7f..7f. The tail goes byte by byte.
bool log_clean(std::string_view v) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    auto below = [](std::uint64_t x, std::uint64_t n) { return (x - ones * n) & ~x & highs; };
    std::size_t i = 0;
    std::uint64_t bad = 0;
    for (; i + 8 <= v.size(); i += 8) {
        std::uint64_t x;
        std::memcpy(&x, v.data() + i, 8);
        bad |= below(x, 0x20) | below(x ^ (ones * 0x7f), 1);
    }
    for (; i < v.size(); ++i) {
        auto c = static_cast<unsigned char>(v[i]);
        bad |= static_cast<std::uint64_t>(c < 0x20 || c == 0x7f);
    }
    return bad == 0;
}

std::string log_safe(std::string_view v, std::size_t max_len) {
    std::string out;
    out.reserve(std::min(v.size(), max_len) + 8);
    for (unsigned char c : v) {
        if (out.size() >= max_len) {
            out += "...";
            break;
        }
        if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

}  // namespace mx
