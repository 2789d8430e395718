// logging: spdlog set-up shared by the daemons and mxctl.
//
// Promises: one call configures the default logger for stderr (journald captures it with the
// unit's identifier) or syslog (facility mail, like Postfix). Secrets are never passed to the
// logger by any caller; log lines are single-line (values from hostile input go through
// log_safe()).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "global/config.hpp"

namespace spdlog {
class formatter;
}

namespace mx {

void setup_logging(const config& cfg, const std::string& program);
// For daemons that log a line per mail event (log_buffer.cpp): after setup_logging(), replaces
// the stderr logger by one that buffers lines instead of writing each (same format); flushed
// at warn/error, at 64 KiB, by flush_log() — the daemon calls it every second — and at exit.
// What a SIGKILL loses is at most the last second of info lines. Not for the syslog sink.
void use_buffered_stderr_log(const std::string& program);
void flush_log() noexcept;
// The buffered log's line format: the same bytes as the pattern
// "%Y-%m-%dT%H:%M:%S.%e%z <prefix>: %l: %v" (prefix: "<program>[<pid>]"), made cheaper.
std::unique_ptr<spdlog::formatter> make_daemon_line_formatter(const std::string& prefix);
// Makes a hostile value safe for one log line: control characters escaped, length capped.
std::string log_safe(std::string_view value, std::size_t max_len = 256);
// Whether `value` has no control character (C0 or DEL): what log_safe() would leave as it is
// when short enough. For hot paths that log a value as it is when it is clean.
bool log_clean(std::string_view value) noexcept;

}  // namespace mx
