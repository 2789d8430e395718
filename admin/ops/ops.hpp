// ops: the administrative operations shared by mxctl and mx-console (one implementation of
// every change, so both front ends refuse and accept exactly the same things).
//
// Promises:
// - Every change to connectors, domains and mailboxes goes through ops::write(): one store
//   transaction per change (all or nothing), the shared-memory generation bumped on commit so
//   running daemons see it at their next RCPT. With a [cluster] section the change goes to
//   PostgreSQL in one transaction with the rules still enforced by the local store_tx, and
//   this host's replica has it when write() returns unless env::no_wait() (ops_cluster.cpp,
//   docs/cluster.md). PostgreSQL unreachable: op_error, nothing changed anywhere.
// - Refusals throw op_error (or mx::rule_error from the store) whose message says what to fix,
//   worded for both front ends; nothing is printed here.
// - ImportFailed helpers never name a path outside <drop>/ImportFailed: ids with '/', NUL or a
//   leading '.' are refused (check_failed_id).
// Security: secrets (SMTP password, OAuth secrets) are written to the secret store only after
// the store transaction committed, and are never returned — only whether one is set.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "global/cluster.hpp"
#include "global/config.hpp"
#include "global/model.hpp"
#include "global/recipient_check.hpp"
#include "global/secrets.hpp"
#include "global/store.hpp"

namespace mx::ops {

// A refused operation; the message is the whole story for the user.
class op_error : public std::runtime_error {
  public:
    explicit op_error(const std::string& what, int exit_code = 1)
        : std::runtime_error(what), exit_code_(exit_code) {}
    int exit_code() const noexcept { return exit_code_; }

  private:
    int exit_code_;
};

// What an operation works on. mxctl's context and the console each provide one.
class env {
  public:
    virtual ~env() = default;
    virtual const config& cfg() = 0;
    virtual store& open_store() = 0;            // read-write
    virtual store& open_store_read_only() = 0;  // for looking only
    virtual secret_store& secrets() = 0;
    // Cluster mode: return once PostgreSQL committed, without applying the change to this
    // host's replica (its follower does, moments later).
    virtual bool no_wait() { return false; }
};

using secret_list = std::vector<std::pair<std::string, std::string>>;  // name -> value
// Secrets a change sets (empty value: removes) or removes by prefix; written with the change.
struct secret_changes {
    secret_list set;
    std::vector<std::string> remove_prefixes;
};

// The one store-write entry point of mxctl and the console (see the promises above). Returns
// the new generation (the local store's; in cluster mode the catalog's). `secrets`, read after
// fn ran, are stored after the local commit, or in the same PostgreSQL transaction.
std::uint64_t write(env& e, const std::function<void(store_tx&)>& fn,
                    const secret_changes* secrets = nullptr);
// write() in cluster mode (ops_cluster.cpp).
std::uint64_t cluster_write(env& e, const cluster::cluster_config& c,
                            const std::function<void(store_tx&)>& fn,
                            const secret_changes* secrets);

// "Bob@Ex.COM" -> "bob@ex.com"-style key; "@ex.com" catch-all.
std::string normalize_mailbox_arg(const std::string& arg);
// Refuses a target the importer could not use as written (webhook credentials over http://...).
void check_target_spec(const config& cfg, const std::string& spec);
// "-" means one line from stdin (keeps a secret out of shell history).
std::string read_secret_value(const std::string& v);

// --- connectors and domains (ops_connector.cpp)
// Applies one KEY=VALUE (keys as `mxctl connector set`); secrets go to `secrets`.
void apply_connector_setting(connector& c, const std::string& kv, secret_list& secrets);
void add_connector(env& e, const connector& c);
// A new connector with KEY=VALUE settings and its domains — one transaction.
void create_connector(env& e, const std::string& name, const std::vector<std::string>& settings,
                      const std::vector<std::string>& domains);
// KEY=VALUE settings and, when given, the full new domain list — one transaction.
void update_connector(env& e, const std::string& name, const std::vector<std::string>& settings,
                      const std::optional<std::vector<std::string>>& domains = std::nullopt);
void set_connector_active(env& e, const std::string& name, bool active);
void remove_connector(env& e, const std::string& name, bool force);
void add_domain(env& e, const std::string& conn, const std::string& pattern);
void remove_domain(env& e, const std::string& conn, const std::string& pattern);
bool has_smtp_secret(env& e, const std::string& connector);
std::string smtp_summary(const config& cfg, const connector& c);

// --- mailboxes (ops_mailbox.cpp)
mailbox add_mailbox(env& e, const std::string& address, const std::string& conn,
                    const std::string& target);
std::string remove_mailbox(env& e, const std::string& address);  // returns the key
// Mailboxes whose address contains `needle` (case-insensitive; empty: all), of `conn` (empty:
// all), at most `limit`; `total` counts every match.
// The search rule itself: `lower_needle` already lower-cased.
bool mailbox_matches(const mailbox& m, const std::string& lower_needle, const std::string& conn);
std::string lower(std::string s);
std::vector<mailbox> find_mailboxes(store_view& v, const std::string& needle,
                                    const std::string& conn, std::size_t limit, std::size_t& total);

// --- bulk import (ops_import.cpp): `mxctl mailbox import` and the console's CSV upload.
// CSV with a header naming address,connector[,target] (RFC 4180 quoting, '#' comments) or a
// JSON array of {address, connector[, target]} (or {"mailboxes": [...]}).
struct import_row {
    mailbox box;
    std::string where;  // "line 7" / "entry 3"
    std::size_t line = 0;
};
// Every refused line of an import ("SOURCE: line N: what to fix"), at most 100 and a count.
class import_error : public op_error {
  public:
    explicit import_error(std::vector<std::string> problems);
    const std::vector<std::string>& problems() const noexcept { return problems_; }

  private:
    std::vector<std::string> problems_;
};
// Parses the whole text; import_error lists every line that cannot be a mailbox.
std::vector<import_row> parse_mailbox_import(std::string_view text, const std::string& source);
// One transaction: every row added, or none (import_error lists every refused row).
std::size_t import_mailboxes(env& e, const std::vector<import_row>& rows,
                             const std::string& source);
// Both in one: the answer lists the unparseable and the refused lines together, in line order
// (a file header the parser cannot use still refuses at once).
std::size_t import_mailbox_text(env& e, std::string_view text, const std::string& source);

// --- OAuth2 of Google/Microsoft mailboxes (ops_oauth.cpp): `mxctl mailbox oauth` and the
// console's authorisation page. Secrets are never returned: only whether one is stored.
struct oauth_update {
    std::string client_id, tenant;                            // empty: unchanged
    std::optional<std::string> client_secret, refresh_token;  // set: replaced
    bool clear = false;  // forget client id, tenant and both secrets first
};
// Store change in one transaction, then the secrets (after the commit).
mailbox set_mailbox_oauth(env& e, const std::string& address, const oauth_update& u);
struct oauth_status {
    auth_method method = auth_method::none;  // of the mailbox's connector
    std::string client_id, tenant;
    bool client_secret = false, refresh_token = false;  // stored?
    std::int64_t token_expires = 0;                     // cached access token (0: none)
    std::int64_t refreshed = 0;                         // when it was fetched
    std::string last_error;                             // last failed refresh (no secret)
    std::int64_t last_error_time = 0;
    // "ok", "expired", "refresh failed", "no refresh token", "no client id", "not OAuth2"
    std::string summary(std::int64_t now) const;
};
oauth_status mailbox_oauth_status(env& e, const mailbox& m, auth_method method);
// The mailbox and its connector's method (op_error when none or not Google/Microsoft).
std::pair<mailbox, auth_method> find_oauth_mailbox(store_view& v, const std::string& address);
// Fetches a new access token now with the stored credentials (the importer's code path; may
// wait [oauth] timeout_seconds: hold no store lock); returns its expiry, or op_error with the
// endpoint's answer (also recorded for the status).
std::int64_t refresh_mailbox_oauth(env& e, const mailbox& m, auth_method method);

// --- check (ops_check.cpp): exactly the milter's answer, a dead store is a tempfail
check_result check(env& e, const std::string& address);

// --- ImportFailed (ops_failed.cpp)
struct failed_entry {
    std::string connector;
    std::filesystem::path drop;
    std::string file;  // name inside ImportFailed
    nlohmann::json reason;
    std::filesystem::path message_path() const { return drop / "ImportFailed" / file; }
    std::filesystem::path reason_path() const { return drop / "ImportFailed" / (file + ".json"); }
};
void check_failed_id(const std::string& id);
std::vector<failed_entry> scan_failed(env& e, const std::string& only_connector);
failed_entry find_failed(env& e, const std::string& arg);  // "FILE" or "CONNECTOR:FILE"
nlohmann::json failed_json(const failed_entry& f);
// One rename into <drop>/.retry decides; false + why when it lost (already retried/purged).
bool retry_failed(const failed_entry& f, std::string& why);
void purge_failed(const failed_entry& f);
// The message as an application receives it (no attachment bytes), run in a limited child.
std::optional<nlohmann::json> failed_content(const failed_entry& f, std::string& why);
// The header block of the stored message (at most max_bytes).
std::string failed_headers(const failed_entry& f, std::size_t max_bytes = 64 * 1024);
// String value of a JSON key ("" when absent; non-strings dumped).
std::string json_str(const nlohmann::json& j, const char* key);
// "2026-12-01 18:00:00Z" (UTC), "-" for 0 or earlier: how mxctl and the console show a time.
std::string when(std::int64_t unix_time);

}  // namespace mx::ops
