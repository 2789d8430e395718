// console ImportFailed: per connector the files the importer could not import — date,
// sender, recipients, reason, bounce state, subject — with the header view, the .eml download,
// retry and purge (ops::retry_failed / ops::purge_failed, as `mxctl failed retry|purge`).
// Security: ids are checked by ops::find_failed (no '/', no leading '.'); every value from the
// message or its reason file is escaped; the download is an attachment, never rendered.
#include <fstream>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

using ops::json_str;

std::string recipients(const nlohmann::json& r) {
    std::string out;
    if (auto it = r.find("recipients"); it != r.end() && it->is_array())
        for (auto& rc : *it) out += (out.empty() ? "" : ", ") + json_str(rc, "recipient");
    return out.empty() ? json_str(r, "recipient") : out;
}

std::string bounce(const nlohmann::json& r) {
    auto it = r.find("bounce");
    return it != r.end() && it->is_object() ? json_str(*it, "state") : "unknown";
}

std::string list(console_env& env, const session& s, const httplib::Request& req) {
    std::string conn = req.get_param_value("connector");
    std::vector<ops::failed_entry> entries;
    std::vector<connector> cs;
    {
        auto guard = env.reading();
        entries = ops::scan_failed(env, conn);
        cs = env.open_store_read_only().read().connectors();
    }
    std::ostringstream o;
    o << notice(req) << "<form method=\"get\" action=\"/failed\" class=\"row g-2 mb-3\"><div "
      << "class=\"col-auto\"><select class=\"form-select\" name=\"connector\"><option "
         "value=\"\">All connectors</option>";
    for (auto& c : cs)
        o << "<option value=\"" << h(c.name) << "\"" << (c.name == conn ? " selected" : "") << ">"
          << h(c.name) << "</option>";
    o << "</select></div><div class=\"col-auto\"><button class=\"btn "
         "btn-secondary\">Show</button></div></form><p>Backlog: <span id=\"backlog\">"
      << entries.size()
      << "</span> failed file(s)</p><table class=\"table table-sm table-striped\" "
         "id=\"failed\"><thead><tr><th>Failed</th><th>Connector</th><th>Sender</th><th>"
         "Recipients</th><th>Subject</th><th>Reason</th><th>Bounce</th><th></th></tr></thead>"
         "<tbody>";
    for (auto& e : entries) {
        std::string id = url_encode(e.connector + ":" + e.file);
        const auto& r = e.reason;
        o << "<tr><td>" << h(when(r.value("failed_time", std::int64_t{0}))) << "</td><td>"
          << h(e.connector) << "</td><td>" << h(json_str(r, "envelope_sender")) << "</td><td>"
          << h(recipients(r)) << "</td><td class=\"subject\">" << h(json_str(r, "subject"))
          << "</td><td>" << h(json_str(r, "status") + " " + json_str(r, "reason")) << "</td><td>"
          << h(bounce(r)) << "</td><td><a href=\"/failed/headers?id=" << id
          << "\">Headers</a> <a href=\"/failed/eml?id=" << id << "\">.eml</a> ";
        if (!s.read_only)
            for (auto [action, label] : {std::pair{"retry", "Retry"}, {"purge", "Purge"}})
                o << "<form method=\"post\" action=\"/failed/" << action << "\""
                  << (std::string(action) == "purge" ? " data-confirm=\"Delete this message?\""
                                                     : "")
                  << ">" << csrf_field(s) << "<input type=\"hidden\" name=\"id\" value=\""
                  << h(e.connector + ":" + e.file) << "\"><button class=\"btn btn-sm "
                  << "btn-outline-primary " << action << "\">" << label << "</button></form> ";
        o << "</td></tr>";
    }
    o << "</tbody></table>";
    return o.str();
}

}  // namespace

void install_failed_pages(httplib::Server& svr, console_env& env, auth& a) {
    svr.Get("/failed", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        res.set_content(page(s, "ImportFailed", list(env, s, req)), "text/html; charset=utf-8");
    });
    svr.Get("/failed/headers", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        std::optional<ops::failed_entry> e;
        std::string err;
        try {
            auto guard = env.reading();
            e = ops::find_failed(env, req.get_param_value("id"));
        } catch (const ops::op_error& ex) {
            err = ex.what();
        }
        if (!e) return redirect(res, "/failed?err=" + url_encode(err));
        std::string body = "<p>" + h(e->connector + ":" + e->file) +
                           "</p><pre class=\"headers\" id=\"headers\">" +
                           h(ops::failed_headers(*e)) + "</pre><p><a href=\"/failed\">Back</a></p>";
        res.set_content(page(s, "Headers", body), "text/html; charset=utf-8");
    });
    svr.Get("/failed/eml", [&](const httplib::Request& req, httplib::Response& res) {
        std::optional<ops::failed_entry> e;
        try {
            auto guard = env.reading();
            e = ops::find_failed(env, req.get_param_value("id"));
        } catch (const ops::op_error& ex) {
            return redirect(res, "/failed?err=" + url_encode(ex.what()));
        }
        std::ifstream in(e->message_path(), std::ios::binary);
        std::ostringstream data;
        data << in.rdbuf();
        std::string name;
        for (char c : e->file) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
        res.set_header("Content-Disposition", "attachment; filename=\"" + name + ".eml\"");
        res.set_content(data.str(), "message/rfc822");
    });
    for (bool retry : {true, false})
        a.post(svr, retry ? "/failed/retry" : "/failed/purge", false,
               [&env, retry](const httplib::Request& req, httplib::Response& res) {
                   std::string id = req.get_param_value("id");
                   act(res, "/failed", (retry ? "queued for import again: " : "purged: ") + id,
                       [&] {
                           auto guard = env.writing();
                           auto e = ops::find_failed(env, id);
                           std::string why;
                           if (!retry)
                               ops::purge_failed(e);
                           else if (!ops::retry_failed(e, why))
                               throw ops::op_error(id + ": " + why);
                       });
               });
}

}  // namespace mx::console
