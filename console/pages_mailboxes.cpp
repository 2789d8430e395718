// console mailboxes: search (substring of the address, per connector, 200 a page with "more"),
// add, remove and the bulk CSV/JSON import — ops::add_mailbox / remove_mailbox /
// import_mailbox_text, as `mxctl mailbox add|remove|import` (all or
// nothing, every refused line listed). Google/Microsoft mailboxes show their OAuth2 state and
// link to the authorisation page (pages_oauth.cpp).
#include <ctime>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

constexpr std::size_t shown_max = 200;

std::string connector_options(const std::vector<connector>& cs, const std::string& selected,
                              bool with_all) {
    std::string out = with_all ? "<option value=\"\">All connectors</option>" : "";
    for (auto& c : cs)
        out += "<option value=\"" + h(c.name) + "\"" + (c.name == selected ? " selected" : "") +
               ">" + h(c.name) + "</option>";
    return out;
}

std::string search_form(const std::vector<connector>& cs, const std::string& q,
                        const std::string& conn) {
    return "<form method=\"get\" action=\"/mailboxes\" class=\"row g-2 mb-3\" id=\"search\"><div "
           "class=\"col-auto\"><input class=\"form-control\" name=\"q\" id=\"q\" "
           "placeholder=\"Search addresses\" value=\"" +
           h(q) +
           "\"></div><div class=\"col-auto\"><select class=\"form-select\" name=\"connector\">" +
           connector_options(cs, conn, true) +
           "</select></div><div class=\"col-auto\"><button class=\"btn "
           "btn-secondary\">Search</button></div></form>";
}

std::string change_forms(const session& s, const std::vector<connector>& cs,
                         const std::string& conn) {
    return "<form method=\"post\" action=\"/mailboxes/add\" class=\"row g-2 mb-3\" "
           "id=\"add-mailbox\">" +
           csrf_field(s) +
           "<div class=\"col-auto\"><input class=\"form-control\" name=\"address\" "
           "id=\"address\" placeholder=\"local@domain or @domain\" required></div><div "
           "class=\"col-auto\"><select class=\"form-select\" name=\"connector\" "
           "id=\"mailbox-connector\">" +
           connector_options(cs, conn, false) +
           "</select></div><div class=\"col-auto\"><input class=\"form-control\" "
           "name=\"target\" placeholder=\"target (empty: connector default)\"></div><div "
           "class=\"col-auto\"><button class=\"btn btn-primary\" id=\"add\">Add "
           "mailbox</button></div></form>"
           "<details class=\"mb-3\" id=\"import-box\"><summary>Import many (CSV or JSON, all or "
           "nothing)</summary><form method=\"post\" action=\"/mailboxes/import\" "
           "enctype=\"multipart/form-data\" class=\"mt-2 col-lg-8\" id=\"import-form\">" +
           csrf_field(s) +
           "<div class=\"mb-2\"><input class=\"form-control\" type=\"file\" name=\"file\" "
           "id=\"import-file\" accept=\".csv,.json,text/csv,application/json\"></div><div "
           "class=\"mb-2\"><textarea class=\"form-control font-monospace\" name=\"text\" "
           "id=\"import-text\" rows=\"4\" placeholder=\"or paste: address,connector,target&#10;"
           "info@example.com,shop,\"></textarea><div class=\"form-text\">Header "
           "<code>address,connector[,target]</code>, as <code>mxctl mailbox import</code>; if "
           "one line is refused nothing is added and every refused line is listed.</div></div>"
           "<button class=\"btn btn-primary\" id=\"import\">Import</button></form></details>";
}

std::string oauth_cell(console_env& env, const mailbox& m, auth_method method, std::int64_t now) {
    if (method != auth_method::google && method != auth_method::microsoft)
        return m.oauth.client_id.empty() ? "-" : "client " + h(m.oauth.client_id);
    std::string state;
    try {
        state = ops::mailbox_oauth_status(env, m, method).summary(now);
    } catch (const std::exception& e) {
        state = std::string("unknown: ") + e.what();
    }
    return "<a class=\"oauth-state\" href=\"/mailboxes/oauth?address=" + url_encode(m.address) +
           "\">" + h(to_string(method)) + ": " + h(state) + "</a>";
}

std::string mailboxes_body(console_env& env, const session& s, const httplib::Request& req,
                           const std::vector<std::string>& import_errors = {}) {
    std::string q = req.get_param_value("q"), conn = req.get_param_value("connector");
    std::size_t from = 0;
    try {
        from = std::min<std::size_t>(std::stoul(req.get_param_value("from")), 100000000);
    } catch (const std::exception&) {
    }
    auto guard = env.reading();
    auto v = env.open_store_read_only().read();
    auto cs = v.connectors();
    std::map<std::string, auth_method> method;
    for (const auto& c : cs) method[c.name] = c.smtp.auth;
    auto idx = env.mailboxes();
    std::size_t total = 0;
    bool capped = false;
    auto hits = idx->search(ops::lower(q), conn, from, shown_max, total, &capped);
    std::ostringstream o;
    o << notice(req);
    if (!import_errors.empty()) {
        o << "<div class=\"alert alert-danger\" id=\"import-errors\"><p>Nothing imported: fix "
             "these lines and import the file again.</p><ul>";
        for (const auto& e : import_errors) o << "<li>" << h(e) << "</li>";
        o << "</ul></div>";
    }
    o << search_form(cs, q, conn);
    if (!s.read_only) o << change_forms(s, cs, conn);
    o << "<p id=\"count\">" << (capped ? "more than " : "") << total << " mailbox(es)";
    if (total > hits.size())
        o << ", " << (hits.empty() ? 0 : from + 1) << "-" << from + hits.size() << " shown";
    o << "</p><table class=\"table table-sm table-striped\" id=\"mailboxes\"><thead><tr><th>"
         "Address</th><th>Connector</th><th>Target</th><th>OAuth2</th><th></th></tr></thead>"
         "<tbody>";
    auto now = static_cast<std::int64_t>(std::time(nullptr));
    for (auto i : hits) {
        const auto& m = idx->boxes[i];
        o << "<tr><td>" << h(m.address) << "</td><td>" << h(m.connector) << "</td><td>"
          << h(m.target.empty() ? "(connector default)" : m.target) << "</td><td>"
          << oauth_cell(env, m, method[m.connector], now) << "</td><td>";
        if (!s.read_only)
            o << "<form method=\"post\" action=\"/mailboxes/remove\" data-confirm=\"Remove "
              << h(m.address) << "?\">" << csrf_field(s)
              << "<input type=\"hidden\" name=\"address\" value=\"" << h(m.address)
              << "\"><button class=\"btn btn-sm btn-outline-danger\">Remove</button></form>";
        o << "</td></tr>";
    }
    o << "</tbody></table>";
    if (from + hits.size() < total || capped)
        o << "<p><a id=\"more\" class=\"btn btn-outline-secondary\" href=\"/mailboxes?q="
          << url_encode(q) << "&amp;connector=" << url_encode(conn)
          << "&amp;from=" << from + hits.size() << "\">More…</a></p>";
    return o.str();
}

}  // namespace

void install_mailbox_pages(httplib::Server& svr, console_env& env, auth& a) {
    svr.Get("/mailboxes", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(page(s, "Mailboxes", mailboxes_body(env, s, req)),
                        "text/html; charset=utf-8");
    });
    a.post(svr, "/mailboxes/add", false, [&](const httplib::Request& req, httplib::Response& res) {
        std::string addr = req.get_param_value("address"), conn = req.get_param_value("connector");
        act(res, "/mailboxes?connector=" + url_encode(conn), "mailbox " + addr + " added", [&] {
            auto guard = env.writing();
            ops::add_mailbox(env, addr, conn, req.get_param_value("target"));
        });
    });
    a.post(
        svr, "/mailboxes/import", false, [&](const httplib::Request& req, httplib::Response& res) {
            auto s = current(a, req);
            std::string text = form_value(req, "text"), source = "pasted text";
            if (req.is_multipart_form_data() && req.has_file("file")) {
                auto f = req.get_file_value("file");
                if (!f.content.empty()) {
                    text = f.content;
                    source = f.filename.empty() ? "uploaded file" : f.filename;
                }
            }
            std::vector<std::string> problems;
            try {
                if (text.find_first_not_of(" \t\r\n") == std::string::npos)
                    throw ops::import_error({"nothing to import: choose a file or paste lines"});
                auto guard = env.writing();
                auto n = ops::import_mailbox_text(env, text, source);
                return redirect(
                    res, "/mailboxes?ok=" + url_encode(std::to_string(n) + " mailboxes imported"));
            } catch (const ops::import_error& e) {
                problems = e.problems();
            } catch (const ops::op_error& e) {
                problems = {e.what()};
            } catch (const rule_error& e) {
                problems = {e.what()};
            }
            res.status = 400;
            res.set_content(page(s, "Mailboxes", mailboxes_body(env, s, req, problems)),
                            "text/html; charset=utf-8");
        });
    a.post(svr, "/mailboxes/remove", false,
           [&](const httplib::Request& req, httplib::Response& res) {
               std::string addr = req.get_param_value("address");
               act(res, "/mailboxes", "mailbox " + addr + " removed", [&] {
                   auto guard = env.writing();
                   ops::remove_mailbox(env, addr);
               });
           });
}

}  // namespace mx::console
