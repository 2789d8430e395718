// doctor check group "postfix": smtpd_milters names our milter socket (as a chrooted smtpd
// sees it), milter_default_action is tempfail (also a per-milter override), our milter is not
// in non_smtpd_milters, and a chrooted smtpd can reach the socket. In table mode instead: the
// recipient table is in smtpd_recipient_restrictions with the settings its keys need.
#include <algorithm>
#include <filesystem>

#include "doctor/doctor.hpp"
#include "global/postfix_conf.hpp"

namespace mx::admin::doctor {
namespace {

bool designates_us(doctor_state& d, const std::string& address,
                   const postfix::milter_endpoint& ours, bool any_chrooted) {
    auto q = d.pf->queue_dir();
    return postfix::same_endpoint(address, ours, q, false) ||
           (any_chrooted && postfix::same_endpoint(address, ours, q, true));
}

void check_smtpd_milters(doctor_state& d, const std::string& milters,
                         const postfix::milter_endpoint& ours, bool any_chrooted) {
    const auto& dir = d.opt.postfix_dir;
    std::optional<postfix::milter_entry> hit;
    for (const auto& item : postfix::split_list(milters)) {
        auto e = postfix::parse_milter_entry(item);
        if (designates_us(d, e.address, ours, any_chrooted)) hit = e;
    }
    if (!hit) {
        std::string expected = postfix::postfix_address(ours, d.pf->queue_dir());
        d.r.fail(
            "postfix",
            "smtpd_milters (" + (milters.empty() ? std::string("empty") : milters) +
                ") does not include our socket " + d.cfg().milter.socket,
            "mxctl postfix setup -c " + dir + " (or: postconf -c " + dir + " -e 'smtpd_milters = " +
                (milters.empty() ? expected : milters + ", " + expected) + "' && postfix reload)");
        return;
    }
    d.r.ok("postfix", "smtpd_milters includes " + hit->address);
    if (!hit->default_action.empty() && hit->default_action != "tempfail")
        d.r.fail("postfix",
                 "our milter entry overrides default_action = " + hit->default_action +
                     ": mail is accepted unchecked while mx-milter is down",
                 "remove default_action from the { ... } entry in smtpd_milters");
}

void check_default_action(doctor_state& d) {
    auto action = d.pf->get("milter_default_action").value_or("");
    if (action != "tempfail")
        d.r.fail("postfix",
                 "milter_default_action = " + action +
                     " (a down milter must defer mail, not accept or reject it)",
                 "postconf -c " + d.opt.postfix_dir +
                     " -e milter_default_action=tempfail && postfix reload");
    else
        d.r.ok("postfix", "milter_default_action = tempfail");
}

void check_non_smtpd(doctor_state& d, const postfix::milter_endpoint& ours) {
    auto non = d.pf->get("non_smtpd_milters");
    if (!non) return;
    for (const auto& item : postfix::split_list(*non)) {
        auto e = postfix::parse_milter_entry(item);
        if (designates_us(d, e.address, ours, true))
            d.r.warn(
                "postfix",
                "non_smtpd_milters includes our milter (it decides RCPT only for SMTP; "
                "locally submitted mail would be checked needlessly)",
                "postconf -c " + d.opt.postfix_dir + " -e 'non_smtpd_milters =' && postfix reload");
    }
}

// A chrooted smtpd (milter) or trivial-rewrite (socketmap lookups of
// virtual_mailbox_domains) sees only what lies under the queue directory.
void check_chroot(doctor_state& d, const postfix::milter_endpoint& ours) {
    auto q = d.pf->queue_dir();
    std::string smap;
    try {
        smap = postfix::milter_tables_of(d.cfg()).socketmap;
    } catch (const std::exception&) {
    }
    for (const auto& s : d.pf->services()) {
        if (!s.chrooted()) continue;
        std::string path;
        if (s.command == "smtpd" && ours.is_unix) path = ours.path;
        if (s.command == "trivial-rewrite") path = smap;
        if (path.empty() || postfix::inside_queue_dir(path, q)) continue;
        d.r.fail("postfix",
                 s.command + " service " + s.id() + " runs chrooted in " + q + " but " + path +
                     " lies outside it",
                 "postconf -c " + d.opt.postfix_dir + " -F " + s.id() +
                     "/chroot=n && postfix reload (or: mxctl postfix setup)");
    }
}

// Table mode (docs/postfix.md): smtpd decides from our recipient table instead of the milter.
// True when main.cf uses it (then the milter checks do not apply).
bool check_table_mode(doctor_state& d) {
    const auto& table = d.cfg().milter.recipient_table;
    if (table.empty()) return false;
    const auto& dir = d.opt.postfix_dir;
    auto restrictions = d.pf->get("smtpd_recipient_restrictions").value_or("");
    auto items = postfix::split_list(restrictions);
    bool used = false;
    for (std::size_t i = 0; i + 1 < items.size(); ++i)
        if (items[i] == "check_recipient_access" && items[i + 1] == "lmdb:" + table) used = true;
    if (!used) return false;
    d.r.ok("postfix",
           "table mode: smtpd_recipient_restrictions has check_recipient_access lmdb:" + table);
    if (!std::filesystem::exists(table + ".lmdb"))
        d.r.fail("postfix", table + ".lmdb does not exist (mx-milter writes it)",
                 "start mx-milter (systemctl start mx-milter)");
    auto delim = d.pf->get("recipient_delimiter").value_or("");
    if (delim != d.cfg().subaddress_delimiter)
        d.r.fail("postfix",
                 "recipient_delimiter = " + delim + " but subaddress_delimiter = " +
                     d.cfg().subaddress_delimiter + ": address extensions are decided otherwise",
                 "postconf -c " + dir + " -e 'recipient_delimiter = " +
                     d.cfg().subaddress_delimiter + "' && postfix reload");
    auto parents = postfix::split_list(d.pf->get("parent_domain_matches_subdomains").value_or(""));
    if (std::find(parents.begin(), parents.end(), "smtpd_access_maps") != parents.end())
        d.r.fail("postfix",
                 "parent_domain_matches_subdomains includes smtpd_access_maps: the recipient "
                 "table's .domain keys (subdomain patterns) would not match",
                 "postconf -c " + dir +
                     " -e 'parent_domain_matches_subdomains = <the same list without "
                     "smtpd_access_maps>' && postfix reload (docs/postfix.md, Table mode)");
    return true;
}

}  // namespace

void check_postfix(doctor_state& d) {
    const auto& dir = d.opt.postfix_dir;
    if (!std::filesystem::exists(std::filesystem::path(dir) / "main.cf")) {
        d.r.fail("postfix", "no Postfix configuration at " + dir + "/main.cf",
                 "install Postfix, or give its config directory with --postfix-config DIR "
                 "(skip these checks for Sendmail with --skip postfix,domains,probe)");
        return;
    }
    auto pf = std::make_unique<postconf>(dir);
    auto milters = pf->get("smtpd_milters");
    if (!milters) {
        d.r.fail("postfix", "postconf -c " + dir + " failed",
                 "run postconf -c " + dir + " and fix what it reports");
        return;
    }
    d.pf = std::move(pf);
    auto ours = postfix::parse_libmilter_spec(d.cfg().milter.socket);
    if (!ours) return;
    bool any_chrooted = false;
    for (const auto& s : d.pf->services()) any_chrooted |= s.command == "smtpd" && s.chrooted();
    if (check_table_mode(d)) {
        check_non_smtpd(d, *ours);
        return;
    }
    check_smtpd_milters(d, *milters, *ours, any_chrooted);
    check_default_action(d);
    check_non_smtpd(d, *ours);
    check_chroot(d, *ours);
}

}  // namespace mx::admin::doctor
