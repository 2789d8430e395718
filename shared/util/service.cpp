#include "util/service.hpp"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace mx::util::service {
namespace {

std::atomic<bool> g_ready_sent{false};
std::atomic<std::int64_t> g_last_watchdog_us{0};

std::int64_t monotonic_us() noexcept {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void send(std::string_view head, std::string_view status) noexcept {
    if (!supervised()) return;
    try {
        std::string msg(head);
        if (!status.empty()) {
            char buf[512];
            if (!msg.empty()) msg += '\n';
            msg += "STATUS=";
            msg += sanitize_status(status, buf, sizeof buf);
        }
        (void)sd_notify(0, msg.c_str());
    } catch (...) {
        // Allocation failure: a lost notification is harmless (see the header).
    }
}

}  // namespace

bool supervised() noexcept {
    const char* s = std::getenv("NOTIFY_SOCKET");
    return s && *s;
}

std::string_view sanitize_status(std::string_view status, char* buf, std::size_t cap) noexcept {
    if (cap == 0) return {};
    std::size_t n = 0;
    for (char c : status) {
        if (n + 1 >= cap) break;
        unsigned char u = static_cast<unsigned char>(c);
        buf[n++] = (u < 0x20 || u == 0x7f) ? ' ' : c;  // one line: no new KEY= assignments
    }
    buf[n] = '\0';
    return {buf, n};
}

void notify_ready(std::string_view status) noexcept {
    if (g_ready_sent.exchange(true)) return;
    send("READY=1", status);
}

void notify_stopping(std::string_view status) noexcept {
    send("STOPPING=1", status);
}

void notify_status(std::string_view status) noexcept {
    if (!status.empty()) send("", status);
}

std::optional<std::chrono::microseconds> watchdog_interval() noexcept {
    std::uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
    return std::chrono::microseconds(usec);
}

void notify_watchdog() noexcept {
    if (!supervised()) return;
    static const auto interval = watchdog_interval();
    if (!interval) return;
    std::int64_t now = monotonic_us();
    std::int64_t last = g_last_watchdog_us.load(std::memory_order_relaxed);
    if (last != 0 && now - last < interval->count() / 2) return;
    g_last_watchdog_us.store(now, std::memory_order_relaxed);
    (void)sd_notify(0, "WATCHDOG=1");
}

}  // namespace mx::util::service
