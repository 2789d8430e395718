#include "global/smtp_route.hpp"

namespace mx {

int default_port(tls_mode m) {
    switch (m) {
        case tls_mode::none:
            return 25;
        case tls_mode::starttls:
            return 587;
        case tls_mode::tls:
            return 465;
    }
    return 25;
}

smtp_route default_smtp_route(const config& cfg) {
    smtp_route r;
    r.host = cfg.smtp.host;
    r.port = cfg.smtp.port;
    r.security = cfg.smtp.security;
    r.ca_file = cfg.smtp.ca_file;
    r.verify_peer = cfg.smtp.verify_peer;
    r.timeout_seconds = cfg.smtp.timeout_seconds > 0 ? cfg.smtp.timeout_seconds : 60;
    r.installation_default = true;
    return r;
}

smtp_route resolve_smtp_route(const config& cfg, const connector& c) {
    smtp_route r = default_smtp_route(cfg);
    r.connector = c.name;
    r.auth = c.smtp.auth;
    r.mechanism = c.smtp.mechanism;
    r.username = c.smtp.username;
    r.allow_plaintext_auth = c.smtp.allow_plaintext_auth;
    if (!c.smtp.host.empty()) {
        r.installation_default = false;
        r.host = c.smtp.host;
        r.security = c.smtp.security.value_or(cfg.smtp.security);
        r.port = c.smtp.port > 0 ? c.smtp.port : default_port(r.security);
    } else if (c.smtp.auth == auth_method::google || c.smtp.auth == auth_method::microsoft) {
        r.installation_default = false;
        r.host = c.smtp.auth == auth_method::google ? "smtp.gmail.com" : "smtp.office365.com";
        r.security = c.smtp.security.value_or(tls_mode::starttls);
        r.port = c.smtp.port > 0 ? c.smtp.port : default_port(r.security);
    } else {
        if (c.smtp.security) r.security = *c.smtp.security;
        if (c.smtp.port > 0) r.port = c.smtp.port;
    }
    return r;
}

std::string smtp_route::url(const std::string& ehlo_name) const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::string scheme = security == tls_mode::tls ? "smtps://" : "smtp://";
    std::string ehlo;
    for (char c : ehlo_name)  // the URL path is the EHLO name; keep it a plain host name
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ehlo += c;
    return scheme + h + ":" + std::to_string(port) + "/" + ehlo;
}

std::string smtp_route::server_key() const {
    return host + ":" + std::to_string(port) + "/" + std::string(to_string(security));
}

std::string smtp_route::describe() const {
    std::string s = (security == tls_mode::tls ? "smtps://" : "smtp://") + host + ":" +
                    std::to_string(port) + " (" + std::string(to_string(security));
    if (installation_default) s += ", installation default";
    switch (auth) {
        case auth_method::none:
            s += ", no authentication";
            break;
        case auth_method::generic:
            s += ", generic " + std::string(to_string(mechanism)) + " as '" + username + "'";
            break;
        case auth_method::google:
        case auth_method::microsoft:
            s += ", " + std::string(to_string(auth)) + " XOAUTH2";
            if (!username.empty()) s += " as '" + username + "'";
            break;
    }
    return s + ")";
}

}  // namespace mx
