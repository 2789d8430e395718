// console mailboxes: search (substring of the address, per connector, first 200 shown), add
// and remove — ops::add_mailbox / ops::remove_mailbox, as `mxctl mailbox add|remove`.
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

std::string body(console_env& env, const session& s, const httplib::Request& req) {
    std::string q = req.get_param_value("q"), conn = req.get_param_value("connector");
    auto guard = env.reading();
    auto v = env.open_store_read_only().read();
    auto cs = v.connectors();
    std::size_t total = 0;
    std::vector<mailbox> boxes;
    auto idx = env.mailboxes();
    std::string needle = ops::lower(q);
    for (const auto& m : idx->boxes)
        if (ops::mailbox_matches(m, needle, conn) && ++total <= shown_max) boxes.push_back(m);
    std::ostringstream o;
    o << notice(req)
      << "<form method=\"get\" action=\"/mailboxes\" class=\"row g-2 mb-3\" id=\"search\"><div "
         "class=\"col-auto\"><input class=\"form-control\" name=\"q\" id=\"q\" "
         "placeholder=\"Search addresses\" value=\""
      << h(q) << "\"></div><div class=\"col-auto\"><select class=\"form-select\" "
      << "name=\"connector\">" << connector_options(cs, conn, true)
      << "</select></div><div class=\"col-auto\"><button class=\"btn "
         "btn-secondary\">Search</button></div></form>";
    if (!s.read_only)
        o << "<form method=\"post\" action=\"/mailboxes/add\" class=\"row g-2 mb-3\" "
             "id=\"add-mailbox\">"
          << csrf_field(s)
          << "<div class=\"col-auto\"><input class=\"form-control\" name=\"address\" "
             "id=\"address\" placeholder=\"local@domain or @domain\" required></div><div "
             "class=\"col-auto\"><select class=\"form-select\" name=\"connector\" "
             "id=\"mailbox-connector\">"
          << connector_options(cs, conn, false)
          << "</select></div><div class=\"col-auto\"><input class=\"form-control\" "
             "name=\"target\" placeholder=\"target (empty: connector default)\"></div><div "
             "class=\"col-auto\"><button class=\"btn btn-primary\" id=\"add\">Add "
             "mailbox</button></div></form>";
    o << "<p id=\"count\">" << total << " mailbox(es)"
      << (total > boxes.size() ? ", first " + std::to_string(boxes.size()) + " shown" : "")
      << "</p><table class=\"table table-sm table-striped\" id=\"mailboxes\"><thead><tr><th>"
         "Address</th><th>Connector</th><th>Target</th><th>OAuth2</th><th></th></tr></thead>"
         "<tbody>";
    for (auto& m : boxes) {
        std::string oauth = m.oauth.client_id.empty() ? "-" : "client " + m.oauth.client_id;
        o << "<tr><td>" << h(m.address) << "</td><td>" << h(m.connector) << "</td><td>"
          << h(m.target.empty() ? "(connector default)" : m.target) << "</td><td>" << h(oauth)
          << "</td><td>";
        if (!s.read_only)
            o << "<form method=\"post\" action=\"/mailboxes/remove\" data-confirm=\"Remove "
              << h(m.address) << "?\">" << csrf_field(s)
              << "<input type=\"hidden\" name=\"address\" value=\"" << h(m.address)
              << "\"><button class=\"btn btn-sm btn-outline-danger\">Remove</button></form>";
        o << "</td></tr>";
    }
    o << "</tbody></table>";
    return o.str();
}

}  // namespace

void install_mailbox_pages(httplib::Server& svr, console_env& env, auth& a) {
    svr.Get("/mailboxes", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(page(s, "Mailboxes", body(env, s, req)), "text/html; charset=utf-8");
    });
    a.post(svr, "/mailboxes/add", false, [&](const httplib::Request& req, httplib::Response& res) {
        std::string addr = req.get_param_value("address"), conn = req.get_param_value("connector");
        act(res, "/mailboxes?connector=" + url_encode(conn), "mailbox " + addr + " added", [&] {
            auto guard = env.writing();
            ops::add_mailbox(env, addr, conn, req.get_param_value("target"));
        });
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
