// config: the installation's TOML configuration (/etc/mx-connector/mx-connector.toml).
//
// Promises: load_config() either returns a complete, validated config or throws
// config_error with a message naming the file, the key and what to fix. Relative paths in the
// file are resolved against the file's folder. Keys the core does not know are kept in `raw`
// (as JSON) so each program reads its own section ([importer], [bounce], ...) itself.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

namespace mx {

class config_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class tls_mode { none, starttls, tls };
std::optional<tls_mode> parse_tls_mode(std::string_view s);
std::string_view to_string(tls_mode m);

struct smtp_server_config {
    std::string host = "127.0.0.1";
    int port = 25;
    tls_mode security = tls_mode::none;
    std::string ca_file;  // empty: system CA store
    bool verify_peer = true;
    int timeout_seconds = 60;
};

struct milter_config {
    // unix:PATH or inet:PORT@HOST. "inet:PORT" / "inet6:PORT" mean loopback (127.0.0.1 / [::1]);
    // any other HOST needs allow_remote (the milter tells who has a mailbox here).
    std::string socket;
    bool allow_remote = false;
    std::string socket_group;  // group that may connect (Postfix's), empty: keep
    unsigned socket_mode = 0660;
    bool reject_unknown_domains = false;  // domain of no connector: continue (Postfix decides)
    bool accept_postmaster = true;        // RFC 5321 4.5.1
    // Reply text for an unknown user; {address} is replaced by the recipient in <>.
    std::string reject_text = "{address}: Recipient address rejected: User unknown";
    // Against address harvesting: answer unknown users like this (text without the address).
    bool hide_existence = false;
    int timeout_seconds = 30;
    // What mx-milter serves Postfix besides the milter (one struct: the milter, doctor and
    // `mxctl postfix setup` read these, never the raw keys). Defaults in run_dir; "" disables.
    std::string socketmap;     // unix:PATH / inet:PORT@HOST spec (resolved like `socket`)
    std::string domain_table;  // lmdb: table of the connector domains (Postfix appends .lmdb)
    std::string drop_table;    // lmdb: table @domain -> drop folder for virtual(8)
    std::string virtual_map;   // regexp: table for virtual(8)
    // Table mode (docs/postfix.md): the RCPT decisions as a Postfix access(5) lmdb: table for
    // check_recipient_access, so Postfix decides without a milter. "" (default): not written.
    std::string recipient_table;
};

struct config {
    std::filesystem::path file;  // where it was loaded from (empty: built-in defaults)
    std::filesystem::path state_dir = "/var/lib/mx-connector";
    std::filesystem::path run_dir = "/run/mx-connector";
    std::filesystem::path mail_root = "/var/mail/mx-connector";
    std::string hostname;  // default: the machine's FQDN
    std::optional<std::string> user;
    std::string subaddress_delimiter = "+";  // empty: no subaddressing
    // Where mail for postmaster@ a served domain goes when no mailbox matches it (the milter
    // accepts it, RFC 5321 4.5.1): a target spec; empty means maildir:<mail_root>/postmaster.
    std::string postmaster_target;
    std::string log_level = "info";
    std::string log_sink = "stderr";  // stderr | syslog
    milter_config milter;
    smtp_server_config smtp;
    nlohmann::json raw;  // the whole file as JSON, for program-specific sections

    std::filesystem::path store_dir() const { return state_dir / "store"; }
    std::filesystem::path secrets_dir() const { return state_dir / "secrets"; }
    std::filesystem::path journal_dir() const { return state_dir / "journal"; }
    // postmaster_target, or the installation-wide default Maildir under mail_root.
    std::string effective_postmaster_target() const;
    // A JSON object for [name] (empty object when absent).
    const nlohmann::json& section(const std::string& name) const;
    // Relative paths in the file mean "relative to the file's folder", for every key.
    std::filesystem::path resolve_path(const std::filesystem::path& p) const;
    // "unix:relative.sock" / "local:..." resolved like resolve_path; inet specs unchanged.
    std::string resolve_socket(const std::string& spec) const;
};

inline constexpr const char* default_config_path = "/etc/mx-connector/mx-connector.toml";

// Path precedence: explicit argument, $MX_CONFIG, default_config_path.
std::filesystem::path resolve_config_path(const std::string& explicit_path);
config load_config(const std::filesystem::path& path);
config parse_config(std::string_view toml_text, const std::filesystem::path& origin);

}  // namespace mx
