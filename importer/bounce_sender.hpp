// bounce_sender: turns the importer's spooled bounce jobs (<state_dir>/bounces/new/*.json,
// global/bounce_job.hpp) into RFC 3464 non-delivery reports sent over SMTP.
//
// What run_once() promises (called periodically from mx-importer's main loop):
// - Jobs of one (message fingerprint, envelope sender) are coalesced into ONE DSN listing all
//   failed recipients; a job waits coalesce_seconds after it was spooled for its siblings.
// - No DSN for a null sender, Auto-Submitted other than "no", DSN inputs, MAILER-DAEMON /
//   owner-* / *-request senders, or beyond the per-sender rate limit: each such job is
//   logged with the reason, counted (bounces_suppressed) and recorded as "suppressed".
// - Sending failures that may heal (connection, TLS, authentication, 4xx) are retried with
//   exponential backoff; the schedule lives in <spool>/state/<key>.json, so it survives
//   restarts. A server that failed is not contacted again in the same run (no retry storm).
//   After max_age_seconds the bounce is given up with a log line ("failed").
//   A 5xx rejection of the DSN itself is final ("failed").
// - The outcome is written into the failure's reason JSON ("bounce": state pending | sent |
//   suppressed | failed, detail, time, attempts, ...) atomically, then the job moves to
//   <spool>/done/ (pruned after done_retention_seconds). Bad job files go to <spool>/bad/.
// - Delivery is at-least-once: if the process dies after the server accepted a DSN but before
//   the outcome was recorded, the DSN is sent again after the restart (never lost).
// - Each connector's reports go through their own worker (up to max_route_threads at once), so
//   one SMTP route that hangs or fails delays its own connector's reports only; the run itself
//   goes on a thread of its own (bounce_sender_tick), never in the importer's loop. Each worker
//   is bounded by run_budget_seconds.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "global/bounce_job.hpp"
#include "global/config.hpp"
#include "global/dsn.hpp"
#include "global/mail_header.hpp"
#include "global/secrets.hpp"
#include "global/shm_state.hpp"
#include "global/smtp_submit.hpp"
#include "global/store.hpp"

namespace mx {

struct bounce_settings {
    bool enabled = true;
    std::string subject = dsn::default_subject;
    std::string human_template = dsn::default_template;
    std::string from_display = "Mail Delivery System";
    std::size_t size_limit = dsn::default_size_limit;
    std::int64_t coalesce_seconds = 5;
    std::int64_t retry_min_seconds = 300;   // like Postfix minimal_backoff_time
    std::int64_t retry_max_seconds = 4000;  // like Postfix maximal_backoff_time
    std::int64_t max_age_seconds = 5 * 86400;
    int rate_limit = 10;  // DSNs per sender per rate_window_seconds; 0: unlimited
    std::int64_t rate_window_seconds = 3600;
    std::int64_t done_retention_seconds = 7 * 86400;
    std::int64_t run_budget_seconds = 20;

    // [bounce] keys: enabled, subject, template, template_file, from_name, size_limit,
    // coalesce_seconds, retry_min_seconds, retry_max_seconds, max_age_seconds (or
    // max_age_days), rate_limit, rate_window_seconds, done_retention_days, run_budget_seconds.
    static bounce_settings from(const config& cfg);
    // Delay before attempt number `attempts + 1` after `attempts` failed ones.
    std::int64_t backoff(int attempts) const;
};

// Per-sender sliding-window limiter (in memory: a restart forgets the window).
class bounce_rate_limiter {
  public:
    bounce_rate_limiter(int limit, std::int64_t window) : limit_(limit), window_(window) {}
    // Records one DSN for `sender` at `now` if allowed; false when over the limit.
    bool allow(const std::string& sender, std::int64_t now);

  private:
    int limit_;
    std::int64_t window_;
    std::map<std::string, std::deque<std::int64_t>> hits_;
};

// Connectors whose reports are sent at once in one run.
constexpr std::size_t max_route_threads = 8;

struct bounce_run_stats {
    int sent = 0, suppressed = 0, failed = 0, deferred = 0, waiting = 0, bad = 0;
};

class bounce_sender {
  public:
    using clock_fn = std::function<std::int64_t()>;

    // store/shm/secrets may be null: the sender then opens its own store and secret store
    // (and counts nothing without shm). `now` is injectable for tests.
    bounce_sender(const config& cfg, store* st, shm_state* shm, secret_store* secrets,
                  clock_fn now = {});
    ~bounce_sender();

    bounce_run_stats run_once();
    const bounce_settings& settings() const { return settings_; }
    std::filesystem::path spool() const { return spool_; }

  private:
    struct loaded_job {
        std::filesystem::path path;
        bounce_job job;
    };
    struct group_state {
        std::string key, fingerprint, sender, connector;
        int attempts = 0;
        std::int64_t first_seen = 0, next_attempt = 0, last_attempt = 0;
        std::string last_error;
        bool in_flight = false;
    };

    // Who sends a group's report: the connector (may have been removed since: then the
    // installation default, no auth), its bounce sender and the secrets it needs.
    struct identity {
        std::optional<connector> conn;
        std::optional<mailbox> sender_mb;
        std::string from_header;
        secret_store* secrets = nullptr;
    };

    void process(const std::string& key, std::vector<loaded_job>& jobs, bounce_run_stats& st,
                 std::map<std::string, std::int64_t>& pending);
    // First attempt of a group: the reason not to send at all, if any.
    std::optional<std::string> suppression(const std::string& sender,
                                           const mail::header_block& headers, std::int64_t now);
    identity identity_for(const std::string& connector);
    dsn::input report_for(const std::vector<loaded_job>& jobs, const std::string& sender,
                          const std::string& from_header,
                          const std::optional<std::string>& original, std::int64_t now) const;
    void finish(const std::string& key, std::vector<loaded_job>& jobs, const std::string& state,
                const std::string& detail, int attempts, const nlohmann::json& extra);
    void record(const bounce_job& job, const nlohmann::json& bounce);
    std::optional<group_state> load_state(const std::string& key);
    void save_state(const group_state& s);
    void prune_done();
    store& the_store();
    secret_store* the_secrets();
    void count(const std::string& connector, bool sent);
    bool limiter_allow(const std::string& sender, std::int64_t now);
    bool server_down(const std::string& server);

    const config& cfg_;
    bounce_settings settings_;
    std::filesystem::path spool_;
    store* store_;
    std::optional<store> own_store_;
    shm_state* shm_;
    secret_store* secrets_;
    std::optional<secret_store> own_secrets_;
    bool secrets_tried_ = false;
    clock_fn now_;
    bounce_rate_limiter limiter_;
    // Guards what the per-connector workers of a run share: the limiter, the down servers,
    // the lazily opened store and secret store.
    std::mutex mu_;
    std::set<std::string> down_servers_;  // failed during the current run
    std::set<std::string> gauged_connectors_;
    std::int64_t last_prune_ = 0;
};

// For importer/main.cpp: a periodic task body that owns a bounce_sender (opened lazily).
std::function<void()> bounce_sender_tick(const config& cfg);

// Group key of a job: stable hex of (fingerprint or message path, lower-cased sender).
std::string bounce_group_key(const bounce_job& job);

}  // namespace mx
