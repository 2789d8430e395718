// console connectors: the list and the form with the original product's fields — Name,
// Active, Drop folder, Subdomains, SMTP server + port, Authentication method (Generic /
// Google / Microsoft with its detail area) and Mailboxes. Saving turns the form into the
// KEY=VALUE settings of `mxctl connector set` and runs ops::create/update_connector: one
// transaction, the same validation messages as mxctl.
#include <algorithm>
#include <cstring>
#include <ctime>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

struct form_values {
    std::string original, name, drop, domains, host, port, security, auth = "none",
                                                                     mechanism = "auto", username;
    bool active = true, plaintext = false, has_secret = false;
};

form_values from_connector(const connector& c, bool has_secret) {
    form_values f;
    f.original = f.name = c.name;
    f.active = c.active;
    f.drop = c.drop_folder;
    for (auto& d : c.domains) f.domains += d + "\n";
    f.host = c.smtp.host;
    f.port = c.smtp.port ? std::to_string(c.smtp.port) : "";
    f.security = c.smtp.security ? std::string(to_string(*c.smtp.security)) : "";
    f.auth = to_string(c.smtp.auth);
    f.mechanism = to_string(c.smtp.mechanism);
    f.username = c.smtp.username;
    f.plaintext = c.smtp.allow_plaintext_auth;
    f.has_secret = has_secret;
    return f;
}

form_values from_request(const httplib::Request& r) {
    form_values f;
    f.original = r.get_param_value("original");
    f.name = r.get_param_value("name");
    f.active = r.get_param_value("active") == "yes";
    f.drop = r.get_param_value("drop_folder");
    f.domains = r.get_param_value("domains");
    f.host = r.get_param_value("smtp_host");
    f.port = r.get_param_value("smtp_port");
    f.security = r.get_param_value("smtp_security");
    f.auth = r.get_param_value("auth");
    f.mechanism = r.get_param_value("mechanism");
    f.username = r.get_param_value("username");
    f.plaintext = r.get_param_value("allow_plaintext") == "yes";
    return f;
}

std::string select(const char* id, const std::string& value,
                   std::initializer_list<std::pair<const char*, const char*>> options) {
    std::string out =
        std::string("<select class=\"form-select\" id=\"") + id + "\" name=\"" + id + "\">";
    for (auto [v, label] : options)
        out += std::string("<option value=\"") + v + "\"" + (value == v ? " selected" : "") + ">" +
               label + "</option>";
    return out + "</select>";
}

std::string field(const char* id, const char* label, const std::string& input,
                  const char* help = "") {
    return std::string("<div class=\"mb-3\"><label class=\"form-label\" for=\"") + id + "\">" +
           label + "</label>" + input +
           (*help ? std::string("<div class=\"form-text\">") + help + "</div>" : "") + "</div>";
}

std::string text(const char* id, const std::string& value, const char* extra = "") {
    return std::string("<input class=\"form-control\" id=\"") + id + "\" name=\"" + id +
           "\" value=\"" + h(value) + "\" " + extra + ">";
}

std::string mailbox_list(console_env& env, const std::string& conn) {
    if (conn.empty()) return "<p>Save the connector first, then add its mailboxes.</p>";
    auto idx = env.mailboxes();
    std::vector<mailbox> boxes;
    std::size_t total = 0;
    for (const auto& m : idx->boxes)
        if (m.connector == conn && ++total <= 50) boxes.push_back(m);
    std::string out = "<ul id=\"connector-mailboxes\">";
    for (auto& m : boxes) out += "<li>" + h(m.address) + "</li>";
    out += "</ul><p>" + std::to_string(total) +
           " mailbox(es). <a href=\"/mailboxes?connector=" + url_encode(conn) +
           "\">Manage mailboxes</a></p>";
    return out;
}

std::string form(console_env& env, const session& s, const form_values& f,
                 const std::string& error) {
    std::ostringstream o;
    if (!error.empty())
        o << "<div class=\"alert alert-danger\" id=\"err\">" << h(error) << "</div>";
    o << "<form method=\"post\" action=\"/connectors/save\" id=\"connector-form\" "
         "class=\"col-lg-8\">"
      << csrf_field(s) << "<input type=\"hidden\" name=\"original\" value=\"" << h(f.original)
      << "\">"
      << field("name", "Name", text("name", f.name, f.original.empty() ? "required" : "readonly"))
      << "<div class=\"form-check mb-3\"><input class=\"form-check-input\" type=\"checkbox\" "
         "id=\"active\" name=\"active\" value=\"yes\""
      << (f.active ? " checked" : "")
      << "><label class=\"form-check-label\" for=\"active\">Active</label></div>"
      << field("drop_folder", "Drop folder", text("drop_folder", f.drop, "required"),
               "Absolute path of the folder Postfix delivers into.")
      << field("domains", "Subdomains",
               "<textarea class=\"form-control\" id=\"domains\" name=\"domains\" rows=\"3\">" +
                   h(f.domains) + "</textarea>",
               "One per line: example.com, .example.com (every subdomain), . (every domain).")
      << "<div class=\"row\"><div class=\"col-md-8\">"
      << field("smtp_host", "SMTP server", text("smtp_host", f.host),
               "Empty: the installation's default server.")
      << "</div><div class=\"col-md-4\">"
      << field("smtp_port", "Port", text("smtp_port", f.port, "inputmode=\"numeric\""))
      << "</div></div>"
      << field("auth", "Authentication method",
               select("auth", f.auth,
                      {{"none", "None"},
                       {"generic", "Generic"},
                       {"google", "Google"},
                       {"microsoft", "Microsoft"}}))
      << "<fieldset data-auth=\"generic\" class=\"border rounded p-3 mb-3\"><legend "
         "class=\"h6\">Generic</legend>"
      << field("smtp_security", "Transport security",
               select("smtp_security", f.security,
                      {{"", "Installation default"},
                       {"none", "None"},
                       {"starttls", "STARTTLS"},
                       {"tls", "TLS"}}))
      << field("mechanism", "Method",
               select("mechanism", f.mechanism,
                      {{"auto", "Automatic"},
                       {"plain", "PLAIN"},
                       {"login", "LOGIN"},
                       {"cram-md5", "CRAM-MD5"}}))
      << field("username", "User name", text("username", f.username, "autocomplete=\"off\""))
      << field("password", "Password",
               "<input class=\"form-control\" type=\"password\" id=\"password\" name=\"password\" "
               "autocomplete=\"new-password\">",
               f.has_secret ? "A password is set; leave empty to keep it." : "No password set.")
      << "<div class=\"form-check\"><input class=\"form-check-input\" type=\"checkbox\" "
         "id=\"allow_plaintext\" name=\"allow_plaintext\" value=\"yes\""
      << (f.plaintext ? " checked" : "")
      << "><label class=\"form-check-label\" for=\"allow_plaintext\">Allow the password without "
         "TLS</label></div></fieldset>"
      << "<div data-auth=\"google microsoft\" class=\"alert alert-info\">Google and Microsoft "
         "credentials (OAuth2) are set per mailbox: on the Mailboxes page, the OAuth2 column "
         "of each mailbox leads to its authorisation (or <code>mxctl mailbox oauth "
         "ADDRESS</code>).</div>"
      << "<h2 class=\"h5\">Mailboxes</h2>" << mailbox_list(env, f.original);
    if (!s.read_only) o << "<button class=\"btn btn-primary\" id=\"save\">Save</button>";
    o << " <a class=\"btn btn-secondary\" href=\"/connectors\">Back</a></form>";
    return o.str();
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) {
        while (!l.empty() && (l.back() == '\r' || l.back() == ' ' || l.back() == ',')) l.pop_back();
        auto s = l.find_first_not_of(" \t");
        if (s != std::string::npos) out.push_back(l.substr(s));
    }
    return out;
}

void save(console_env& env, const httplib::Request& req) {
    auto f = from_request(req);
    std::vector<std::string> kv = {
        "active=" + std::string(f.active ? "yes" : "no"),
        "drop_folder=" + f.drop,
        "smtp.host=" + f.host,
        "smtp.port=" + f.port,
        "smtp.security=" + f.security,
        "smtp.auth=" + f.auth,
        "smtp.username=" + f.username,
        "smtp.allow_plaintext_auth=" + std::string(f.plaintext ? "yes" : "no")};
    if (!f.mechanism.empty()) kv.push_back("smtp.mechanism=" + f.mechanism);
    std::string pw = req.get_param_value("password");
    if (pw == "-") throw ops::op_error("'-' is not accepted as a password here");
    if (!pw.empty()) kv.push_back("smtp.secret=" + pw);
    if (f.drop.empty()) throw ops::op_error("the drop folder is required (an absolute path)");
    auto guard = env.writing();
    if (f.original.empty())
        ops::create_connector(env, f.name, kv, lines(f.domains));
    else
        ops::update_connector(env, f.original, kv, lines(f.domains));
}

std::string list(console_env& env, const session& s, const httplib::Request& req,
                 today_cache& today) {
    auto guard = env.reading();
    auto v = env.open_store_read_only().read();
    auto cs = v.connectors();
    auto idx = env.mailboxes();
    auto count = [&](const std::string& name) {
        auto it = idx->per_connector.find(name);
        return it == idx->per_connector.end() ? std::size_t{0} : it->second;
    };
    auto* shm = env.shm();
    std::ostringstream o;
    o << notice(req);
    if (!s.read_only)
        o << "<p><a class=\"btn btn-primary\" href=\"/connectors/edit\" id=\"new-connector\">New "
             "connector</a></p>";
    o << "<table class=\"table table-sm table-striped\" id=\"connectors\"><thead><tr><th>Name</"
         "th><th>Active</th><th>Subdomains</th><th>Mailboxes</th><th>Accepted today</th><th>"
         "Rejected today</th><th>Imported today</th><th>Failed today</th><th></th></tr></thead>"
         "<tbody>";
    std::int64_t earliest = 0;
    for (auto& c : cs) {
        std::string d;
        for (auto& x : c.domains) d += (d.empty() ? "" : ", ") + x;
        sample t;
        if (shm)
            for (auto* slot : shm->used_slots())
                if (c.name ==
                    std::string_view(slot->name, ::strnlen(slot->name, sizeof slot->name))) {
                    auto tc = today.of(
                        *slot, static_cast<std::int64_t>(shm->layout().created_time.load()));
                    t = tc.counts;
                    earliest = std::max(earliest, tc.from);
                }
        o << "<tr><td><a href=\"/connectors/edit?name=" << url_encode(c.name) << "\">" << h(c.name)
          << "</a></td><td>" << (c.active ? "yes" : "no") << "</td><td>" << h(d.empty() ? "-" : d)
          << "</td><td>" << count(c.name) << "</td><td class=\"today-accepted\">" << t.accepted
          << "</td><td class=\"today-rejected\">" << t.rejected
          << "</td><td class=\"today-imported\">" << t.imported
          << "</td><td class=\"today-failed\">" << t.failed << "</td><td>";
        if (!s.read_only)
            o << "<form method=\"post\" action=\"/connectors/active\">" << csrf_field(s)
              << "<input type=\"hidden\" name=\"name\" value=\"" << h(c.name)
              << "\"><input type=\"hidden\" name=\"active\" value=\"" << (c.active ? "no" : "yes")
              << "\"><button class=\"btn btn-sm btn-outline-secondary\">"
              << (c.active ? "Deactivate" : "Activate") << "</button></form>";
        o << "</td></tr>";
    }
    auto midnight = local_midnight(static_cast<std::int64_t>(::time(nullptr)));
    o << "</tbody></table><p class=\"text-muted\" id=\"today-note\">Today: since local midnight"
      << (earliest > midnight ? " (the counter history starts at " + when(earliest) + ")" : "")
      << ".</p>";
    return o.str();
}

}  // namespace

void install_connector_pages(httplib::Server& svr, console_env& env, auth& a, today_cache& today) {
    svr.Get("/connectors", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(page(s, "Connectors", list(env, s, req, today)),
                        "text/html; charset=utf-8");
    });
    svr.Get("/connectors/edit", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        form_values f;
        if (req.has_param("name")) {
            auto guard = env.reading();
            auto c =
                env.open_store_read_only().read().find_connector(req.get_param_value("name"), true);
            if (!c) return redirect(res, "/connectors?err=" + url_encode("no such connector"));
            f = from_connector(*c, ops::has_smtp_secret(env, c->name));
        }
        std::string body;
        {
            auto guard = env.reading();
            body = form(env, s, f, "");
        }
        res.set_content(
            page(s, f.original.empty() ? "New connector" : "Connector " + f.original, body),
            "text/html; charset=utf-8");
    });
    a.post(svr, "/connectors/save", false,
           [&](const httplib::Request& req, httplib::Response& res) {
               auto s = current(a, req);
               std::string error;
               try {
                   save(env, req);
                   return redirect(
                       res, "/connectors?ok=" +
                                url_encode("connector " + req.get_param_value("name") + " saved"));
               } catch (const ops::op_error& e) {
                   error = e.what();
               } catch (const rule_error& e) {
                   error = e.what();
               }
               auto f = from_request(req);
               std::string body;
               {
                   auto guard = env.reading();
                   body = form(env, s, f, error);
               }
               res.status = 400;
               res.set_content(
                   page(s, f.original.empty() ? "New connector" : "Connector " + f.original, body),
                   "text/html; charset=utf-8");
           });
    a.post(svr, "/connectors/active", false,
           [&](const httplib::Request& req, httplib::Response& res) {
               std::string name = req.get_param_value("name");
               bool on = req.get_param_value("active") == "yes";
               act(res, "/connectors", "connector " + name + (on ? " activated" : " deactivated"),
                   [&] {
                       auto guard = env.writing();
                       ops::set_connector_active(env, name, on);
                   });
           });
}

}  // namespace mx::console
