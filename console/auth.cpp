// console auth: login with Argon2id-hashed accounts (mxctl console user ...), sessions in
// HttpOnly + SameSite=Strict cookies, a CSRF token per session checked on every POST, a login
// rate limit per client address and per account name, and the read-only role.
#include <openssl/crypto.h>
#include <time.h>

#include <spdlog/spdlog.h>

#include "console.hpp"
#include "global/logging.hpp"
#include "ops/console_users.hpp"

namespace mx::console {
namespace {

constexpr std::int64_t session_idle_seconds = 8 * 3600;
constexpr std::int64_t throttle_window = 300;  // seconds
constexpr std::size_t throttle_failures = 5;   // per window, per address and per name
const char* const session_cookie = "mxc_session";
const char* const login_cookie = "mxc_login";

std::int64_t now() {
    return static_cast<std::int64_t>(::time(nullptr));
}

std::string cookie_value(const httplib::Request& req, const std::string& name) {
    std::string all = req.get_header_value("Cookie");
    std::size_t pos = 0;
    while (pos < all.size()) {
        auto end = all.find(';', pos);
        if (end == std::string::npos) end = all.size();
        std::string part = all.substr(pos, end - pos);
        auto s = part.find_first_not_of(' ');
        if (s != std::string::npos) part = part.substr(s);
        if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
        pos = end + 1;
    }
    return {};
}

bool same(const std::string& a, const std::string& b) {
    return a.size() == b.size() && !a.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string cookie(const char* name, const std::string& value, const char* path, bool secure,
                   bool clear = false) {
    std::string c =
        std::string(name) + "=" + value + "; Path=" + path + "; HttpOnly; SameSite=Strict";
    if (secure) c += "; Secure";
    if (clear) c += "; Max-Age=0";
    return c;
}

bool is_public(const std::string& path) {
    return path == "/login" || path == "/favicon.ico" || path.rfind("/static/", 0) == 0;
}

}  // namespace

std::optional<session> auth::find(const httplib::Request& req) {
    std::string token = cookie_value(req, session_cookie);
    if (token.empty()) return std::nullopt;
    std::lock_guard lock(mu_);
    auto it = sessions_.find(token);
    if (it == sessions_.end()) return std::nullopt;
    if (it->second.expires < now()) {
        sessions_.erase(it);
        return std::nullopt;
    }
    it->second.expires = now() + session_idle_seconds;
    return it->second;
}

session current(auth& a, const httplib::Request& req) {
    auto s = a.find(req);
    if (!s) throw std::logic_error("page handler reached without a session");
    return *s;
}

bool auth::throttled(const std::string& key) {
    std::lock_guard lock(mu_);
    auto& v = failures_[key];
    std::erase_if(v, [](std::int64_t t) { return t < now() - throttle_window; });
    return v.size() >= throttle_failures;
}

void auth::failed(const std::string& key) {
    std::lock_guard lock(mu_);
    if (failures_.size() > 100000) failures_.clear();  // bounded: a flood forgets, never grows
    failures_[key].push_back(now());
}

std::optional<session> auth::login(const std::string& user, const std::string& password) {
    std::optional<ops::console_user> u;
    try {
        auto users = ops::load_console_users(cfg_);
        if (auto it = users.find(user); it != users.end()) u = it->second;
    } catch (const std::exception& e) {
        spdlog::error("console accounts: {}", e.what());
    }
    // Unknown names cost a hash too, so timing does not tell which names exist.
    static const std::string dummy = ops::hash_password(ops::random_hex(16));
    bool ok = ops::verify_password(u ? u->hash : dummy, password) && u;
    if (!ok) return std::nullopt;
    session s{ops::random_hex(32), u->name, ops::random_hex(32), u->read_only,
              now() + session_idle_seconds};
    std::lock_guard lock(mu_);
    std::erase_if(sessions_, [](const auto& kv) { return kv.second.expires < now(); });
    sessions_[s.token] = s;
    return s;
}

void auth::logout(const std::string& token) {
    std::lock_guard lock(mu_);
    sessions_.erase(token);
}

void auth::post(httplib::Server& svr, const std::string& path, bool read_only_ok,
                httplib::Server::Handler handler) {
    // Checked here, not in the pre-routing gate: httplib parses a form body into req.params
    // only once it routes the request.
    svr.Post(path, [this, read_only_ok, handler = std::move(handler)](const httplib::Request& req,
                                                                      httplib::Response& res) {
        auto s = find(req);
        if (!s) {
            res.status = 403;
            res.set_content("no session: log in first\n", "text/plain");
            return;
        }
        if (!same(form_value(req, "csrf"), s->csrf)) {
            spdlog::warn("console: POST {} refused: CSRF token missing or wrong (user {})",
                         log_safe(req.path), log_safe(s->user));
            res.status = 403;
            res.set_content("refused: the form's CSRF token is missing or wrong\n", "text/plain");
            return;
        }
        if (s->read_only && !read_only_ok) {
            res.status = 403;
            res.set_content("refused: read-only account\n", "text/plain");
            return;
        }
        handler(req, res);
    });
}

void auth::install(httplib::Server& svr) {
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (is_public(req.path)) return httplib::Server::HandlerResponse::Unhandled;
        auto s = find(req);
        if (!s) {
            if (req.method == "GET" || req.method == "HEAD") {
                redirect(res, "/login");
            } else {
                res.status = 403;
                res.set_content("no session: log in first\n", "text/plain");
            }
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.Get("/login", [this](const httplib::Request& req, httplib::Response& res) {
        // Kept while the browser has one: a second tab (or the favicon's redirect) must not
        // invalidate the form already shown.
        std::string token = cookie_value(req, login_cookie);
        if (token.size() != 32 || token.find_first_not_of("0123456789abcdef") != std::string::npos)
            token = ops::random_hex(16);
        res.set_header("Set-Cookie", cookie(login_cookie, token, "/login", secure_));
        res.set_content(login_page(token, ""), "text/html; charset=utf-8");
    });
    svr.Post("/login", [this](const httplib::Request& req, httplib::Response& res) {
        std::string user = req.get_param_value("user"), pw = req.get_param_value("password");
        auto fail = [&](int status, const std::string& msg) {
            std::string token = ops::random_hex(16);
            res.status = status;
            res.set_header("Set-Cookie", cookie(login_cookie, token, "/login", secure_));
            res.set_content(login_page(token, msg), "text/html; charset=utf-8");
        };
        if (!same(req.get_param_value("csrf"), cookie_value(req, login_cookie)))
            return fail(403, "The login form expired: please try again.");
        std::string by_addr = "addr:" + req.remote_addr, by_name = "user:" + user;
        if (throttled(by_addr) || throttled(by_name))
            return fail(429, "Too many failed logins: wait five minutes.");
        auto s = login(user, pw);
        if (!s) {
            failed(by_addr);
            failed(by_name);
            spdlog::warn("console: failed login for {} from {}", log_safe(user),
                         log_safe(req.remote_addr));
            return fail(401, "Wrong name or password.");
        }
        spdlog::info("console: {} logged in from {}", log_safe(user), log_safe(req.remote_addr));
        res.set_header("Set-Cookie", cookie(session_cookie, s->token, "/", secure_));
        redirect(res, "/");
    });
    post(svr, "/logout", true, [this](const httplib::Request& req, httplib::Response& res) {
        logout(cookie_value(req, session_cookie));
        res.set_header("Set-Cookie", cookie(session_cookie, "", "/", secure_, true));
        redirect(res, "/login");
    });
}

}  // namespace mx::console
