// target_webhook_spec: "webhook:URL[#options]" parsed into webhook_options, with the
// defaults from [targets] (see target_http.hpp). Credentials (auth=bearer|basic,
// user:password@ in the URL) over plain http:// are refused unless the host is a loopback
// address, so they never cross a network unencrypted; error texts never show the password.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "target_http.hpp"

namespace mx::importer {
namespace {

std::uint64_t parse_uint(std::string_view key, std::string_view v) {
    std::uint64_t n = 0;
    std::uint64_t mult = 1;
    if (!v.empty() && (v.back() == 'k' || v.back() == 'K')) mult = 1024, v.remove_suffix(1);
    if (!v.empty() && (v.back() == 'm' || v.back() == 'M')) mult = 1024 * 1024, v.remove_suffix(1);
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size())
        throw target_error("webhook option " + std::string(key) + ": '" + std::string(v) +
                           "' is not a number");
    return n * mult;
}

// The host of an http(s) URL (no userinfo, port or brackets) and whether userinfo was given.
std::string url_host(std::string_view url, bool& has_userinfo) {
    auto scheme_end = url.find("://");
    auto rest = scheme_end == std::string_view::npos ? url : url.substr(scheme_end + 3);
    auto authority = rest.substr(0, rest.find_first_of("/?#"));
    has_userinfo = false;
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
        has_userinfo = true;
        authority.remove_prefix(at + 1);
    }
    if (!authority.empty() && authority.front() == '[') {
        auto close = authority.find(']');
        return std::string(
            authority.substr(1, close == std::string_view::npos ? close : close - 1));
    }
    return std::string(authority.substr(0, authority.find(':')));
}

bool loopback_host(std::string host) {
    for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (host == "localhost" || host == "localhost.") return true;
    in_addr a4{};
    if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    in6_addr a6{};
    if (::inet_pton(AF_INET6, host.c_str(), &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

bool plain_http(std::string_view url) {
    return url.size() >= 7 &&
           std::equal(url.begin(), url.begin() + 7, "http://", [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == b;
           });
}

}  // namespace

std::string webhook_options::describe_url() const {
    std::string_view u = url;
    auto scheme_end = u.find("://");
    if (scheme_end == std::string_view::npos) return reason_text(u, 200);
    std::string out(u.substr(0, scheme_end + 3));
    auto rest = u.substr(scheme_end + 3);
    auto path_at = rest.find_first_of("/?");
    auto authority = rest.substr(0, path_at);
    if (auto at = authority.rfind('@'); at != std::string_view::npos)
        authority.remove_prefix(at + 1);  // never show user:password
    out += authority;
    if (path_at != std::string_view::npos) {
        auto path = rest.substr(path_at);
        path = path.substr(0, path.find('?'));  // queries may carry tokens
        out += path;
    }
    return reason_text(out, 200);
}

webhook_options parse_webhook_spec(std::string_view rest, const config_reader& targets) {
    webhook_options o;
    auto hash = rest.find('#');
    o.url = std::string(rest.substr(0, hash));
    if (o.url.rfind("http://", 0) != 0 && o.url.rfind("https://", 0) != 0)
        throw target_error("webhook target needs an http:// or https:// URL, got '" +
                           reason_text(o.url, 200) + "'");
    for (char c : o.url)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            throw target_error("webhook URL contains a blank or control character");
    // Defaults from [targets].
    std::string fmt = targets.word("webhook_format", "raw", {"raw", "json"});
    std::string frag = hash == std::string_view::npos ? "" : std::string(rest.substr(hash + 1));
    auto ms = [](double s) {
        return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
    };
    o.inline_max =
        static_cast<std::uint64_t>(targets.integer("webhook_inline_max", 0, 0, 1LL << 30));
    o.timeout = ms(targets.number("webhook_timeout_seconds", 30, 1, 86400));
    o.connect_timeout = ms(targets.number("webhook_connect_timeout_seconds", 10, 1, 3600));
    o.concurrency = static_cast<unsigned>(targets.integer("webhook_concurrency", 4, 1, 1024));
    o.ca_file = targets.string("webhook_ca_file", "");
    o.max_response =
        static_cast<std::size_t>(targets.integer("webhook_max_response", 4096, 0, 16 << 20));
    std::string auth = "none";
    std::size_t pos = 0;
    while (pos <= frag.size() && !frag.empty()) {
        auto end = frag.find_first_of("&;", pos);
        std::string kv = frag.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        pos = end == std::string::npos ? frag.size() + 1 : end + 1;
        if (kv.empty()) continue;
        auto eq = kv.find('=');
        std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (k == "format")
            fmt = v;
        else if (k == "inline_max")
            o.inline_max = parse_uint(k, v);
        else if (k == "auth")
            auth = v;
        else if (k == "user")
            o.user = v;
        else if (k == "sign")
            o.sign = v != "0" && v != "false" && v != "no";
        else if (k == "timeout")
            o.timeout = std::chrono::milliseconds(parse_uint(k, v) * 1000);
        else if (k == "connect_timeout")
            o.connect_timeout = std::chrono::milliseconds(parse_uint(k, v) * 1000);
        else if (k == "concurrency")
            o.concurrency = static_cast<unsigned>(std::max<std::uint64_t>(1, parse_uint(k, v)));
        else if (k == "ca")
            o.ca_file = v;
        else
            throw target_error("unknown webhook option '" + reason_text(k, 60) +
                               "' (format, inline_max, auth, user, sign, timeout, "
                               "connect_timeout, concurrency, ca)");
    }
    if (fmt == "raw" || fmt == "rfc822")
        o.body = webhook_options::format::raw;
    else if (fmt == "json")
        o.body = webhook_options::format::json;
    else
        throw target_error("webhook format must be raw or json, not '" + reason_text(fmt, 60) +
                           "'");
    if (auth == "none")
        o.auth = webhook_options::auth::none;
    else if (auth == "bearer")
        o.auth = webhook_options::auth::bearer;
    else if (auth == "basic")
        o.auth = webhook_options::auth::basic;
    else
        throw target_error("webhook auth must be none, bearer or basic, not '" +
                           reason_text(auth, 60) + "'");
    if (o.auth == webhook_options::auth::basic && o.user.empty())
        throw target_error("webhook auth=basic needs user=NAME (the password is target.secret)");
    bool userinfo = false;
    std::string host = url_host(o.url, userinfo);
    if (plain_http(o.url) && (o.auth != webhook_options::auth::none || userinfo) &&
        !loopback_host(host))
        throw target_error("webhook " + o.describe_url() +
                           ": credentials (auth=bearer/basic or user:password@) are never sent "
                           "over plain http:// except to a loopback address; use https://");
    if (o.timeout.count() <= 0) o.timeout = std::chrono::milliseconds(30000);
    if (o.connect_timeout.count() <= 0) o.connect_timeout = std::chrono::milliseconds(10000);
    return o;
}

}  // namespace mx::importer
