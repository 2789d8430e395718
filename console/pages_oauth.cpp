// console OAuth2: the authorisation state of one Google/Microsoft mailbox (client id, tenant,
// whether a client secret and a refresh token are stored, the cached access token's expiry,
// the last failed refresh) and the actions to re-authorise it: new credentials
// (ops::set_mailbox_oauth, as `mxctl mailbox oauth`) and "refresh now" (ops::refresh_mailbox_oauth:
// the importer's token code, whose outcome the state then shows).
// Security: secrets are only ever written (password fields, never echoed back); the page shows
// whether one is stored. Error texts from the token endpoint are escaped like all else.
#include <ctime>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

std::string yes_no(bool b) {
    return b ? "stored" : "<span class=\"down\">none</span>";
}

std::string oauth_body(console_env& env, const session& s, const httplib::Request& req) {
    std::string addr = req.get_param_value("address");
    auto guard = env.reading();
    auto v = env.open_store_read_only().read();
    std::optional<mailbox> m;
    try {
        m = v.find_mailbox(ops::normalize_mailbox_arg(addr));
    } catch (const ops::op_error&) {
    }
    if (!m) return notice(req) + "<p class=\"alert alert-danger\">No mailbox " + h(addr) + ".</p>";
    auto c = v.find_connector(m->connector);
    auto method = c ? c->smtp.auth : auth_method::none;
    auto st = ops::mailbox_oauth_status(env, *m, method);
    auto now = static_cast<std::int64_t>(std::time(nullptr));
    std::ostringstream o;
    o << notice(req) << "<table class=\"table table-sm w-auto\" id=\"oauth-state\"><tbody>"
      << "<tr><th>Mailbox</th><td>" << h(m->address) << "</td></tr><tr><th>Connector</th><td>"
      << h(m->connector) << " (" << h(to_string(method)) << ")</td></tr><tr><th>State</th><td "
      << "id=\"oauth-summary\">" << h(st.summary(now)) << "</td></tr><tr><th>Client id</th><td>"
      << h(st.client_id.empty() ? "-" : st.client_id) << "</td></tr>";
    if (method == auth_method::microsoft)
        o << "<tr><th>Tenant</th><td>" << h(st.tenant.empty() ? "-" : st.tenant) << "</td></tr>";
    o << "<tr><th>Client secret</th><td>" << yes_no(st.client_secret)
      << "</td></tr><tr><th>Refresh token</th><td>" << yes_no(st.refresh_token)
      << "</td></tr><tr><th>Access token</th><td id=\"oauth-expiry\">"
      << (st.token_expires ? (st.token_expires > now ? "valid until " : "expired ") +
                                 when(st.token_expires) + " (fetched " + when(st.refreshed) + ")"
                           : std::string("none cached"))
      << "</td></tr><tr><th>Last refresh error</th><td id=\"oauth-error\">"
      << (st.last_error.empty() ? "-" : h(st.last_error) + " (" + when(st.last_error_time) + ")")
      << "</td></tr></tbody></table>";
    if (method != auth_method::google && method != auth_method::microsoft)
        return o.str() +
               "<p>The connector of this mailbox does not authenticate with Google or "
               "Microsoft: nothing to authorise.</p>";
    if (s.read_only) return o.str();
    o << "<form method=\"post\" action=\"/mailboxes/oauth/refresh\" class=\"mb-4\">"
      << csrf_field(s) << "<input type=\"hidden\" name=\"address\" value=\"" << h(m->address)
      << "\"><button class=\"btn btn-outline-primary\" id=\"oauth-refresh\">Refresh the token "
         "now</button> <span class=\"form-text\">asks the token endpoint with the stored "
         "credentials, as the next outgoing mail would</span></form>"
      << "<h2 class=\"h5\">Re-authorise</h2><form method=\"post\" "
         "action=\"/mailboxes/oauth/save\" class=\"col-lg-6\" id=\"oauth-form\">"
      << csrf_field(s) << "<input type=\"hidden\" name=\"address\" value=\"" << h(m->address)
      << "\"><div class=\"mb-2\"><label class=\"form-label\" for=\"client_id\">Client "
         "id</label><input class=\"form-control\" id=\"client_id\" name=\"client_id\" value=\""
      << h(st.client_id) << "\"></div>";
    if (method == auth_method::microsoft)
        o << "<div class=\"mb-2\"><label class=\"form-label\" for=\"tenant\">Tenant</label><input "
             "class=\"form-control\" id=\"tenant\" name=\"tenant\" value=\""
          << h(st.tenant) << "\"></div>";
    o << "<div class=\"mb-2\"><label class=\"form-label\" for=\"client_secret\">Client "
         "secret</label><input class=\"form-control\" type=\"password\" id=\"client_secret\" "
         "name=\"client_secret\" autocomplete=\"new-password\"></div><div class=\"mb-2\"><label "
         "class=\"form-label\" for=\"refresh_token\">Refresh token</label><input "
         "class=\"form-control\" type=\"password\" id=\"refresh_token\" name=\"refresh_token\" "
         "autocomplete=\"new-password\"><div class=\"form-text\">Empty fields keep what is "
         "stored. A new refresh token comes from the provider's consent flow for this "
         "mailbox (Google: OAuth consent with scope https://mail.google.com/; Microsoft: "
         "SMTP.Send offline_access).</div></div><div class=\"form-check mb-3\"><input "
         "class=\"form-check-input\" type=\"checkbox\" id=\"clear\" name=\"clear\" "
         "value=\"yes\"><label class=\"form-check-label\" for=\"clear\">Forget everything "
         "stored first</label></div><button class=\"btn btn-primary\" "
         "id=\"oauth-save\">Save</button></form>";
    return o.str();
}

}  // namespace

void install_oauth_pages(httplib::Server& svr, console_env& env, auth& a) {
    svr.Get("/mailboxes/oauth", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(page(s, "OAuth2 authorisation", oauth_body(env, s, req)),
                        "text/html; charset=utf-8");
    });
    a.post(svr, "/mailboxes/oauth/save", false,
           [&](const httplib::Request& req, httplib::Response& res) {
               std::string addr = req.get_param_value("address");
               ops::oauth_update u;
               u.client_id = req.get_param_value("client_id");
               u.tenant = req.get_param_value("tenant");
               u.clear = req.get_param_value("clear") == "yes";
               if (auto v = req.get_param_value("client_secret"); !v.empty()) u.client_secret = v;
               if (auto v = req.get_param_value("refresh_token"); !v.empty()) u.refresh_token = v;
               act(res, "/mailboxes/oauth?address=" + url_encode(addr),
                   "credentials of " + addr + " saved", [&] {
                       auto guard = env.writing();
                       ops::set_mailbox_oauth(env, addr, u);
                   });
           });
    a.post(svr, "/mailboxes/oauth/refresh", false,
           [&](const httplib::Request& req, httplib::Response& res) {
               std::string addr = req.get_param_value("address");
               act(res, "/mailboxes/oauth?address=" + url_encode(addr),
                   "new access token for " + addr, [&] {
                       std::pair<mailbox, auth_method> mm;
                       {
                           auto guard = env.reading();
                           auto v = env.open_store_read_only().read();
                           mm = ops::find_oauth_mailbox(v, addr);
                       }
                       // The endpoint may take [oauth] timeout_seconds: no store lock held.
                       ops::refresh_mailbox_oauth(env, mm.first, mm.second);
                   });
           });
}

}  // namespace mx::console
