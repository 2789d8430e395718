#include "global/model.hpp"

#include <algorithm>
#include <cctype>

namespace mx {

std::optional<auth_method> parse_auth_method(std::string_view s) {
    if (s == "none" || s.empty()) return auth_method::none;
    if (s == "generic") return auth_method::generic;
    if (s == "google") return auth_method::google;
    if (s == "microsoft") return auth_method::microsoft;
    return std::nullopt;
}

std::string_view to_string(auth_method a) {
    switch (a) {
        case auth_method::none:
            return "none";
        case auth_method::generic:
            return "generic";
        case auth_method::google:
            return "google";
        case auth_method::microsoft:
            return "microsoft";
    }
    return "none";
}

std::optional<sasl_mechanism> parse_sasl_mechanism(std::string_view s) {
    if (s == "auto" || s.empty()) return sasl_mechanism::automatic;
    if (s == "plain" || s == "PLAIN") return sasl_mechanism::plain;
    if (s == "login" || s == "LOGIN") return sasl_mechanism::login;
    if (s == "cram-md5" || s == "CRAM-MD5") return sasl_mechanism::cram_md5;
    return std::nullopt;
}

std::string_view to_string(sasl_mechanism m) {
    switch (m) {
        case sasl_mechanism::automatic:
            return "auto";
        case sasl_mechanism::plain:
            return "plain";
        case sasl_mechanism::login:
            return "login";
        case sasl_mechanism::cram_md5:
            return "cram-md5";
    }
    return "auto";
}

namespace secret_name {
std::string smtp_password(std::string_view c) {
    return "connector/" + std::string(c) + "/smtp.secret";
}
std::string oauth_client_secret(std::string_view a) {
    return "mailbox/" + std::string(a) + "/oauth.client_secret";
}
std::string oauth_refresh_token(std::string_view a) {
    return "mailbox/" + std::string(a) + "/oauth.refresh_token";
}
std::string target_secret(std::string_view a) {
    return "mailbox/" + std::string(a) + "/target.secret";
}
}  // namespace secret_name

bool valid_connector_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    if (!std::isalnum(static_cast<unsigned char>(name.front()))) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

std::optional<std::string> validate_target(std::string_view t) {
    if (t.empty()) return std::nullopt;
    auto colon = t.find(':');
    if (colon == std::string_view::npos || colon + 1 == t.size())
        return "target must be maildir:PATH, webhook:URL or exec:COMMAND";
    auto kind = t.substr(0, colon);
    auto rest = t.substr(colon + 1);
    if (kind == "maildir") {
        if (rest.front() != '/') return "maildir target path must be absolute";
        return std::nullopt;
    }
    if (kind == "webhook") {
        if (rest.rfind("http://", 0) != 0 && rest.rfind("https://", 0) != 0)
            return "webhook target must be an http:// or https:// URL";
        return std::nullopt;
    }
    if (kind == "exec") {
        if (rest.front() != '/') return "exec target must start with an absolute command path";
        return std::nullopt;
    }
    return "unknown target kind '" + std::string(kind) + "' (maildir, webhook, exec)";
}

std::optional<std::string> validate(const connector& c) {
    if (!valid_connector_name(c.name))
        return "connector name must be 1-64 characters: letters, digits, '-', '_', '.'";
    if (c.drop_folder.empty()) return "drop folder is required (--drop-folder /absolute/path)";
    if (c.drop_folder.front() != '/')
        return "drop folder must be an absolute path, got '" + c.drop_folder + "'";
    if (c.drop_folder.find('\n') != std::string::npos) return "drop folder contains a newline";
    if (c.smtp.port < 0 || c.smtp.port > 65535) return "smtp.port must be 1..65535 (0: default)";
    if (c.smtp.host.find_first_of(" \r\n/") != std::string::npos)
        return "smtp.host must be a host name or address";
    if (auto e = validate_target(c.default_target)) return e;
    return std::nullopt;
}

nlohmann::json to_json(const connector& c) {
    nlohmann::json smtp = {
        {"host", c.smtp.host},
        {"port", c.smtp.port},
        {"security", c.smtp.security ? std::string(to_string(*c.smtp.security)) : std::string()},
        {"auth", std::string(to_string(c.smtp.auth))},
        {"mechanism", std::string(to_string(c.smtp.mechanism))},
        {"username", c.smtp.username},
        {"allow_plaintext_auth", c.smtp.allow_plaintext_auth},
    };
    return {
        {"name", c.name},
        {"active", c.active},
        {"drop_folder", c.drop_folder},
        {"domains", c.domains},
        {"smtp", smtp},
        {"bounce_sender", c.bounce_sender},
        {"max_message_size", c.max_message_size},
        {"default_target", c.default_target},
    };
}

connector connector_from_json(const nlohmann::json& j) {
    connector c;
    c.name = j.value("name", "");
    c.active = j.value("active", true);
    c.drop_folder = j.value("drop_folder", "");
    if (j.contains("domains")) c.domains = j.at("domains").get<std::vector<std::string>>();
    if (auto it = j.find("smtp"); it != j.end()) {
        const auto& s = *it;
        c.smtp.host = s.value("host", "");
        c.smtp.port = s.value("port", 0);
        if (auto sec = s.value("security", ""); !sec.empty()) c.smtp.security = parse_tls_mode(sec);
        c.smtp.auth = parse_auth_method(s.value("auth", "none")).value_or(auth_method::none);
        c.smtp.mechanism =
            parse_sasl_mechanism(s.value("mechanism", "auto")).value_or(sasl_mechanism::automatic);
        c.smtp.username = s.value("username", "");
        c.smtp.allow_plaintext_auth = s.value("allow_plaintext_auth", false);
    }
    c.bounce_sender = j.value("bounce_sender", "");
    c.max_message_size = j.value("max_message_size", std::uint64_t{0});
    c.default_target = j.value("default_target", "");
    return c;
}

nlohmann::json to_json(const mailbox& m) {
    nlohmann::json j = {{"address", m.address}, {"connector", m.connector}, {"target", m.target}};
    if (!m.oauth.client_id.empty() || !m.oauth.tenant.empty())
        j["oauth"] = {{"client_id", m.oauth.client_id}, {"tenant", m.oauth.tenant}};
    return j;
}

mailbox mailbox_from_json(std::string address, const nlohmann::json& j) {
    mailbox m;
    m.address = std::move(address);
    m.connector = j.value("connector", "");
    m.target = j.value("target", "");
    if (auto it = j.find("oauth"); it != j.end()) {
        m.oauth.client_id = it->value("client_id", "");
        m.oauth.tenant = it->value("tenant", "");
    }
    return m;
}

}  // namespace mx
