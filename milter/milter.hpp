// mx-milter: private header of the RCPT-decision daemon (libmilter) and its Postfix socketmap.
//
// What it is: one process serving two sockets, both answered from the shared LMDB store:
//   - the milter socket ([milter] socket): for every RCPT TO, mx::check_recipient() decides
//     (the same code as `mxctl check`) and the decision becomes SMFIS_CONTINUE, a 5xx reject or
//     a 4xx tempfail with an exact reply;
//   - the socketmap socket ([milter] socketmap): Postfix's `socketmap:` lookups "domain" (is
//     this domain served by a connector) and "mailbox" (drop-folder Maildir of any address of a
//     served domain), so Postfix learns the connector domains from the same table.
// Promises:
//   - no exception ever crosses into libmilter: anything unexpected is 451 4.3.0, logged once;
//   - a store problem is never a 5xx (451 4.3.0 / socketmap TEMP);
//   - the store is opened read-only, re-tried cheaply while it does not exist yet, and every
//     lookup is its own short read transaction, so changes made with mxctl apply to the next
//     RCPT without restart;
//   - callbacks never block on anything but an LMDB read (and a briefly held lock while the map
//     is re-mapped after another process grew it).
// Security: every SMTP argument and socketmap request is hostile input: they are parsed by
// mx::parse_address / a bounded netstring reader, logged through log_safe(), and reply texts
// are single-line with '%' escaped for smfi_setreply().
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "global/config.hpp"
#include "global/recipient_check.hpp"
#include "global/shm_state.hpp"
#include "global/store.hpp"
#include "util/netstring.hpp"

namespace mx::milter {

using util::netstring;  // socketmap framing (shared with mxctl doctor)
using util::netstring_error;
using util::parse_netstring;

// ---- store access ---------------------------------------------------------------------

// The read-only store, opened lazily (it may not exist when the daemon starts) and re-mapped
// when another process grew the map (MDB_MAP_RESIZED needs no transaction open in this
// process: lookups hold a shared lock, the re-map an exclusive one).
class store_holder {
  public:
    explicit store_holder(std::filesystem::path dir) : dir_(std::move(dir)) {}

    // True when the store is open (tries to open it, at most every retry_interval).
    bool ready();
    // The decision for one RCPT argument; never throws.
    check_result check(const check_policy& p, std::string_view smtp_argument);
    // Runs fn(view) in one read transaction with the resize protocol; throws on store errors
    // (including "store not available").
    template <typename Fn>
    auto with_view(Fn&& fn) -> decltype(fn(std::declval<store_view&>()));

    static constexpr std::chrono::milliseconds retry_interval{200};

    // mdb_reader_check on the store once it is open (the milter opens it read-only, which
    // clears nothing): slots of killed readers are freed. Never throws; logs what it cleared.
    void clear_stale_readers() noexcept;

  private:
    bool try_open();
    void remap() noexcept;

    std::filesystem::path dir_;
    std::mutex open_mu_;
    std::atomic<bool> open_{false};
    std::chrono::steady_clock::time_point last_attempt_{};
    std::optional<store> store_;
    std::shared_mutex map_mu_;
};

class store_unavailable : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

template <typename Fn>
auto store_holder::with_view(Fn&& fn) -> decltype(fn(std::declval<store_view&>())) {
    if (!ready()) throw store_unavailable("store " + dir_.string() + " is not available yet");
    try {
        std::shared_lock lk(map_mu_);
        auto v = store_->read();
        return fn(v);
    } catch (const lmdb::error&) {
        // Possibly MDB_MAP_RESIZED (another process grew the map): re-map with no transaction
        // open in this process, then try once more.
    }
    std::unique_lock lk(map_mu_);
    store_->env().adopt_map_size();
    auto v = store_->read();
    return fn(v);
}

// ---- decisions ----------------------------------------------------------------------

enum class action { accept, reject, tempfail };

// What the milter answers for one RCPT, ready for smfi_setreply().
struct rcpt_reply {
    action act = action::tempfail;
    std::string code;  // "550"; empty for accept
    std::string dsn;   // "5.1.1"
    std::string text;  // '%' escaped as "%%", one line, <= 980 octets
};

// check_result -> milter reply (pure; unit-tested).
rcpt_reply to_reply(const check_result& r);
// Escapes '%' for smfi_setreply and replaces CR/LF/NUL; caps at 980 octets.
std::string setreply_text(std::string_view text);
// Counts a decision into shared memory (per connector or global).
void count(shm_state* shm, const check_result& r) noexcept;
// The reply for something unexpected (an exception, no store): 451 4.3.0.
check_result internal_error_result(std::string_view smtp_argument, std::string reason);
// 451 4.3.0 for a not-ours result whose domain left the Postfix domain table moments ago
// (see postfix_tables_writer::recently_removed); counted as an unattributed tempfail.
check_result removed_domain_result(check_result not_ours, std::string_view connector);
// 501 5.1.3 for a malformed argument (decided without the store), nullopt when well-formed.
std::optional<check_result> check_recipient_syntax_only(const check_policy& p,
                                                        std::string_view smtp_argument);

// ---- tables Postfix reads, generated from the store (virtual_map.cpp, domain_table.cpp) --

// "srv/drop/" for drop folder "/srv/drop": the virtual(8) Maildir value with
// virtual_mailbox_base = "/"; empty when the folder is not a safe absolute path.
std::string drop_folder_value(const connector& c);
// The regexp table text (see virtual_map.cpp) for the store as seen by v.
std::string render_virtual_map(store_view& v, std::uint64_t generation);

// Domain pattern -> connector, the keys of the Postfix lmdb: domain table (domain_table.cpp).
using domain_entries = std::map<std::string, std::string, std::less<>>;
// True for a domain (without a leading '.') of only lower-case letters, digits, '-', '.', '_'
// (at most 253 octets): safe as an lmdb: key and, dots escaped, inside a regexp.
bool plain_domain(std::string_view domain);
domain_entries render_domain_table(store_view& v);
// Writes "<table>.lmdb" in Postfix's lmdb: format (temporary file + rename); throws
// mx::lmdb::error / std::system_error naming the call.
void write_domain_table(const std::string& table, const domain_entries& entries);

// virtual(8)'s drop table (lmdb:, listed before the regexp table in virtual_mailbox_maps):
// "@domain" -> drop folder value for every exact connector domain, plus the key
// drop_table_stamp_key -> a digest of the regexp table's text. virtual(8) re-opens its tables
// when an lmdb: file was replaced (checked before every delivery request), but never notices
// a changed regexp file; because every regexp change also replaces this file, long-lived
// virtual(8) processes always deliver with current tables (no max_use=1: no process per
// delivery). Subdomain and "." patterns stay in the regexp table.
inline constexpr const char* drop_table_stamp_key = "#regexp";
domain_entries render_drop_table(store_view& v, std::string_view regexp_text);

// Table mode's access(5) table (recipient_table.cpp): key -> "DUNNO" or a reply, plus what
// the table cannot express (logged when it is written).
struct recipient_entries {
    domain_entries table;
    std::vector<std::string> unexpressed;
};
recipient_entries render_recipient_table(store_view& v, const check_policy& p);

// Keeps virtual(8)'s regexp map, the lmdb: domain table and (table mode) the lmdb: recipient
// table in step with the store. Any path may be empty (that file is not written).
class postfix_tables_writer {
  public:
    postfix_tables_writer(std::string virtual_map = {}, std::string domain_table = {},
                          std::string drop_table = {}, std::string recipient_table = {})
        : vmap_path_(std::move(virtual_map))
        , domain_path_(std::move(domain_table))
        , drop_path_(std::move(drop_table))
        , rcpt_path_(std::move(recipient_table)) {}
    bool enabled() const {
        return !vmap_path_.empty() || !domain_path_.empty() || !rcpt_path_.empty();
    }
    const std::string& recipient_table_path() const { return rcpt_path_; }
    // The policy the recipient table is rendered with (accept_postmaster, reject_text); the
    // next refresh() renders it again.
    void set_policy(const check_policy& p);
    const std::string& drop_table_path() const { return drop_path_; }
    const std::string& virtual_map_path() const { return vmap_path_; }
    const std::string& domain_table_path() const { return domain_path_; }
    // Store generation the files on disk reflect (0: not written yet).
    std::uint64_t known_generation() const {
        return known_generation_.load(std::memory_order_acquire);
    }
    // Rewrites what changed if the store generation moved (or force); never throws.
    // with_recipients = false (the RCPT path: accepted mail needs its drop folder, not the
    // recipient table, whose render walks every mailbox) leaves that table to the next call.
    void refresh(store_holder& store, bool force, bool with_recipients = true) noexcept;

    // Postfix keeps routing a domain removed from the table to us for a while: trivial-rewrite
    // re-reads a replaced table within 10 s, but each smtpd process caches its address
    // resolutions until it exits (max_idle 100 s, max_use 100 sessions). Such mail would be
    // accepted and then bounced by virtual(8). For removal_grace after a domain pattern left
    // the table, this returns the connector it belonged to when `domain` (normalised) matched
    // it; the milter then answers 451 and the sender retries. Once Postfix has caught up it
    // refuses the domain itself before the milter is asked, so the grace can be generous.
    std::optional<std::string> recently_removed(std::string_view domain) const;
    std::chrono::steady_clock::duration removal_grace = std::chrono::minutes(10);

  private:
    void refresh_routing(store_holder& store, bool force) noexcept;
    void refresh_recipients(store_holder& store, bool force) noexcept;

    std::string vmap_path_, domain_path_, drop_path_, rcpt_path_;
    std::mutex policy_mu_;
    check_policy policy_;               // under policy_mu_
    std::uint64_t policy_version_ = 0;  // under policy_mu_, bumped by set_policy()
    std::mutex rcpt_mu_;                // the recipient table's own state, below
    bool rcpt_written_ = false;
    std::uint64_t rcpt_generation_ = 0, rcpt_policy_version_ = 0;
    domain_entries last_rcpts_;
    std::vector<std::string> last_unexpressed_;
    mutable std::mutex removed_mu_;  // not mu_: RCPTs must not wait for a file write
    domain_entries removed_;
    std::chrono::steady_clock::time_point removed_at_{};
    std::mutex mu_;
    std::uint64_t generation_ = 0;
    bool written_ = false;
    std::string last_vmap_;
    domain_entries last_domains_;
    domain_entries last_drops_;
    std::atomic<std::uint64_t> known_generation_{0};
};

// ---- daemon state shared by the callbacks -------------------------------------------

struct daemon_state {
    config cfg;
    std::unique_ptr<store_holder> store;
    std::unique_ptr<postfix_tables_writer> tables;
    std::optional<shm_state> shm;
    std::atomic<std::uint64_t> internal_errors{0};

    // The policy in force; replaced on reload. Readers (every RCPT, on every libmilter
    // thread) keep a per-thread reference and take the lock only after a change: a mutex and
    // two shared reference-count updates per decision were contended with 8+ connections.
    void set_policy(std::shared_ptr<const check_policy> p);
    const check_policy& current_policy();
    // [cluster] max_staleness: the replica's last contact with PostgreSQL is too old.
    bool replica_stale(const check_policy& p) const noexcept;
    // One decision as the milter makes it: check, count, log. Never throws.
    check_result decide(std::string_view smtp_argument, bool smtputf8, std::string_view queue_id,
                        std::string_view client);

  private:
    std::shared_ptr<const check_policy> policy_;  // under policy_mu_
    std::mutex policy_mu_;
    std::atomic<std::uint64_t> policy_version_{0};  // bumped by set_policy()
    std::uint64_t id_ = next_id();                  // tells instances apart for thread caches
    static std::uint64_t next_id();
};

// The daemon's state; set once before smfi_main starts.
daemon_state& state();
void set_state(std::unique_ptr<daemon_state> s);

// ---- libmilter registration (milter_callbacks.cpp) -----------------------------------

// smfi_register() with our callbacks and flags; throws std::runtime_error naming the call.
void register_milter();

// The protocol steps we do not want (SMFIP_NO*), for tests and docs.
unsigned long unwanted_steps();
// The steps the MTA need not wait for an answer to (SMFIP_NR_*): CONNECT and MAIL.
unsigned long no_reply_steps();

// ---- socketmap (socketmap.cpp) -------------------------------------------------------

// Answers one socketmap request body ("name key") with a reply body ("OK ..."); never throws.
std::string socketmap_answer(daemon_state& st, std::string_view request);

inline constexpr std::size_t socketmap_max_request = 100000;

// Owner, group and mode a unix socket has before it appears at its path (daemon.cpp).
struct socket_access {
    unsigned mode = 0660;
    uid_t uid = static_cast<uid_t>(-1);  // -1: keep (the creating process's)
    gid_t gid = static_cast<gid_t>(-1);
};

// A poll()-driven server thread on a unix or loopback TCP socket; stop() joins it.
// Limits (so no client can starve the others, e.g. Postfix): at most socketmap_max_clients
// connections; when full, a new connection closes the one that has been quiet longest
// instead of being refused; a connection quiet for socketmap_idle_timeout (no complete request
// answered) is closed — Postfix closes its own idle socketmap connections after 10 s and
// reconnects (and retries a lookup once) when we closed first.
inline constexpr std::size_t socketmap_max_clients = 512;
inline constexpr std::chrono::seconds socketmap_idle_timeout{30};

class socketmap_server {
  public:
    // Binds a fresh socket (unix: via place_unix_socket(), so `access` holds before it is
    // visible); call before dropping privileges.
    socketmap_server(daemon_state& st, const std::string& spec, const socket_access& access);
    ~socketmap_server();
    socketmap_server(const socketmap_server&) = delete;
    socketmap_server& operator=(const socketmap_server&) = delete;

    void start();
    void stop() noexcept;
    const std::string& path() const { return path_; }

  private:
    void run() noexcept;
    daemon_state& st_;
    std::string path_;
    int listen_fd_ = -1;
    int wake_fd_[2] = {-1, -1};
    std::thread thread_;
};

// ---- daemon (daemon.cpp) -------------------------------------------------------------

struct options {
    std::string config_path;
    bool check_config = false;
};

// Whole daemon life cycle; returns the process exit status.
int run(const options& opts);

// Socket path of a "unix:PATH" / "local:PATH" spec; empty for inet sockets.
std::string unix_socket_path(std::string_view spec);
// What the sockets get: [milter] socket_mode, socket_group (throws when the group does not
// exist) and, when running as root with `user` set, that account as owner.
socket_access socket_access_for(const config& cfg);

// Creates the unix socket `path` so that nobody ever sees it with the wrong owner or mode and
// no symlink at `path` is ever followed: a private folder (0700, ours) is made next to `path`,
// `bind_at(p)` binds (and listens) at p inside it (reached through /proc/self/fd, so renaming
// the folder cannot redirect the bind), owner and mode are set relative to that folder's
// descriptor, and the socket is renamed over `path` (replacing a stale socket — or whatever
// the account owning the folder planted there — without following it). The folder holding
// `path` must not be a symlink. Throws std::system_error naming the call.
void place_unix_socket(const std::string& path, const socket_access& access,
                       const std::function<void(const std::string& bind_path)>& bind_at);

}  // namespace mx::milter
