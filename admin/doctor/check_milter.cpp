// doctor check group "milter": the milter socket answers OPTNEG as Postfix would send it,
// Postfix's account may connect to it (group, mode, folders), and the socketmap answers.
#include <grp.h>
#include <sys/stat.h>

#include <sstream>

#include "doctor/doctor.hpp"
#include "global/milter_client.hpp"
#include "global/postfix_conf.hpp"

namespace mx::admin::doctor {
namespace {

void check_optneg(doctor_state& d, const postfix::milter_endpoint& ep) {
    const auto& spec = d.cfg().milter.socket;
    try {
        auto c = milter_proto::client::open(ep, 5000);
        auto n = c.negotiate();
        c.quit();
        std::ostringstream os;
        os << "version " << n.version << ", actions 0x" << std::hex << n.actions << ", protocol 0x"
           << n.protocol;
        d.r.ok("milter", "milter socket " + spec + " answers OPTNEG (" + os.str() + ")");
    } catch (const std::exception& e) {
        d.r.fail("milter", "milter socket " + spec + " does not answer: " + e.what(),
                 "systemctl status mx-milter; check [milter] socket and that the socket folder "
                 "exists");
    }
}

// The socket's group and mode as configured, and whether Postfix's account (mail_owner: what
// smtpd and trivial-rewrite run as) may connect: write permission on the socket, x on folders.
void check_socket_access(doctor_state& d, const std::string& what, const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return;  // reported by the connection attempt
    const auto& g = d.cfg().milter.socket_group;
    struct group* gr = g.empty() ? nullptr : ::getgrnam(g.c_str());
    if (gr && st.st_gid != gr->gr_gid)
        d.r.fail("milter", what + " " + path + ": group is not " + g,
                 "restart mx-milter (it applies [milter] socket_group at start)");
    if (gr && (st.st_mode & 060) != 060)
        d.r.fail("milter",
                 what + " " + path + ": mode " + mode_string(st.st_mode) + " does not let group " +
                     g + " connect",
                 "set [milter] socket_mode = \"0660\" and restart mx-milter");
    std::optional<util::account> owner = d.pf ? d.pf->mail_owner() : std::nullopt;
    if (!owner) return;
    if (auto p = access_problem(*owner, path, 2))
        d.r.fail("milter",
                 "Postfix (account " + owner->name + ") cannot connect to the " + what + ": " + *p,
                 "set [milter] socket_group = \"" + owner->name +
                     "\" (Postfix's group) in the configuration and restart mx-milter");
    else
        d.r.ok("milter", "Postfix (account " + owner->name + ") may connect to the " + what);
}

void check_socketmap(doctor_state& d, const std::string& path) {
    std::string domain = "mx-connector-doctor.invalid";
    for (const auto& c : d.connectors)
        for (const auto& p : c.domains)
            if (p != "." && domain == "mx-connector-doctor.invalid") domain = concrete_domain(p);
    std::string probe = "domain " + domain;
    try {
        auto ans = milter_proto::socketmap_query(path, probe, 5000);
        if (ans.rfind("OK", 0) == 0 || ans.rfind("NOTFOUND", 0) == 0)
            d.r.ok("milter", "socketmap " + path + " answers (" + probe + " -> " +
                                 ans.substr(0, ans.find(' ')) + ")");
        else
            d.r.fail("milter", "socketmap " + path + " answered '" + ans.substr(0, 80) + "'",
                     "see the mx-milter log (journalctl -u mx-milter)");
    } catch (const std::exception& e) {
        d.r.fail("milter", "socketmap " + path + " does not answer: " + e.what(),
                 "systemctl status mx-milter; check [milter] socketmap");
    }
}

}  // namespace

void check_milter(doctor_state& d) {
    auto ep = postfix::parse_libmilter_spec(d.cfg().milter.socket);
    if (!ep) return;
    check_optneg(d, *ep);
    if (ep->is_unix) check_socket_access(d, "milter socket", ep->path);
    std::string smap;
    try {
        smap = postfix::milter_tables_of(d.cfg()).socketmap;
    } catch (const std::exception& e) {
        d.r.fail("milter", e.what(), "fix [milter] in the configuration");
        return;
    }
    if (smap.empty()) return;
    check_socket_access(d, "socketmap socket", smap);
    check_socketmap(d, smap);
}

}  // namespace mx::admin::doctor
