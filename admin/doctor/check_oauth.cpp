// doctor check group "oauth": Google/Microsoft mailboxes have a client id and a refresh token
// (never shown, only whether it is stored); cached access tokens close to expiry are noted.
#include <ctime>
#include <map>

#include "doctor/doctor.hpp"
#include "util/fs.hpp"

namespace mx::admin::doctor {

namespace {

// One pass as the state owner: the OAuth mailboxes, whether each has a refresh token (never
// the token itself), and the token cache, as JSON text.
std::string read_oauth_state(doctor_state& d) {
    nlohmann::json out = {{"mailboxes", nlohmann::json::array()},
                          {"secrets_error", nullptr},
                          {"cache", nlohmann::json::object()}};
    auto s = store::open(d.cfg().store_dir(), true);
    auto v = s.read();
    std::size_t n = 0;
    for (const auto& c : d.connectors) {
        if (c.smtp.auth != auth_method::google && c.smtp.auth != auth_method::microsoft) continue;
        v.for_each_mailbox(
            [&](const mailbox& m) {
                out["mailboxes"].push_back({{"mailbox", to_json(m)},
                                            {"address", m.address},
                                            {"method", std::string(to_string(c.smtp.auth))}});
                return ++n < 10000;
            },
            c.name);
    }
    if (n == 0) return out.dump();
    try {
        auto secrets = secret_store::open(d.cfg(), true);
        for (auto& e : out["mailboxes"]) {
            bool has = true;
            try {
                has = secrets.get(secret_name::oauth_refresh_token(e["address"].get<std::string>()))
                          .has_value();
            } catch (const std::exception&) {
            }
            e["has_refresh"] = has;
        }
    } catch (const std::exception& e) {
        out["secrets_error"] = e.what();
    }
    try {
        out["cache"] =
            nlohmann::json::parse(util::read_file(d.cfg().state_dir / "oauth" / "tokens.json"));
    } catch (const std::exception&) {
        // No cache yet (nothing sent so far): only the secrets are checked.
    }
    return out.dump();
}

}  // namespace

void check_oauth(doctor_state& d) {
    if (!d.have_store) return;
    std::vector<std::pair<mailbox, auth_method>> mbs;
    std::map<std::string, bool> refresh_known;  // address -> has a refresh token
    bool secrets_readable = true;
    std::string secrets_error;
    nlohmann::json cache = nlohmann::json::object();
    try {
        auto j = nlohmann::json::parse(d.read_state([&] { return read_oauth_state(d); }));
        for (const auto& e : j.at("mailboxes")) {
            auto address = e.at("address").get<std::string>();
            auto method = e.at("method").get<std::string>() == to_string(auth_method::google)
                              ? auth_method::google
                              : auth_method::microsoft;
            mbs.emplace_back(mailbox_from_json(address, e.at("mailbox")), method);
            if (e.contains("has_refresh")) refresh_known[address] = e["has_refresh"];
        }
        if (!j.at("secrets_error").is_null()) {
            secrets_readable = false;
            secrets_error = j["secrets_error"].get<std::string>();
        }
        cache = j.at("cache");
    } catch (const std::exception& e) {
        d.r.fail("oauth", std::string("cannot list mailboxes: ") + e.what(), "see store above");
        return;
    }
    if (mbs.empty()) return;
    if (!secrets_readable)
        d.r.warn("oauth", "secret store not readable by this account: " + secrets_error,
                 "run mxctl doctor as root or as " +
                     (d.user ? d.user->name : std::string("the daemon user")));
    auto now = static_cast<std::int64_t>(std::time(nullptr));
    std::size_t good = 0;
    for (const auto& [m, method] : mbs) {
        std::string who = "mailbox " + m.address + " (" + std::string(to_string(method)) + ")";
        std::string fix = d.cmd_prefix() + " mailbox oauth " + m.address + " --client-id ID" +
                          (method == auth_method::microsoft ? " --tenant TENANT" : "") +
                          " --client-secret - --refresh-token -";
        if (m.oauth.client_id.empty()) {
            d.r.fail("oauth", who + ": no OAuth2 client id", fix);
            continue;
        }
        bool has_refresh = true;
        if (auto it = refresh_known.find(m.address); it != refresh_known.end())
            has_refresh = it->second;
        if (!has_refresh) {
            d.r.fail("oauth", who + ": no refresh token stored: mail cannot be sent", fix);
            continue;
        }
        // Cached access tokens: keyed by implementation; look for an entry naming us.
        for (auto it = cache.begin(); it != cache.end(); ++it) {
            if (it.key().find(m.address) == std::string::npos || !it->is_object()) continue;
            auto exp = it->value("expires_at", std::int64_t{0});
            if (exp - now < d.opt.oauth_margin_seconds)
                d.r.ok("oauth",
                       who + ": cached access token " +
                           (exp <= now ? "expired" : "expires in " + age_string(exp - now)) +
                           "; it is renewed with the stored refresh token at the next send");
        }
        ++good;
    }
    if (good > 0)
        d.r.ok("oauth",
               std::to_string(good) + " OAuth2 mailbox(es) have a client id and a refresh token");
}

}  // namespace mx::admin::doctor
