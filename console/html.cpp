// console html: escaping, the page frame (navigation, logout form), banners, redirects.
#include <cctype>
#include <ctime>

#include "console.hpp"
#include "global/store.hpp"
#include "util/hex.hpp"

namespace mx::console {

std::string h(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 16);
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

std::string url_encode(std::string_view s) {
    // RFC 3986 unreserved characters stay; everything else is %XX.
    return util::percent_encode(s, [](unsigned char c, std::size_t) {
        return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
    });
}

std::string form_value(const httplib::Request& req, const std::string& key) {
    // httplib keeps the fields of a multipart body (the CSV upload) apart from req.params.
    if (req.has_param(key)) return req.get_param_value(key);
    if (req.is_multipart_form_data() && req.has_file(key)) return req.get_file_value(key).content;
    return {};
}

std::string csrf_field(const session& s) {
    return "<input type=\"hidden\" name=\"csrf\" value=\"" + h(s.csrf) + "\">";
}

static std::string head(const std::string& title) {
    return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           "<title>" +
           h(title) +
           " - MX Connector</title>"
           "<link rel=\"stylesheet\" href=\"/static/bootstrap.min.css\">"
           "<link rel=\"stylesheet\" href=\"/static/console.css\">"
           "<script src=\"/static/chart.min.js\" defer></script>"
           "<script src=\"/static/console.js\" defer></script></head>\n";
}

std::string page(const session& s, const std::string& title, const std::string& body) {
    std::string nav;
    for (auto [href, label] : {std::pair{"/", "Dashboard"},
                               {"/connectors", "Connectors"},
                               {"/mailboxes", "Mailboxes"},
                               {"/failed", "ImportFailed"},
                               {"/check", "Check an address"},
                               {"/log", "Log report"}})
        nav += std::string("<li class=\"nav-item\"><a class=\"nav-link") +
               (title == label ? " active" : "") + "\" href=\"" + href + "\">" + label +
               "</a></li>";
    return head(title) +
           "<body><nav class=\"navbar navbar-expand navbar-dark bg-dark mb-3\"><div "
           "class=\"container-fluid\"><span class=\"navbar-brand\">MX Connector</span><ul "
           "class=\"navbar-nav me-auto\">" +
           nav + "</ul><form method=\"post\" action=\"/logout\" class=\"d-flex\">" + csrf_field(s) +
           "<span class=\"navbar-text me-2\" id=\"who\">" + h(s.user) +
           (s.read_only ? " (read-only)" : "") +
           "</span><button class=\"btn btn-sm btn-outline-light\">Log out</button></form>"
           "</div></nav><main class=\"container-fluid\"><h1 class=\"h3\">" +
           h(title) + "</h1>\n" + body + "</main></body></html>\n";
}

std::string login_page(const std::string& csrf, const std::string& error) {
    return head("Log in") +
           "<body><main class=\"container login\"><h1 class=\"h3 my-4\">MX Connector</h1>" +
           (error.empty()
                ? ""
                : "<div class=\"alert alert-danger\" id=\"error\">" + h(error) + "</div>") +
           "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"csrf\" "
           "value=\"" +
           h(csrf) +
           "\"><div class=\"mb-3\"><label class=\"form-label\" for=\"user\">Name</label><input "
           "class=\"form-control\" id=\"user\" name=\"user\" autocomplete=\"username\" "
           "required></div><div class=\"mb-3\"><label class=\"form-label\" "
           "for=\"password\">Password</label><input class=\"form-control\" type=\"password\" "
           "id=\"password\" name=\"password\" autocomplete=\"current-password\" "
           "required></div><button class=\"btn btn-primary\" id=\"login\">Log "
           "in</button></form></main></body></html>\n";
}

std::string notice(const httplib::Request& req) {
    std::string out;
    if (req.has_param("ok"))
        out += "<div class=\"alert alert-success\" id=\"ok\">" + h(req.get_param_value("ok")) +
               "</div>";
    if (req.has_param("err"))
        out += "<div class=\"alert alert-danger\" id=\"err\">" + h(req.get_param_value("err")) +
               "</div>";
    return out;
}

void redirect(httplib::Response& res, const std::string& to) {
    res.status = 303;
    res.set_header("Location", to);
}

void act(httplib::Response& res, const std::string& back, const std::string& done,
         const std::function<void()>& fn) {
    std::string sep = back.find('?') == std::string::npos ? "?" : "&";
    try {
        fn();
        redirect(res, back + sep + "ok=" + url_encode(done));
    } catch (const ops::op_error& e) {
        redirect(res, back + sep + "err=" + url_encode(e.what()));
    } catch (const rule_error& e) {
        redirect(res, back + sep + "err=" + url_encode(e.what()));
    }
}

}  // namespace mx::console
