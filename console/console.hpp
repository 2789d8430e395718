// mx-console: private header of the web console. Each .cpp adds one concern:
//   context.cpp    the console's ops::env (store, secrets, shared memory) and its locks
//   server.cpp     HTTP(S) server: listen address, TLS, privilege drop, security headers
//   auth.cpp       accounts, sessions, CSRF tokens, login rate limit, read-only role
//   html.cpp       escaping and the page frame
//   assets.cpp     static files: Bootstrap and Chart.js from Debian, the console's own js/css
//   pages_*.cpp    connectors, mailboxes, ImportFailed, check, dashboard
//   history.cpp    the bounded on-disk ring of counter samples (one point per interval)
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
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

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
    bool loopback() const;
};
console_settings read_settings(const config& cfg);  // config_error with what to fix

// Every mailbox in memory, rebuilt when the store's generation moved (by the console or by
// mxctl): pages search 100k mailboxes in a few ms instead of parsing each record per request.
struct mailbox_index {
    std::uint64_t generation = 0;
    std::vector<mailbox> boxes;  // key order
    std::map<std::string, std::size_t> per_connector;
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
using ops::when;  // "2026-12-01 18:00:00Z", "-" for 0
std::string notice(const httplib::Request& req);  // ?ok=... / ?err=... banner
std::string url_encode(std::string_view s);
void redirect(httplib::Response& res, const std::string& to);
// Runs a change; redirects to `back` with ?ok=done or ?err=<the op's message>.
void act(httplib::Response& res, const std::string& back, const std::string& done,
         const std::function<void()>& fn);

// Pages.
void install_assets(httplib::Server& svr);
void install_connector_pages(httplib::Server& svr, console_env& env, auth& a);
void install_mailbox_pages(httplib::Server& svr, console_env& env, auth& a);
void install_failed_pages(httplib::Server& svr, console_env& env, auth& a);
void install_check_page(httplib::Server& svr, console_env& env, auth& a);
void install_dashboard(httplib::Server& svr, console_env& env, auth& a,
                       const std::filesystem::path& history_dir);

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

// Runs the console until SIGTERM/SIGINT; returns the exit status.
int run(const std::string& config_path);

}  // namespace mx::console
