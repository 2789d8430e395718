// model: the connector and mailbox records as the administrator sees them.
//
// Promises: to_json/from_json round-trip every non-secret field; secrets (SMTP password,
// OAuth2 client secret and refresh token, webhook secret) are never fields of these records —
// they live in the secret store (secrets.hpp) and the records only say whether one is set.
// validate() returns a message that says what to fix, or nothing.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "global/config.hpp"

namespace mx {

enum class auth_method { none, generic, google, microsoft };
enum class sasl_mechanism { automatic, plain, login, cram_md5 };

std::optional<auth_method> parse_auth_method(std::string_view s);
std::string_view to_string(auth_method a);
std::optional<sasl_mechanism> parse_sasl_mechanism(std::string_view s);
std::string_view to_string(sasl_mechanism m);

struct connector_smtp {
    std::string host;                  // empty: the installation-wide [smtp] server
    int port = 0;                      // 0: 25 (none), 587 (starttls), 465 (tls)
    std::optional<tls_mode> security;  // unset: the [smtp] default
    auth_method auth = auth_method::none;
    sasl_mechanism mechanism = sasl_mechanism::automatic;
    std::string username;
    bool allow_plaintext_auth = false;  // send a password without TLS only if explicitly allowed
};

struct connector {
    std::string name;
    bool active = true;
    std::string drop_folder;           // absolute path
    std::vector<std::string> domains;  // normalised patterns (filled by listing calls)
    connector_smtp smtp;
    std::string bounce_sender;           // envelope/From for bounces; empty: <> and MAILER-DAEMON
    std::uint64_t max_message_size = 0;  // bytes; 0: no limit
    std::string default_target;          // default import target of its mailboxes; empty: maildir
};

struct mailbox_oauth {
    std::string client_id;
    std::string tenant;  // Microsoft
};

struct mailbox {
    std::string address;  // normalised key: local@domain, or @domain for a catch-all
    std::string connector;
    std::string target;  // maildir:PATH | webhook:URL | exec:COMMAND; empty: connector default
    mailbox_oauth oauth;
};

// Secret names (keys in the secret store), one place so nobody types them twice.
namespace secret_name {
std::string smtp_password(std::string_view connector);
std::string oauth_client_secret(std::string_view address);
std::string oauth_refresh_token(std::string_view address);
std::string target_secret(std::string_view address);
}  // namespace secret_name

bool valid_connector_name(std::string_view name);
std::optional<std::string> validate(const connector& c);  // message, or nullopt when valid
std::optional<std::string> validate_target(std::string_view target);

nlohmann::json to_json(const connector& c);
connector connector_from_json(const nlohmann::json& j);
nlohmann::json to_json(const mailbox& m);
mailbox mailbox_from_json(std::string address, const nlohmann::json& j);

}  // namespace mx
