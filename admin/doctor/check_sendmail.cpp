// doctor check group "sendmail": when Sendmail is the MTA ([sendmail] cf names its sendmail.cf,
// or /etc/mail/sendmail.cf exists and there is no Postfix main.cf), the .cf holds our wiring
// (sendmail_cf.hpp: milter with F=T in InputMailFilters, mailertable and relay map on mx-milter's
// socketmap, the mxdrop mailer), the socketmap answers Sendmail's mailertable lookup of each active
// connector with its drop folder, and the mailer's program is executable by its U= account.
// Security: reads the .cf (root's, named by root's configuration) and asks the socketmap;
// runs nothing.
#include <sys/stat.h>

#include <filesystem>

#include "doctor/doctor.hpp"
#include "doctor/sendmail_cf.hpp"
#include "global/milter_client.hpp"
#include "global/postfix_conf.hpp"
#include "util/fs.hpp"

namespace mx::admin::doctor {
namespace {

constexpr const char* default_cf = "/etc/mail/sendmail.cf";

// The .cf to check: [sendmail] cf, else the default when it exists and Postfix is not
// configured (a sendmail.cf left behind on a host that moved to Postfix is not checked);
// empty: no Sendmail here.
std::string cf_path(doctor_state& d) {
    const auto& s = d.cfg().section("sendmail");
    if (auto it = s.find("cf"); it != s.end()) {
        if (!it->is_string()) {
            d.r.fail("sendmail", "[sendmail] cf must be a string (the path of sendmail.cf)",
                     "cf = \"/etc/mail/sendmail.cf\" in [sendmail]");
            return {};
        }
        return d.cfg().resolve_path(it->get<std::string>()).string();
    }
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(d.opt.postfix_dir) / "main.cf", ec))
        return {};
    return std::filesystem::exists(default_cf, ec) ? default_cf : "";
}

// Sendmail's lookup "mailertable DOMAIN" for each active connector: OK MAILER:DROP_FOLDER.
void check_mailertable_answers(doctor_state& d, const sendmail::expected& want) {
    std::size_t asked = 0;
    for (const auto& c : d.connectors) {
        if (!c.active) continue;
        std::string domain;
        for (const auto& p : c.domains)
            if (p != "." && domain.empty()) domain = concrete_domain(p);
        if (domain.empty()) continue;
        ++asked;
        std::string q = "mailertable " + domain, ans;
        try {
            ans = milter_proto::socketmap_query(want.socketmap, q, 5000);
        } catch (const std::exception& e) {
            d.r.fail("sendmail", "socketmap " + want.socketmap + " does not answer: " + e.what(),
                     "systemctl status mx-milter; check [milter] socketmap");
            return;
        }
        auto a = sendmail::parse_mailertable_answer(ans);
        std::string drop = std::filesystem::path(c.drop_folder).lexically_normal().string();
        while (drop.size() > 1 && drop.back() == '/') drop.pop_back();
        if (!a || a->first != want.mailer || a->second != drop)
            d.r.fail("sendmail",
                     "mailertable lookup of " + domain + " (connector " + c.name + ") answered '" +
                         ans.substr(0, 200) + "', expected 'OK " + want.mailer + ":" + drop + "'",
                     "see the mx-milter log (journalctl -u mx-milter); Sendmail needs a drop "
                     "folder without blanks, quotes, ()<>,;\\$@:");
        else
            d.r.ok("sendmail", "mailertable " + domain + " -> " + a->first + ":" + a->second);
    }
    if (asked > 0) return;
    // No active connector: the map must still answer (NOTFOUND).
    try {
        auto ans = milter_proto::socketmap_query(want.socketmap,
                                                 "mailertable mx-connector-doctor.invalid", 5000);
        d.r.ok("sendmail", "socketmap " + want.socketmap + " answers mailertable lookups (" +
                               ans.substr(0, ans.find(' ')) + ")");
    } catch (const std::exception& e) {
        d.r.fail("sendmail", "socketmap " + want.socketmap + " does not answer: " + e.what(),
                 "systemctl status mx-milter; check [milter] socketmap");
    }
}

// The mailer program exists, and the U= account exists and may run it (r+x: a script).
void check_mailer_program(doctor_state& d, const sendmail::mailer& m) {
    struct stat st {};
    if (::stat(m.program.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        d.r.fail("sendmail", "mailer " + m.name + ": program " + m.program + " is missing",
                 "install -m 0755 postfix-conf/sendmail-drop " + m.program);
        return;
    }
    std::string name = m.user.substr(0, m.user.find(':'));
    auto acct = util::lookup_account(name);
    if (!acct) {
        d.r.fail("sendmail", "mailer " + m.name + ": U=" + m.user + " names no account",
                 "U= must be the daemon account (user in mx-connector.toml)");
        return;
    }
    if (auto p = access_problem(*acct, m.program, 5))
        d.r.fail(
            "sendmail",
            "mailer " + m.name + ": account " + acct->name + " cannot run " + m.program + ": " + *p,
            "chmod 0755 " + m.program);
    else
        d.r.ok("sendmail",
               "mailer " + m.name + ": " + m.program + " is executable by " + acct->name);
    if (d.user && acct->uid != d.user->uid)
        d.r.warn("sendmail",
                 "mailer " + m.name + " runs as " + acct->name + ", the drop folders belong to " +
                     d.user->name,
                 "set U=" + d.user->name + " in the M" + m.name +
                     " line, rebuild sendmail.cf and restart sendmail");
}

}  // namespace

void check_sendmail(doctor_state& d) {
    std::string path = cf_path(d);
    if (path.empty()) return;
    std::string text;
    try {
        text = util::read_file(path);
    } catch (const std::exception& e) {
        d.r.fail("sendmail", "cannot read " + path + ": " + e.what(),
                 "set [sendmail] cf to the sendmail.cf Sendmail uses, or build it (Debian: "
                 "sendmailconfig)");
        return;
    }
    sendmail::expected want;
    auto ep = postfix::parse_libmilter_spec(d.cfg().milter.socket);
    if (!ep) return;  // reported by the config check
    want.milter = *ep;
    want.milter_spec = d.cfg().milter.socket;
    try {
        want.socketmap = postfix::milter_tables_of(d.cfg()).socketmap;
    } catch (const std::exception& e) {
        d.r.fail("sendmail", e.what(), "fix [milter] in the configuration");
        return;
    }
    auto c = sendmail::parse_cf(text);
    d.r.ok("sendmail", "Sendmail configuration " + path);
    auto w = sendmail::check_wiring(c, want);
    for (const auto& r : w.results) {
        if (r.ok)
            d.r.ok("sendmail", r.message);
        else
            d.r.fail("sendmail", r.message, r.fix);
    }
    if (w.mailertable_ours) check_mailertable_answers(d, want);
    if (w.mx_mailer && !w.mx_mailer->program.empty()) check_mailer_program(d, *w.mx_mailer);
}

}  // namespace mx::admin::doctor
