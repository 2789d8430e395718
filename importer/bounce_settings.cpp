// bounce_settings: the [bounce] settings, the per-sender rate limiter, the group key of a job
// and the importer's periodic task that runs the bounce sender on a thread of its own (see
// bounce_sender.hpp).
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "bounce_sender.hpp"
#include "global/config_reader.hpp"
#include "global/mail_header.hpp"
#include "util/fs.hpp"

namespace mx {
namespace {

std::string fnv_hex(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

}  // namespace

bounce_settings bounce_settings::from(const config& cfg) {
    bounce_settings s;
    config_reader r(cfg, "bounce");
    constexpr std::int64_t day = 86400;
    s.enabled = r.boolean("enabled", s.enabled);
    s.subject = r.string("subject", s.subject);
    if (s.subject.find_first_of("\r\n") != std::string::npos) r.fail("subject", "one line");
    s.human_template = r.string("template", s.human_template);
    if (auto p = r.path("template_file", {}); !p.empty()) {
        try {
            s.human_template = util::read_file(p);
        } catch (const std::exception& e) {
            r.fail("template_file", "cannot read " + p.string() + ": " + e.what());
        }
    }
    s.from_display = r.string("from_name", s.from_display);
    s.size_limit = static_cast<std::size_t>(r.integer(
        "size_limit", static_cast<std::int64_t>(s.size_limit), 1024, std::int64_t{1} << 30));
    s.coalesce_seconds = r.integer("coalesce_seconds", s.coalesce_seconds, 0, day);
    s.retry_min_seconds = r.integer("retry_min_seconds", s.retry_min_seconds, 1, 30 * day);
    s.retry_max_seconds =
        r.integer("retry_max_seconds", std::max(s.retry_max_seconds, s.retry_min_seconds),
                  s.retry_min_seconds, 30 * day);
    s.max_age_seconds = r.integer("max_age_seconds", s.max_age_seconds, 1, 3650 * day);
    if (r.has("max_age_days")) s.max_age_seconds = r.integer("max_age_days", 0, 1, 3650) * day;
    s.rate_limit = static_cast<int>(r.integer("rate_limit", s.rate_limit, 0, 1000000));
    s.rate_window_seconds = r.integer("rate_window_seconds", s.rate_window_seconds, 1, 30 * day);
    s.done_retention_seconds =
        r.integer("done_retention_days", s.done_retention_seconds / day, 0, 3650) * day;
    s.run_budget_seconds = r.integer("run_budget_seconds", s.run_budget_seconds, 1, 3600);
    return s;
}

std::int64_t bounce_settings::backoff(int attempts) const {
    std::int64_t d = retry_min_seconds;
    for (int i = 1; i < attempts && d < retry_max_seconds; ++i) d *= 2;
    return std::min(d, retry_max_seconds);
}

bool bounce_rate_limiter::allow(const std::string& sender, std::int64_t now) {
    if (limit_ <= 0) return true;
    auto& q = hits_[mail::to_lower(sender)];
    while (!q.empty() && q.front() <= now - window_) q.pop_front();
    if (static_cast<int>(q.size()) >= limit_) return false;
    q.push_back(now);
    if (hits_.size() > 100000) {  // forget idle senders so memory stays bounded
        for (auto it = hits_.begin(); it != hits_.end();)
            it = (it->second.empty() || it->second.back() <= now - window_) ? hits_.erase(it)
                                                                            : std::next(it);
    }
    return true;
}

std::string bounce_group_key(const bounce_job& job) {
    std::string base = job.fingerprint.empty() ? job.message_path : job.fingerprint;
    return fnv_hex(base + '\0' + mail::to_lower(job.envelope_sender));
}

std::function<void()> bounce_sender_tick(const config& cfg) {
    // The run goes on a thread of its own: SMTP timeouts never hold up the importer's loop.
    // A tick while the previous run is still going does nothing.
    struct holder {
        std::optional<shm_state> shm;
        std::unique_ptr<bounce_sender> sender;
        std::thread runner;
        std::atomic<bool> running{false};
        ~holder() {
            if (runner.joinable()) runner.join();
        }
    };
    auto h = std::make_shared<holder>();
    return [&cfg, h] {
        if (h->running.load()) return;
        if (h->runner.joinable()) h->runner.join();
        if (!h->sender) {
            try {
                h->shm.emplace(shm_state::attach(cfg));
            } catch (const std::exception& e) {
                spdlog::warn("bounce: no shared memory counters: {}", e.what());
            }
            h->sender =
                std::make_unique<bounce_sender>(cfg, nullptr, h->shm ? &*h->shm : nullptr, nullptr);
        }
        h->running = true;
        h->runner = std::thread([h = h.get()] {
            try {
                h->sender->run_once();
            } catch (const std::exception& e) {
                spdlog::error("bounce: run failed: {}", e.what());
            }
            h->running = false;
        });
    };
}

}  // namespace mx
