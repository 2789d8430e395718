// ops oauth: the OAuth2 credentials of Google/Microsoft mailboxes — set them (`mxctl mailbox
// oauth`, the console's authorisation form), show their state, refresh the token now.
//
// Promises: the store change and its secrets are one ops::write() (secrets stored after the
// local commit, or in the same PostgreSQL transaction in cluster mode); secrets are never
// returned (only whether one is stored). The state comes from the secret store and the token cache of shared/global/oauth_token (expiry, last refresh error).
// Security: error texts come from oauth_error, which never carries a secret.
#include <ctime>

#include "global/oauth_token.hpp"
#include "ops.hpp"

namespace mx::ops {

mailbox set_mailbox_oauth(env& e, const std::string& address, const oauth_update& u) {
    auto key = normalize_mailbox_arg(address);
    mailbox out;
    // Secrets go with the change (cluster mode: the same PostgreSQL transaction); an empty
    // value removes, entries apply in order.
    secret_changes secrets;
    if (u.clear) {
        secrets.set.emplace_back(secret_name::oauth_client_secret(key), "");
        secrets.set.emplace_back(secret_name::oauth_refresh_token(key), "");
    }
    if (u.client_secret)
        secrets.set.emplace_back(secret_name::oauth_client_secret(key), *u.client_secret);
    if (u.refresh_token)
        secrets.set.emplace_back(secret_name::oauth_refresh_token(key), *u.refresh_token);
    write(
        e,
        [&](store_tx& tx) {
            auto m = tx.find_mailbox(key);
            if (!m) throw op_error("no mailbox " + key + " (see: mxctl mailbox list)");
            if (u.clear) m->oauth = {};
            if (!u.client_id.empty()) m->oauth.client_id = u.client_id;
            if (!u.tenant.empty()) m->oauth.tenant = u.tenant;
            tx.update_mailbox(*m);
            out = *m;
        },
        &secrets);
    return out;
}

std::string oauth_status::summary(std::int64_t now) const {
    if (method != auth_method::google && method != auth_method::microsoft) return "not OAuth2";
    if (client_id.empty()) return "no client id";
    bool app_only = method == auth_method::microsoft && client_secret;  // client credentials
    if (!refresh_token && !app_only) return "no refresh token";
    if (last_error_time > refreshed) return "refresh failed";
    if (token_expires == 0) return "not yet used";
    return token_expires > now ? "ok" : "expired (renewed at the next send)";
}

oauth_status mailbox_oauth_status(env& e, const mailbox& m, auth_method method) {
    oauth_status s;
    s.method = method;
    s.client_id = m.oauth.client_id;
    s.tenant = m.oauth.tenant;
    if (method != auth_method::google && method != auth_method::microsoft) return s;
    auto& secrets = e.secrets();
    s.client_secret = secrets.get(secret_name::oauth_client_secret(m.address)).has_value();
    s.refresh_token = secrets.get(secret_name::oauth_refresh_token(m.address)).has_value();
    oauth_token_source src(e.cfg(), secrets);
    if (auto c = src.cached_status(m)) {
        s.token_expires = c->expires_at;
        s.refreshed = c->refreshed_at;
        s.last_error = c->last_error;
        s.last_error_time = c->last_error_at;
    }
    return s;
}

std::pair<mailbox, auth_method> find_oauth_mailbox(store_view& v, const std::string& address) {
    auto key = normalize_mailbox_arg(address);
    auto m = v.find_mailbox(key);
    if (!m) throw op_error("no mailbox " + key + " (see: mxctl mailbox list)");
    auto c = v.find_connector(m->connector);
    if (!c || (c->smtp.auth != auth_method::google && c->smtp.auth != auth_method::microsoft))
        throw op_error("mailbox " + key + ": its connector does not use Google or Microsoft");
    return {*m, c->smtp.auth};
}

std::int64_t refresh_mailbox_oauth(env& e, const mailbox& m, auth_method method) {
    oauth_token_source src(e.cfg(), e.secrets());
    try {
        return src.access_token(method, m, true, static_cast<std::int64_t>(std::time(nullptr)))
            .expires_at;
    } catch (const oauth_error& err) {
        throw op_error(std::string("token refresh failed: ") + err.what());
    }
}

}  // namespace mx::ops
