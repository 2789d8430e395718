#include "global/oauth_token.hpp"

#include <sys/stat.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "global/config_reader.hpp"
#include "global/logging.hpp"
#include "global/mail_compose.hpp"
#include "util/curl.hpp"
#include "util/fs.hpp"

namespace mx {
namespace {

size_t collect_cb(char* data, size_t size, size_t nitems, void* userp) {
    try {
        auto* body = static_cast<std::string*>(userp);
        std::size_t n = size * nitems;
        if (body->size() + n > 1024 * 1024) return 0;  // a token response is small; abort
        body->append(data, n);
        return n;
    } catch (...) {
        return 0;  // aborts the transfer; never unwind through libcurl
    }
}

std::string cache_key(const mailbox& mb) {
    return mb.address + "|" + mb.oauth.client_id;
}

nlohmann::json read_cache(const std::filesystem::path& file) {
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return nlohmann::json::object();
    try {
        auto j = nlohmann::json::parse(util::read_file(file));
        return j.is_object() ? j : nlohmann::json::object();
    } catch (const std::exception& e) {
        spdlog::warn("oauth: ignoring unreadable token cache {}: {}", file.string(), e.what());
        return nlohmann::json::object();
    }
}

void write_cache(const std::filesystem::path& dir, const nlohmann::json& j) {
    util::make_dirs(dir, 0700);
    ::chmod(dir.c_str(), 0700);
    util::write_file_durable(dir / "tokens.json", j.dump(), 0600);
}

}  // namespace

oauth_settings oauth_settings_from(const config& cfg) {
    oauth_settings s;
    config_reader r(cfg, "oauth");
    for (auto [key, dst] : {std::pair{"google_token_url", &s.google_token_url},
                            std::pair{"microsoft_token_url", &s.microsoft_token_url},
                            std::pair{"google_scope", &s.google_scope},
                            std::pair{"microsoft_scope", &s.microsoft_scope},
                            std::pair{"microsoft_app_scope", &s.microsoft_app_scope},
                            std::pair{"ca_file", &s.ca_file}})
        *dst = r.string(key, *dst);
    s.refresh_margin_seconds =
        static_cast<int>(r.integer("refresh_margin_seconds", s.refresh_margin_seconds, 0, 86400));
    s.timeout_seconds = static_cast<int>(r.integer("timeout_seconds", s.timeout_seconds, 1, 3600));
    if (s.ca_file.empty()) s.ca_file = cfg.smtp.ca_file;
    return s;
}

oauth_token_source::oauth_token_source(const config& cfg, secret_store& secrets)
    : oauth_token_source(oauth_settings_from(cfg), secrets, cfg.state_dir / "oauth") {}

oauth_token_source::oauth_token_source(oauth_settings settings, secret_store& secrets,
                                       std::filesystem::path cache_dir)
    : settings_(std::move(settings)), secrets_(&secrets), cache_dir_(std::move(cache_dir)) {}

void oauth_token_source::invalidate(const mailbox& mb) {
    auto cache = read_cache(cache_file());
    if (cache.erase(cache_key(mb)) > 0) write_cache(cache_dir_, cache);
}

std::optional<oauth_cache_status> oauth_token_source::cached_status(const mailbox& mb) const {
    auto cache = read_cache(cache_file());
    auto it = cache.find(cache_key(mb));
    if (it == cache.end() || !it->is_object()) return std::nullopt;
    oauth_cache_status s;
    auto num = [&](const char* k) {
        auto v = it->find(k);
        return v != it->end() && v->is_number_integer() ? v->get<std::int64_t>() : 0;
    };
    s.expires_at = it->value("access_token", "").empty() ? 0 : num("expires_at");
    s.refreshed_at = num("refreshed_at");
    s.last_error_at = num("last_error_at");
    if (auto v = it->find("last_error"); v != it->end() && v->is_string())
        s.last_error = v->get<std::string>();
    return s;
}

oauth_token oauth_token_source::access_token(auth_method provider, const mailbox& mb,
                                             bool force_refresh, std::int64_t now) {
    if (provider != auth_method::google && provider != auth_method::microsoft)
        throw oauth_error(oauth_error::kind::config,
                          "OAuth2 needs a google or microsoft connector");
    auto cache = read_cache(cache_file());
    if (!force_refresh) {
        if (auto it = cache.find(cache_key(mb)); it != cache.end() && it->is_object()) {
            auto exp = it->value("expires_at", std::int64_t{0});
            auto tok = it->value("access_token", "");
            if (!tok.empty() && exp - settings_.refresh_margin_seconds > now)
                return {tok, exp, true, it->value("grant", "")};
        }
    }
    oauth_token t;
    try {
        t = fetch(provider, mb, now);
    } catch (const oauth_error& e) {
        // Kept for mxctl doctor and the console (the message names no secret); a cached token
        // still valid stays usable.
        auto& entry = cache[cache_key(mb)];
        if (!entry.is_object()) entry = nlohmann::json::object();
        entry["last_error"] = e.what();
        entry["last_error_at"] = now;
        try {
            write_cache(cache_dir_, cache);
        } catch (const std::exception& w) {
            spdlog::warn("oauth: cannot write token cache: {}", w.what());
        }
        throw;
    }
    cache[cache_key(mb)] = {{"access_token", t.access_token},
                            {"expires_at", t.expires_at},
                            {"refreshed_at", now},
                            {"grant", t.grant},
                            {"provider", std::string(to_string(provider))}};
    try {
        write_cache(cache_dir_, cache);
    } catch (const std::exception& e) {
        spdlog::warn("oauth: cannot write token cache: {}", e.what());
    }
    return t;
}

oauth_token oauth_token_source::fetch(auth_method provider, const mailbox& mb, std::int64_t now) {
    const std::string who = "mailbox " + mb.address;
    if (mb.oauth.client_id.empty())
        throw oauth_error(oauth_error::kind::config,
                          who + " has no OAuth client id (mxctl mailbox oauth " + mb.address +
                              " --client-id ID)");
    auto refresh = secrets_->get(secret_name::oauth_refresh_token(mb.address));
    auto client_secret = secrets_->get(secret_name::oauth_client_secret(mb.address));
    std::string url;
    if (provider == auth_method::google) {
        url = settings_.google_token_url;
    } else {
        if (mb.oauth.tenant.empty())
            throw oauth_error(oauth_error::kind::config,
                              who + " has no Microsoft tenant (mxctl mailbox oauth " + mb.address +
                                  " --tenant TENANT)");
        url = settings_.microsoft_token_url;
        if (auto p = url.find("{tenant}"); p != std::string::npos)
            url.replace(p, 8, mb.oauth.tenant);
    }

    curl::easy h;
    std::string grant;
    std::string form = "client_id=" + h.escape(mb.oauth.client_id);
    if (refresh && !refresh->empty()) {
        grant = "refresh_token";
        form += "&grant_type=refresh_token&refresh_token=" + h.escape(*refresh);
        if (client_secret && !client_secret->empty())
            form += "&client_secret=" + h.escape(*client_secret);
        if (provider == auth_method::microsoft)
            form += "&scope=" + h.escape(settings_.microsoft_scope);
    } else if (provider == auth_method::microsoft && client_secret && !client_secret->empty()) {
        grant = "client_credentials";
        form += "&grant_type=client_credentials&client_secret=" + h.escape(*client_secret) +
                "&scope=" + h.escape(settings_.microsoft_app_scope);
    } else {
        throw oauth_error(oauth_error::kind::config,
                          who + " has no OAuth refresh token" +
                              (provider == auth_method::microsoft ? " or client secret" : "") +
                              " (mxctl mailbox oauth " + mb.address + " --refresh-token -)");
    }

    std::string body;
    h.set(CURLOPT_URL, "CURLOPT_URL", url);
    h.set(CURLOPT_COPYPOSTFIELDS, "CURLOPT_COPYPOSTFIELDS", form);
    h.set(CURLOPT_PROTOCOLS_STR, "CURLOPT_PROTOCOLS_STR", "https,http");
    h.set(CURLOPT_FOLLOWLOCATION, "CURLOPT_FOLLOWLOCATION", 0L);
    h.set(CURLOPT_TIMEOUT, "CURLOPT_TIMEOUT", static_cast<long>(settings_.timeout_seconds));
    if (!settings_.ca_file.empty()) h.set(CURLOPT_CAINFO, "CURLOPT_CAINFO", settings_.ca_file);
    h.set_callback(CURLOPT_WRITEFUNCTION, "CURLOPT_WRITEFUNCTION", &collect_cb);
    h.set(CURLOPT_WRITEDATA, "CURLOPT_WRITEDATA", static_cast<void*>(&body));
    curl::slist headers;
    headers.append("Accept: application/json");
    h.set(CURLOPT_HTTPHEADER, "CURLOPT_HTTPHEADER", headers);
    form.assign(form.size(), '\0');  // the secret does not linger in our copy

    CURLcode rc = h.perform();
    if (rc != CURLE_OK)
        throw oauth_error(oauth_error::kind::unavailable,
                          "token endpoint " + url + " unreachable: " + h.describe(rc));
    long status = h.response_code();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(body);
    } catch (const std::exception&) {
        j = nlohmann::json::object();
    }
    if (status != 200 || !j.is_object() || !j.contains("access_token")) {
        std::string err = j.is_object() ? j.value("error", "") : "";
        std::string desc = j.is_object() ? j.value("error_description", "") : "";
        std::string msg = "token endpoint " + url + " answered HTTP " + std::to_string(status);
        if (!err.empty()) msg += ": " + mail::single_line(err, 100);
        if (!desc.empty()) msg += " (" + mail::single_line(desc, 300) + ")";
        bool denied = status >= 400 && status < 500;
        throw oauth_error(denied ? oauth_error::kind::denied : oauth_error::kind::unavailable,
                          msg + " for " + who);
    }
    oauth_token t;
    t.grant = grant;
    t.access_token = j.value("access_token", "");
    std::int64_t expires_in = 3600;
    if (auto it = j.find("expires_in"); it != j.end()) {
        if (it->is_number_integer())
            expires_in = it->get<std::int64_t>();
        else if (it->is_string())
            expires_in = std::atoll(it->get<std::string>().c_str());
    }
    t.expires_at = now + expires_in;
    if (t.access_token.empty())
        throw oauth_error(oauth_error::kind::unavailable, "token endpoint returned an empty token");
    // Microsoft rotates refresh tokens: keep the newest one.
    if (auto it = j.find("refresh_token"); it != j.end() && it->is_string() &&
                                           grant == "refresh_token" && refresh &&
                                           it->get<std::string>() != *refresh) {
        try {
            secrets_->set(secret_name::oauth_refresh_token(mb.address), it->get<std::string>());
        } catch (const std::exception& e) {
            spdlog::warn("oauth: cannot store the rotated refresh token of {}: {}",
                         log_safe(mb.address), e.what());
        }
    }
    spdlog::info("oauth: new access token for {} ({} grant, valid {} s)", log_safe(mb.address),
                 grant, expires_in);
    return t;
}

}  // namespace mx
