// mx-console: private header of the web console. Each .cpp adds one concern:
//   context.cpp    the console's ops::env (store, secrets, shared memory) and its locks
//   server.cpp     HTTP(S) server: listen address, TLS, privilege drop, security headers
//   auth.cpp       accounts, sessions, CSRF tokens, login rate limit, read-only role
//   html.cpp       escaping and the page frame
//   assets.cpp     static files: Bootstrap and Chart.js from Debian, the console's own js/css
//   pages_*.cpp    connectors, mailboxes (+ CSV import), OAuth2 authorisation, ImportFailed,
//                  check, dashboard, log report
//   history.cpp    the bounded on-disk ring of counter samples (one point per interval)
//   today.cpp      counts since local midnight from the rings and the live counters
//   doctor.cpp     `mxctl doctor` findings, run in the background and cached
//   log_view.cpp   the `mxctl log-report` analysis of the tail of the Postfix log, cached
//
// Promises: every page and action needs a session (else /login); every POST carries the
// session's CSRF token; read-only sessions can change nothing; every change goes through
// admin/ops — the same code as mxctl, one store transaction, shm generation bumped.
// Security: everything from mail or the store is HTML-escaped (h()); the CSP forbids inline
// script; the process runs as the daemon account once its socket is bound.
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "connector_map.hpp"
#include "global/config.hpp"
#include "global/shm_state.hpp"
#include "ops/ops.hpp"

namespace mx::console {

// [console] section.
struct console_settings {
    std::string host = "127.0.0.1";
    int port = 8025;
    std::string tls_cert, tls_key;
    int sample_seconds = 60;  // one history point per interval
    std::size_t history_points = 7 * 24 * 60;
    std::string postfix_log;                // the Postfix log for the log report (empty: none)
    std::size_t log_max_bytes = 64u << 20;  // the report reads at most this tail of it
    int doctor_seconds = 300;               // doctor findings are at most this old
    std::string mxctl;                      // the mxctl to run for doctor (empty: found)
    bool loopback() const;
};
console_settings read_settings(const config& cfg);  // config_error with what to fix

// Every mailbox in memory, rebuilt when the store's generation moved (by the console or by
// mxctl): pages search 100k mailboxes in a few ms instead of parsing each record per request.
// Searching: every address lower-cased into one '\n'-separated text, scanned with memmem
// (about 1 ms for 100k addresses), the hit's box found by binary search of the line starts.
struct mailbox_index {
    std::uint64_t generation = 0;
    std::vector<mailbox> boxes;  // key order
    std::map<std::string, std::size_t> per_connector;
    std::string text;                   // "addr0\naddr1\n...", lower-case
    std::vector<std::uint32_t> starts;  // offset of each box's line in text
    void build_search();
    // Boxes matching `lower_needle` (substring, empty: all) and `conn` (empty: all): their
    // indexes from the `skip`-th match on, at most `limit`; `total` counts the matches, up to
    // max(skip + limit, count_max) — beyond that the scan stops and *capped is set.
    static constexpr std::size_t count_max = 10000;
    std::vector<std::size_t> search(std::string_view lower_needle, const std::string& conn,
                                    std::size_t skip, std::size_t limit, std::size_t& total,
                                    bool* capped = nullptr) const;
};

// The console's view of the installation; ops run on it under the locks below.
class console_env : public ops::env {
  public:
    explicit console_env(config cfg) : cfg_(std::move(cfg)) {}
    const config& cfg() override { return cfg_; }
    store& open_store() override;
    store& open_store_read_only() override { return open_store(); }
    secret_store& secrets() override;
    shm_state* shm();
    // The current index (call under reading() or writing()).
    std::shared_ptr<const mailbox_index> mailboxes();
    // LMDB map growth must not meet a reader of this process: looks share, changes exclude.
    std::shared_lock<std::shared_mutex> reading() { return std::shared_lock(mu_); }
    std::unique_lock<std::shared_mutex> writing() { return std::unique_lock(mu_); }

  private:
    config cfg_;
    std::mutex open_mu_;
    std::shared_mutex mu_;
    std::optional<store> store_;
    std::optional<secret_store> secrets_;
    std::optional<shm_state> shm_;
    std::once_flag shm_once_;
    std::mutex index_mu_;
    std::shared_ptr<const mailbox_index> index_;
};

struct session {
    std::string token, user, csrf;
    bool read_only = false;
    std::int64_t expires = 0;
};

// Sessions in memory (a restart logs everybody out), login throttling.
class auth {
  public:
    explicit auth(const config& cfg, bool secure) : cfg_(cfg), secure_(secure) {}
    std::optional<session> find(const httplib::Request& req);
    bool secure() const { return secure_; }
    void install(httplib::Server& svr);  // /login, /logout and the gate in front of all else
    // Every change is registered here: session, CSRF token and role checked before `handler`.
    void post(httplib::Server& svr, const std::string& path, bool read_only_ok,
              httplib::Server::Handler handler);

  private:
    std::optional<session> login(const std::string& user, const std::string& password);
    bool throttled(const std::string& key);
    void failed(const std::string& key);
    void logout(const std::string& token);
    const config& cfg_;
    bool secure_;
    std::mutex mu_;
    std::map<std::string, session> sessions_;
    std::map<std::string, std::vector<std::int64_t>> failures_;
};

// The request's session; the gate guarantees one on every page handler.
session current(auth& a, const httplib::Request& req);

// HTML helpers (html.cpp).
std::string h(std::string_view s);  // escapes & < > " '
std::string page(const session& s, const std::string& title, const std::string& body);
std::string login_page(const std::string& csrf, const std::string& error);
std::string csrf_field(const session& s);
using ops::when;                                  // "2026-12-01 18:00:00Z", "-" for 0
std::string notice(const httplib::Request& req);  // ?ok=... / ?err=... banner
std::string url_encode(std::string_view s);
// A form field of a urlencoded or a multipart (upload) body.
std::string form_value(const httplib::Request& req, const std::string& key);
void redirect(httplib::Response& res, const std::string& to);
// Runs a change; redirects to `back` with ?ok=done or ?err=<the op's message>.
void act(httplib::Response& res, const std::string& back, const std::string& done,
         const std::function<void()>& fn);

// Pages.
void install_assets(httplib::Server& svr);
void install_mailbox_pages(httplib::Server& svr, console_env& env, auth& a);
void install_failed_pages(httplib::Server& svr, console_env& env, auth& a);
void install_check_page(httplib::Server& svr, console_env& env, auth& a);
void install_oauth_pages(httplib::Server& svr, console_env& env, auth& a);
class doctor_cache;
void install_dashboard(httplib::Server& svr, console_env& env, auth& a,
                       const std::filesystem::path& history_dir, doctor_cache& doctor);
class log_view;
void install_log_page(httplib::Server& svr, auth& a, log_view& logs);

// The history rings (history.cpp): fixed slots of cumulative counters, one ring for all
// connectors (history.bin) and one per connector (history-<name>.bin, valid names only).
struct sample {
    std::int64_t time = 0;
    std::uint64_t accepted = 0, rejected = 0, tempfailed = 0, imported = 0, failed = 0, backlog = 0,
                  bounces = 0;
};
sample take_sample(const shm_state& shm);         // all connectors
sample take_sample(const connector_counters& c);  // one
std::filesystem::path history_path(const std::filesystem::path& dir, std::string_view connector);
// Appends one point to every ring (the sampler thread).
void sample_all(const std::filesystem::path& dir, const shm_state& shm, std::size_t slots);
class history {
  public:
    history(std::filesystem::path file, std::size_t slots);
    void append(const sample& s);
    std::vector<sample> read() const;  // oldest first

  private:
    std::filesystem::path file_;
    std::size_t slots_;
};

// Counts since local midnight (today.cpp): per connector, from the ring's point at or before
// midnight (or the segment's creation, when that was today) to the live counters.
struct today_counts {
    sample counts;          // accepted, rejected, imported, failed (differences)
    std::int64_t from = 0;  // the start actually used (later than midnight: the ring is young)
};
today_counts counts_since(const std::vector<sample>& ring, const sample& live, std::int64_t since,
                          std::int64_t segment_created);
std::int64_t local_midnight(std::int64_t now);
class today_cache {
  public:
    explicit today_cache(std::filesystem::path dir) : dir_(std::move(dir)) {}
    today_counts of(const connector_counters& live, std::int64_t segment_created);

  private:
    struct entry {  // the ring read at most every few seconds, summed up to its last point
        std::int64_t read_at = 0, midnight = 0;
        bool empty = true;
        sample last;
        today_counts upto_last;
    };
    std::filesystem::path dir_;
    std::mutex mu_;
    std::map<std::string, entry> rings_;
};
void install_connector_pages(httplib::Server& svr, console_env& env, auth& a, today_cache& today);

// `mxctl doctor --json` (the same checks, run as the console's account) in the background,
// at most every doctor_seconds; pages read the last result and never wait for it.
struct doctor_result {
    std::int64_t time = 0;  // 0: not run yet
    bool running = false;
    std::string error;        // could not run / unreadable output
    nlohmann::json findings;  // [{check, status, message, fix}]
};
class doctor_cache {
  public:
    doctor_cache(std::vector<std::string> argv, int max_age_seconds)
        : argv_(std::move(argv)), max_age_(max_age_seconds) {}
    ~doctor_cache();
    doctor_result get();      // starts a run when the result is older than max_age (or asked)
    void refresh();           // the next get() starts a run
    doctor_result run_now();  // synchronous (tests)

  private:
    void start_locked();
    std::vector<std::string> argv_;
    int max_age_;
    std::mutex mu_;
    doctor_result last_;
    bool stale_ = true;
    std::thread worker_;
};
std::vector<std::string> doctor_command(const std::string& mxctl, const std::string& config_path);

// The log report of the tail of [console] postfix_log (at most log_max_bytes), cached for a
// minute and while the file is unchanged.
class log_view {
  public:
    using connector_loader = std::function<logreport::connector_map()>;
    log_view(std::string file, std::size_t max_bytes, connector_loader connectors)
        : file_(std::move(file)), max_bytes_(max_bytes), connectors_(std::move(connectors)) {}
    const std::string& file() const { return file_; }
    // The report as log-report --json, plus "read": {bytes, from_offset, size}; throws
    // std::runtime_error saying why the log cannot be read.
    std::shared_ptr<const nlohmann::json> report();

  private:
    std::string file_;
    std::size_t max_bytes_;
    connector_loader connectors_;
    std::mutex mu_;
    std::shared_ptr<const nlohmann::json> last_;
    std::int64_t last_at_ = 0, last_mtime_ = 0, last_size_ = -1;
};
// One report of `text` (whole lines), domains grouped by `connectors` (tests call it directly).
nlohmann::json log_report_json(std::string_view text, const logreport::connector_map* connectors);
// The domain -> connector map of the store (read under env.reading()).
logreport::connector_map store_connector_map(console_env& env);

// Runs the console until SIGTERM/SIGINT; returns the exit status.
int run(const std::string& config_path);

}  // namespace mx::console
