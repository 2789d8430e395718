// doctor check group "postfix": smtpd_milters names our milter socket (as a chrooted smtpd
// sees it), milter_default_action is tempfail (also a per-milter override), our milter is not
// in non_smtpd_milters, and a chrooted smtpd can reach the socket.
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
    check_smtpd_milters(d, *milters, *ours, any_chrooted);
    check_default_action(d);
    check_non_smtpd(d, *ours);
    check_chroot(d, *ours);
}

}  // namespace mx::admin::doctor
