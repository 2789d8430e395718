// smtp_submit: one submission through a connector's SMTP settings with the right credentials
// — the piece the bounce sender and `mxctl send` / `mxctl smtp-test` share.
//
// Credentials: Generic -> connector smtp.username + secret connector/<name>/smtp.secret;
// Google/Microsoft -> XOAUTH2 as the sending mailbox with an access token from
// oauth_token_source; an authentication failure with a cached token refreshes it once and
// retries once (never a loop). Missing credentials are a failure::config result that says
// which mxctl command fixes it; nothing here throws for expected failures.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "global/config.hpp"
#include "global/model.hpp"
#include "global/oauth_token.hpp"
#include "global/secrets.hpp"
#include "global/smtp_client.hpp"
#include "global/smtp_route.hpp"

namespace mx {

class smtp_submitter {
  public:
    // secrets may be null: only unauthenticated routes can be used then.
    smtp_submitter(const config& cfg, secret_store* secrets);

    // The route for a connector (nullptr: installation default) sending as `sender_mailbox`
    // (needed for Google/Microsoft: whose OAuth2 credentials to use).
    smtp_route route_for(const connector* c, const mailbox* sender_mailbox) const;

    // Sends (env != nullptr) or only probes (connect, TLS, AUTH, NOOP).
    smtp_result submit(const connector* c, const mailbox* sender_mailbox, const smtp_envelope* env,
                       std::string_view message, std::vector<transcript_line>* transcript,
                       std::int64_t now);

  private:
    // nullopt + result filled when credentials cannot be had.
    std::optional<smtp_credentials> credentials(const smtp_route& r, const connector* c,
                                                const mailbox* mb, bool force_refresh,
                                                std::int64_t now, smtp_result& error,
                                                bool& from_cache);
    const config& cfg_;
    secret_store* secrets_;
    std::optional<oauth_token_source> tokens_;
};

}  // namespace mx
