// console check: "Check an address" — ops::check, the answer `mxctl check` and the milter give.
#include <sstream>

#include "console.hpp"

namespace mx::console {

void install_check_page(httplib::Server& svr, console_env& env, auth& a) {
    svr.Get("/check", [&](const httplib::Request& req, httplib::Response& res) {
        auto s = current(a, req);
        std::string addr = req.get_param_value("address");
        std::ostringstream o;
        o << "<form method=\"get\" action=\"/check\" class=\"row g-2 mb-3\"><div "
             "class=\"col-auto\"><input class=\"form-control\" name=\"address\" id=\"address\" "
             "placeholder=\"recipient address\" value=\""
          << h(addr)
          << "\"></div><div class=\"col-auto\"><button class=\"btn btn-primary\" "
             "id=\"check\">Check</button></div></form>";
        if (!addr.empty()) {
            check_result r;
            {
                auto guard = env.reading();
                r = ops::check(env, addr);
            }
            std::string reply = r.reply();
            if (reply.empty())
                reply = r.verdict == decision::accept ? "(continue: 250 from Postfix)"
                                                      : "(continue: Postfix decides)";
            o << "<table class=\"table table-sm w-auto\" id=\"result\">";
            auto row = [&](const char* k, const std::string& v, const char* id) {
                o << "<tr><th>" << k << "</th><td id=\"" << id << "\">" << h(v) << "</td></tr>";
            };
            row("address", r.recipient ? r.recipient->str() : addr, "r-address");
            row("decision", std::string(to_string(r.verdict)), "r-decision");
            row("reply", reply, "r-reply");
            if (!r.connector.empty()) row("connector", r.connector, "r-connector");
            if (!r.mailbox.empty())
                row("mailbox", r.mailbox + " (" + r.matched_by + ")", "r-mailbox");
            row("reason", r.reason, "r-reason");
            o << "</table>";
        }
        res.set_content(page(s, "Check an address", o.str()), "text/html; charset=utf-8");
    });
}

}  // namespace mx::console
