#include "global/logging.hpp"

#include <syslog.h>

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
