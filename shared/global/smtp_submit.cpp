#include "global/smtp_submit.hpp"

#include <spdlog/spdlog.h>

#include "global/logging.hpp"

namespace mx {

smtp_submitter::smtp_submitter(const config& cfg, secret_store* secrets)
    : cfg_(cfg), secrets_(secrets) {
    if (secrets_) tokens_.emplace(cfg, *secrets_);
}

smtp_route smtp_submitter::route_for(const connector* c, const mailbox* mb) const {
    smtp_route r = c ? resolve_smtp_route(cfg_, *c) : default_smtp_route(cfg_);
    if ((r.auth == auth_method::google || r.auth == auth_method::microsoft) && mb)
        r.username = mb->address;
    return r;
}

std::optional<smtp_credentials> smtp_submitter::credentials(const smtp_route& r, const connector* c,
                                                            const mailbox* mb, bool force_refresh,
                                                            std::int64_t now, smtp_result& error,
                                                            bool& from_cache) {
    smtp_credentials cred;
    from_cache = false;
    error.kind = smtp_result::failure::config;
    switch (r.auth) {
        case auth_method::none:
            return cred;
        case auth_method::generic: {
            if (!secrets_) {
                error.detail = "the secret store is not available (run as the daemon user or root)";
                return std::nullopt;
            }
            auto pw = secrets_->get(secret_name::smtp_password(c ? c->name : ""));
            if (r.username.empty() || !pw) {
                error.detail = "connector '" + (c ? c->name : std::string()) +
                               "' uses generic authentication but has no " +
                               (r.username.empty() ? "smtp.username" : "smtp.secret") +
                               " (mxctl connector set NAME smtp.username=USER smtp.secret=-)";
                return std::nullopt;
            }
            cred.type = smtp_credentials::kind::password;
            cred.username = r.username;
            cred.secret = *pw;
            return cred;
        }
        case auth_method::google:
        case auth_method::microsoft: {
            if (!mb) {
                error.detail = "connector '" + (c ? c->name : std::string()) + "' uses " +
                               std::string(to_string(r.auth)) +
                               " authentication: name the sending mailbox (connector set NAME "
                               "bounce_sender=ADDRESS, or send --from MAILBOX); " +
                               std::string(to_string(r.auth)) + " refuses a null sender";
                return std::nullopt;
            }
            if (!tokens_) {
                error.detail = "the secret store is not available (run as the daemon user or root)";
                return std::nullopt;
            }
            try {
                auto t = tokens_->access_token(r.auth, *mb, force_refresh, now);
                from_cache = t.from_cache;
                cred.type = smtp_credentials::kind::bearer;
                cred.username = mb->address;
                cred.secret = std::move(t.access_token);
                return cred;
            } catch (const oauth_error& e) {
                error.kind = e.type() == oauth_error::kind::unavailable
                                 ? smtp_result::failure::connect
                                 : smtp_result::failure::config;
                error.detail = std::string("OAuth2: ") + e.what();
                return std::nullopt;
            }
        }
    }
    return cred;
}

smtp_result smtp_submitter::submit(const connector* c, const mailbox* mb, const smtp_envelope* env,
                                   std::string_view message,
                                   std::vector<transcript_line>* transcript, std::int64_t now) {
    smtp_route r = route_for(c, mb);
    smtp_client client(r, cfg_.hostname);
    smtp_result err;
    bool from_cache = false;
    auto cred = credentials(r, c, mb, false, now, err, from_cache);
    if (!cred) return err;
    auto res =
        env ? client.send(*cred, *env, message, transcript) : client.probe(*cred, transcript);
    if (res.kind == smtp_result::failure::auth && cred->type == smtp_credentials::kind::bearer &&
        from_cache) {
        // The token may have been revoked or expired early: one refresh, one more try.
        spdlog::info("smtp: {} refused the access token of {}; refreshing it once", r.host,
                     log_safe(mb ? mb->address : ""));
        if (mb && tokens_) tokens_->invalidate(*mb);
        auto cred2 = credentials(r, c, mb, true, now, err, from_cache);
        if (!cred2) return err;
        std::vector<transcript_line> second;
        res = env ? client.send(*cred2, *env, message, transcript ? &second : nullptr)
                  : client.probe(*cred2, transcript ? &second : nullptr);
        if (transcript) {
            transcript->push_back({'*', "access token refreshed; second attempt:"});
            transcript->insert(transcript->end(), second.begin(), second.end());
        }
    }
    return res;
}

}  // namespace mx
