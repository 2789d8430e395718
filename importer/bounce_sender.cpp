#include "bounce_sender.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "global/address.hpp"
#include "global/logging.hpp"
#include "global/mail_compose.hpp"
#include "global/mail_header.hpp"
#include "util/fs.hpp"

namespace mx {
namespace {

std::int64_t wall_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Reads at most `cap` bytes: a DSN needs the whole message only when it is small.
std::optional<std::string> read_prefix(const std::filesystem::path& p, std::size_t cap) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return std::nullopt;
    std::string buf(cap, '\0');
    in.read(buf.data(), static_cast<std::streamsize>(cap));
    buf.resize(static_cast<std::size_t>(in.gcount()));
    return buf;
}

bool safe_id(std::string_view id) {
    return !id.empty() && id.size() < 200 && id.front() != '.' &&
           std::all_of(id.begin(), id.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                      c == '.';
           });
}

// The job's message is not in ImportFailed yet but still in the importer's work folder.
bool still_in_work(const bounce_job& job) {
    struct stat sb {};
    return !job.work_path.empty() && !job.message_path.empty() &&
           ::lstat(job.message_path.c_str(), &sb) != 0 && errno == ENOENT &&
           ::lstat(job.work_path.c_str(), &sb) == 0;
}

}  // namespace

bounce_sender::bounce_sender(const config& cfg, store* st, shm_state* shm, secret_store* secrets,
                             clock_fn now)
    : cfg_(cfg)
    , settings_(bounce_settings::from(cfg))
    , spool_(bounce_spool_dir(cfg))
    , store_(st)
    , shm_(shm)
    , secrets_(secrets)
    , now_(now ? std::move(now) : clock_fn(wall_now))
    , limiter_(settings_.rate_limit, settings_.rate_window_seconds) {}

bounce_sender::~bounce_sender() = default;

store& bounce_sender::the_store() {
    if (store_) return *store_;
    if (!own_store_) own_store_.emplace(store::open(cfg_, true));
    return *own_store_;
}

secret_store* bounce_sender::the_secrets() {
    if (secrets_) return secrets_;
    if (!secrets_tried_) {
        secrets_tried_ = true;
        try {
            own_secrets_.emplace(secret_store::open(cfg_, false));
        } catch (const std::exception& e) {
            spdlog::warn("bounce: secret store unavailable ({}); only unauthenticated SMTP works",
                         e.what());
        }
    }
    return own_secrets_ ? &*own_secrets_ : nullptr;
}

bool bounce_sender::limiter_allow(const std::string& sender, std::int64_t now) {
    std::lock_guard lk(mu_);
    return limiter_.allow(sender, now);
}

bool bounce_sender::server_down(const std::string& server) {
    std::lock_guard lk(mu_);
    return down_servers_.count(server) > 0;
}

void bounce_sender::count(const std::string& connector, bool sent) {
    if (!shm_) return;
    auto& c = shm_->counters(connector.empty() ? std::string("-") : connector);
    (sent ? c.bounces_sent : c.bounces_suppressed).fetch_add(1, std::memory_order_relaxed);
}

std::optional<bounce_sender::group_state> bounce_sender::load_state(const std::string& key) {
    auto p = spool_ / "state" / (key + ".json");
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return std::nullopt;
    try {
        auto j = nlohmann::json::parse(util::read_file(p));
        group_state s;
        s.key = key;
        s.fingerprint = j.value("fingerprint", "");
        s.sender = j.value("sender", "");
        s.connector = j.value("connector", "");
        s.attempts = j.value("attempts", 0);
        s.first_seen = j.value("first_seen", std::int64_t{0});
        s.next_attempt = j.value("next_attempt", std::int64_t{0});
        s.last_attempt = j.value("last_attempt", std::int64_t{0});
        s.last_error = j.value("last_error", "");
        s.in_flight = j.value("in_flight", false);
        return s;
    } catch (const std::exception& e) {
        spdlog::warn("bounce: unreadable retry state {} ({}); starting over", p.string(), e.what());
        return std::nullopt;
    }
}

void bounce_sender::save_state(const group_state& s) {
    util::make_dirs(spool_ / "state", 0750);
    nlohmann::json j = {{"fingerprint", s.fingerprint},   {"sender", s.sender},
                        {"connector", s.connector},       {"attempts", s.attempts},
                        {"first_seen", s.first_seen},     {"next_attempt", s.next_attempt},
                        {"last_attempt", s.last_attempt}, {"last_error", s.last_error},
                        {"in_flight", s.in_flight}};
    util::write_file_durable(spool_ / "state" / (s.key + ".json"), j.dump(), 0640);
}

void bounce_sender::record(const bounce_job& job, const nlohmann::json& bounce) {
    if (job.reason_path.empty()) return;
    std::filesystem::path p = job.reason_path;
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) {
        spdlog::warn("bounce {}: reason file {} is gone; outcome not recorded there", job.id,
                     log_safe(p.string()));
        return;
    }
    try {
        auto j = nlohmann::json::parse(util::read_file(p));
        if (!j.is_object()) throw std::runtime_error("not a JSON object");
        auto b = j.value("bounce", nlohmann::json::object());
        if (!b.is_object()) b = nlohmann::json::object();
        for (auto& [k, v] : bounce.items()) b[k] = v;
        j["bounce"] = b;
        struct stat sb {};
        unsigned mode = ::stat(p.c_str(), &sb) == 0 ? (sb.st_mode & 0777) : 0640;
        util::write_file_durable(p, j.dump(2) + "\n", mode);
    } catch (const std::exception& e) {
        spdlog::error("bounce {}: cannot record the outcome in {}: {}", job.id,
                      log_safe(p.string()), e.what());
    }
}

void bounce_sender::finish(const std::string& key, std::vector<loaded_job>& jobs,
                           const std::string& state, const std::string& detail, int attempts,
                           const nlohmann::json& extra) {
    auto now = now_();
    nlohmann::json b = {
        {"state", state}, {"detail", detail}, {"time", mail::iso8601(now)}, {"attempts", attempts}};
    for (auto& [k, v] : extra.items()) b[k] = v;
    if (state != "pending") b.erase("next_attempt");
    util::make_dirs(spool_ / "done", 0750);
    for (auto& lj : jobs) {
        record(lj.job, b);
        auto j = to_json(lj.job);
        j["outcome"] = b;
        util::write_file_durable(spool_ / "done" / lj.path.filename(), j.dump(), 0640);
        std::error_code ec;
        std::filesystem::remove(lj.path, ec);
    }
    try {
        util::fsync_dir(spool_ / "new");
    } catch (const std::exception&) {
    }
    std::error_code ec;
    std::filesystem::remove(spool_ / "state" / (key + ".json"), ec);
}

void bounce_sender::prune_done() {
    auto now = now_();
    if (now - last_prune_ < 3600) return;
    last_prune_ = now;
    std::error_code ec;
    auto cutoff = std::filesystem::file_time_type::clock::now() -
                  std::chrono::seconds(settings_.done_retention_seconds);
    for (auto& e : std::filesystem::directory_iterator(spool_ / "done", ec)) {
        std::error_code ec2;
        if (e.is_regular_file(ec2) && e.last_write_time(ec2) < cutoff)
            std::filesystem::remove(e.path(), ec2);
    }
}

bounce_run_stats bounce_sender::run_once() {
    bounce_run_stats st;
    down_servers_.clear();
    auto started = std::chrono::steady_clock::now();
    auto dir = spool_ / "new";
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) return st;

    std::map<std::string, std::vector<loaded_job>> groups;
    for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
        auto name = e.path().filename().string();
        if (name.empty() || name.front() == '.' || e.path().extension() != ".json") continue;
        try {
            auto j = nlohmann::json::parse(util::read_file(e.path()));
            auto job = bounce_job_from_json(j);
            if (!safe_id(job.id) || job.id + ".json" != name)
                throw std::runtime_error("job id does not match its file name");
            if (std::filesystem::exists(spool_ / "done" / name)) {  // finished before a crash
                std::filesystem::remove(e.path());
                continue;
            }
            if (still_in_work(job)) {
                // Spooled, then the importer died before it moved the file to ImportFailed:
                // its next try finishes the file (and spools the same id again). Sending now
                // would bounce without the original's headers (suppression reads them).
                ++st.waiting;
                continue;
            }
            groups[bounce_group_key(job)].push_back({e.path(), std::move(job)});
        } catch (const std::exception& ex) {
            ++st.bad;
            spdlog::error("bounce: unreadable job {} ({}); moved to {}", log_safe(name), ex.what(),
                          (spool_ / "bad").string());
            try {
                util::make_dirs(spool_ / "bad", 0750);
                util::rename_durable(e.path(), spool_ / "bad" / name);
            } catch (const std::exception&) {
            }
        }
    }

    // Oldest first, so a backlog drains in arrival order.
    std::vector<std::pair<std::int64_t, std::string>> order;
    for (auto& [k, v] : groups) {
        std::int64_t oldest = INT64_MAX;
        for (auto& lj : v) oldest = std::min(oldest, lj.job.created_time);
        order.emplace_back(oldest, k);
    }
    std::sort(order.begin(), order.end());
    // One worker per connector (each its own SMTP route, mostly): a route that hangs or fails
    // holds up its own connector's reports only. At most max_route_threads at once.
    std::map<std::string, std::vector<std::string>> by_connector;  // oldest first within
    for (auto& [oldest, key] : order)
        by_connector[groups[key].front().job.connector].push_back(key);
    std::map<std::string, std::int64_t> pending;  // connector -> waiting groups
    std::mutex merge_mu;
    auto run_connector = [&](const std::vector<std::string>& keys) {
        bounce_run_stats my;
        std::map<std::string, std::int64_t> my_pending;
        for (const auto& key : keys) {
            auto& jobs = groups[key];
            if (std::chrono::steady_clock::now() - started >
                std::chrono::seconds(settings_.run_budget_seconds)) {
                ++my.waiting;
                ++my_pending[jobs.front().job.connector];
                continue;
            }
            try {
                process(key, jobs, my, my_pending);
            } catch (const std::exception& e) {
                // A spool I/O error: the jobs stay in new/ and are tried again next run.
                spdlog::error("bounce {}: {}", jobs.front().job.id, e.what());
                ++my_pending[jobs.front().job.connector];
            }
        }
        std::lock_guard lk(merge_mu);
        st.sent += my.sent, st.suppressed += my.suppressed, st.failed += my.failed;
        st.deferred += my.deferred, st.waiting += my.waiting;
        for (auto& [c, n] : my_pending) pending[c] += n;
    };
    std::vector<const std::vector<std::string>*> work;
    for (auto& [c, keys] : by_connector) work.push_back(&keys);
    std::atomic<std::size_t> next{0};
    auto worker = [&] {
        for (std::size_t i; (i = next.fetch_add(1)) < work.size();) run_connector(*work[i]);
    };
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < std::min(work.size(), max_route_threads); ++i)
        threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
    if (shm_) {
        for (auto& c : gauged_connectors_)
            if (!pending.count(c)) shm_->counters(c.empty() ? "-" : c).bounces_pending.store(0);
        gauged_connectors_.clear();
        for (auto& [c, n] : pending) {
            shm_->counters(c.empty() ? "-" : c)
                .bounces_pending.store(static_cast<std::uint64_t>(n));
            gauged_connectors_.insert(c);
        }
    }
    prune_done();
    return st;
}

std::optional<std::string> bounce_sender::suppression(const std::string& sender,
                                                      const mail::header_block& headers,
                                                      std::int64_t now) {
    if (auto why = dsn::suppression_reason(sender, headers)) return why;
    if (!settings_.enabled) return "bounces are disabled ([bounce] enabled = false)";
    if (!limiter_allow(sender, now))
        return "per-sender rate limit (" + std::to_string(settings_.rate_limit) + " per " +
               std::to_string(settings_.rate_window_seconds) + " s) reached";
    return std::nullopt;
}

bounce_sender::identity bounce_sender::identity_for(const std::string& connector_name) {
    // The store and the secret store open lazily and are shared by the run's workers: read
    // what is needed under the lock, with the read transaction closed before it is released.
    std::lock_guard lk(mu_);
    identity id;
    {
        auto view = the_store().read();
        if (!connector_name.empty()) id.conn = view.find_connector(connector_name);
        if (id.conn && !id.conn->bounce_sender.empty()) {
            id.from_header = id.conn->bounce_sender;
            id.sender_mb = view.find_mailbox(mail::to_lower(id.conn->bounce_sender));
            if (!id.sender_mb) {  // not necessarily a managed mailbox: credentials-less identity
                id.sender_mb = mailbox{};
                id.sender_mb->address = mail::to_lower(id.conn->bounce_sender);
                id.sender_mb->connector = id.conn->name;
            }
        }
    }
    id.secrets = id.conn && id.conn->smtp.auth != auth_method::none ? the_secrets() : secrets_;
    return id;
}

dsn::input bounce_sender::report_for(const std::vector<loaded_job>& jobs, const std::string& sender,
                                     const std::string& from_header,
                                     const std::optional<std::string>& original,
                                     std::int64_t now) const {
    dsn::input in;
    std::set<std::string> seen;
    for (auto& lj : jobs) {
        if (lj.job.arrival_time > 0 &&
            (in.arrival_time == 0 || lj.job.arrival_time < in.arrival_time))
            in.arrival_time = lj.job.arrival_time;
        for (auto& r : lj.job.recipients)
            if (seen.insert(mail::to_lower(r.final_recipient)).second)
                in.recipients.push_back(
                    {r.final_recipient, r.original_recipient, r.status, r.diagnostic});
    }
    in.reporting_mta = cfg_.hostname;
    in.from_address = from_header;
    in.from_display = settings_.from_display;
    in.to = sender;
    in.subject = settings_.subject;
    in.human_template = settings_.human_template;
    in.size_limit = settings_.size_limit;
    in.now = now;
    if (original) in.original = *original;
    return in;
}

void bounce_sender::process(const std::string& key, std::vector<loaded_job>& jobs,
                            bounce_run_stats& st, std::map<std::string, std::int64_t>& pending) {
    const auto now = now_();
    const bounce_job& first = jobs.front().job;
    std::int64_t oldest = INT64_MAX, newest = 0;
    for (auto& lj : jobs) {
        oldest = std::min(oldest, lj.job.created_time);
        newest = std::max(newest, lj.job.created_time);
    }
    auto state = load_state(key);
    if (!state && newest + settings_.coalesce_seconds > now) {  // siblings may still come
        ++st.waiting;
        ++pending[first.connector];
        return;
    }
    if (state && state->next_attempt > now) {
        ++st.waiting;
        ++pending[first.connector];
        return;
    }
    const std::string sender = first.envelope_sender;
    std::string ids;
    for (auto& lj : jobs) ids += (ids.empty() ? "" : ",") + lj.job.id;
    const std::string what = "bounce " + ids + " to <" + log_safe(sender) + ">";

    // The original message (header section enough above the size limit): the first job's
    // file that is still there.
    std::size_t cap = std::max<std::size_t>(settings_.size_limit + 1, 256 * 1024);
    std::optional<std::string> original;
    for (auto& lj : jobs)
        if (!lj.job.message_path.empty())
            if ((original = read_prefix(lj.job.message_path, cap))) break;
    auto headers =
        mail::parse_header_block(original ? std::string_view(*original) : std::string_view{});

    if (!state) {
        if (auto why = suppression(sender, headers, now)) {
            spdlog::info("{}: suppressed: {}", what, *why);
            finish(key, jobs, "suppressed", *why, 0, nlohmann::json::object());
            for (std::size_t i = 0; i < jobs.size(); ++i) count(jobs[i].job.connector, false);
            ++st.suppressed;
            return;
        }
        state =
            group_state{key, first.fingerprint, sender, first.connector, 0, now, 0, 0, "", false};
    }
    if (now - std::min(oldest, state->first_seen) > settings_.max_age_seconds) {
        std::string detail = "gave up after " + std::to_string(state->attempts) +
                             " attempts over " + std::to_string(settings_.max_age_seconds / 3600) +
                             " h; last error: " + state->last_error;
        spdlog::error("{}: {}", what, detail);
        finish(key, jobs, "failed", detail, state->attempts, nlohmann::json::object());
        ++st.failed;
        return;
    }

    auto [conn, sender_mb, from_header, secrets] = identity_for(first.connector);
    bool oauth = conn && (conn->smtp.auth == auth_method::google ||
                          conn->smtp.auth == auth_method::microsoft);
    smtp_envelope env;
    env.mail_from =
        oauth ? from_header : std::string();  // RFC 3464: <> unless the provider refuses it
    env.rcpt_to.push_back(sender);
    smtp_submitter submitter(cfg_, secrets);
    auto route = submitter.route_for(conn ? &*conn : nullptr, sender_mb ? &*sender_mb : nullptr);
    auto server = route.server_key();
    auto defer = [&](const std::string& err, bool attempted) {
        if (attempted) ++state->attempts;
        state->last_error = err;
        state->in_flight = false;
        state->next_attempt = now + settings_.backoff(std::max(1, state->attempts));
        save_state(*state);
        for (auto& lj : jobs)
            record(lj.job, {{"state", "pending"},
                            {"detail", err},
                            {"time", mail::iso8601(now)},
                            {"attempts", state->attempts},
                            {"next_attempt", mail::iso8601(state->next_attempt)}});
        ++st.deferred;
        ++pending[first.connector];
    };
    if (server_down(server)) {
        defer("not tried: " + route.describe() + " failed earlier in this run", false);
        return;
    }

    auto in = report_for(jobs, sender, from_header, original, now);
    auto msg = dsn::build(in);

    if (state->in_flight)
        spdlog::warn("{}: the previous attempt was interrupted; sending again (at-least-once)",
                     what);
    state->in_flight = true;
    state->last_attempt = now;
    save_state(*state);

    auto res = submitter.submit(conn ? &*conn : nullptr, sender_mb ? &*sender_mb : nullptr, &env,
                                msg.bytes, nullptr, now);
    nlohmann::json extra = {{"to", sender},
                            {"dsn_message_id", msg.message_id},
                            {"server", route.describe()},
                            {"recipients", static_cast<int>(in.recipients.size())}};
    if (res.ok()) {
        std::string detail =
            "sent via " + route.host + ":" + std::to_string(route.port) + ": " + res.detail;
        spdlog::info("{}: sent {} ({} recipient(s)) via {}: {}", what, msg.message_id,
                     in.recipients.size(), route.describe(), log_safe(res.detail));
        finish(key, jobs, "sent", detail, state->attempts + 1, extra);
        for (std::size_t i = 0; i < jobs.size(); ++i) count(jobs[i].job.connector, true);
        ++st.sent;
        return;
    }
    if (!res.transient()) {
        std::string detail = "the server refused the bounce: " + res.detail;
        spdlog::warn("{}: failed permanently: {}", what, log_safe(res.detail, 600));
        finish(key, jobs, "failed", detail, state->attempts + 1, extra);
        ++st.failed;
        return;
    }
    if (res.server_problem()) {
        std::lock_guard lk(mu_);
        down_servers_.insert(server);
    }
    std::string err =
        std::string(to_string(res.kind)) + " problem with " + route.describe() + ": " + res.detail;
    defer(err, true);
    spdlog::warn("{}: attempt {} failed ({}); next attempt in {} s", what, state->attempts,
                 log_safe(err, 600), state->next_attempt - now);
}

}  // namespace mx
