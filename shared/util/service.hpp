// service: the daemons' side of systemd's service protocol (sd_notify(3)).
//
// What it is: thin, never-throwing wrappers around libsystemd's sd_notify() for the messages
// a Type=notify unit needs: READY=1 once the sockets are open and privileges dropped,
// STOPPING=1 when shutdown starts, WATCHDOG=1 from the main loop, STATUS= for
// `systemctl status`.
// Promises: every call is a cheap no-op when NOTIFY_SOCKET is unset (started by hand, by
// scripts/mx-stack or by tests), so the daemons have one code path; nothing here blocks, and a
// failing notification is ignored (systemd's start timeout is the safety net, not us).
// Security: the notification socket path comes from the environment systemd sets; STATUS texts
// are made single-line here so hostile values cannot inject extra KEY=VALUE assignments.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string_view>

namespace mx::util::service {

// True when a service manager listens (NOTIFY_SOCKET set).
bool supervised() noexcept;
// READY=1 (and STATUS=<status> when given). Idempotent: only the first call sends.
void notify_ready(std::string_view status = {}) noexcept;
// STOPPING=1 (and STATUS=<status> when given).
void notify_stopping(std::string_view status = {}) noexcept;
// STATUS=<status> alone.
void notify_status(std::string_view status) noexcept;
// WATCHDOG=1 when the unit has WatchdogSec= set, at most every half watchdog interval
// (callers may call it on every loop turn).
void notify_watchdog() noexcept;
// The interval the unit wants WATCHDOG=1 within (sd_watchdog_enabled), nullopt when none.
std::optional<std::chrono::microseconds> watchdog_interval() noexcept;

// The text that notify_status() would send (single line, capped): exposed for tests.
std::string_view sanitize_status(std::string_view status, char* buf, std::size_t cap) noexcept;

}  // namespace mx::util::service
