// oauth_token: OAuth2 access tokens for SMTP XOAUTH2 (Google, Microsoft), per mailbox.
//
// Promises:
// - access_token() returns a cached token while it is valid for at least refresh_margin
//   seconds more; otherwise it runs the refresh-token grant (Google, Microsoft) or, for a
//   Microsoft mailbox with a client secret but no refresh token, the client-credentials grant
//   (scope https://outlook.office365.com/.default, SMTP.SendAsApp).
// - The cache is one JSON file, <state_dir>/oauth/tokens.json, directory 0700 and file 0600,
//   replaced atomically; a rotated refresh token returned by the endpoint is stored back
//   into the secret store.
// - Errors are oauth_error with a kind: `config` (secrets or client id missing: nothing to
//   retry until an admin acts), `denied` (the endpoint refused the grant: invalid_grant,
//   invalid_client), `unavailable` (network, 5xx: try later). Messages never contain secrets.
// - Token endpoint URLs come from [oauth] google_token_url / microsoft_token_url ({tenant}
//   is replaced) so tests can point them at a local fake endpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "global/config.hpp"
#include "global/model.hpp"
#include "global/secrets.hpp"

namespace mx {

class oauth_error : public std::runtime_error {
  public:
    enum class kind { config, denied, unavailable };
    oauth_error(kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
    kind type() const noexcept { return kind_; }

  private:
    kind kind_;
};

struct oauth_settings {
    std::string google_token_url = "https://oauth2.googleapis.com/token";
    std::string microsoft_token_url =
        "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token";
    std::string google_scope = "https://mail.google.com/";
    std::string microsoft_scope = "https://outlook.office.com/SMTP.Send offline_access";
    std::string microsoft_app_scope = "https://outlook.office365.com/.default";
    int refresh_margin_seconds = 300;
    int timeout_seconds = 30;
    std::string ca_file;  // empty: system store
};

oauth_settings oauth_settings_from(const config& cfg);  // reads [oauth]

// What the cache knows about a mailbox's token (never the token): its expiry and when it was
// fetched, or the last failed refresh (kept until a refresh succeeds).
struct oauth_cache_status {
    std::int64_t expires_at = 0;
    std::int64_t refreshed_at = 0;
    std::string last_error;
    std::int64_t last_error_at = 0;
};

struct oauth_token {
    std::string access_token;
    std::int64_t expires_at = 0;  // unix seconds
    bool from_cache = false;
    std::string grant;  // refresh_token | client_credentials
};

class oauth_token_source {
  public:
    // `secrets` must outlive this object; cache_dir defaults to <state_dir>/oauth.
    oauth_token_source(const config& cfg, secret_store& secrets);
    oauth_token_source(oauth_settings settings, secret_store& secrets,
                       std::filesystem::path cache_dir);

    // A token for this mailbox of a Google/Microsoft connector.
    oauth_token access_token(auth_method provider, const mailbox& mb, bool force_refresh,
                             std::int64_t now);
    // Drops the cached token (after the SMTP server refused it).
    void invalidate(const mailbox& mb);
    // The cache's entry for this mailbox (nullopt: never fetched nor failed).
    std::optional<oauth_cache_status> cached_status(const mailbox& mb) const;

    const oauth_settings& settings() const { return settings_; }
    std::filesystem::path cache_file() const { return cache_dir_ / "tokens.json"; }

  private:
    oauth_token fetch(auth_method provider, const mailbox& mb, std::int64_t now);
    oauth_settings settings_;
    secret_store* secrets_;
    std::filesystem::path cache_dir_;
};

}  // namespace mx
