// doctor check group "probe" (only with --probe): a live RCPT through the configured Postfix.
//
// For each connector with a concrete domain: connect to Postfix's SMTP listener (the first
// inet smtpd service of master.cf), MAIL FROM:<>, RCPT TO a known address (one of its
// mailboxes, or an address under a catch-all) and an unknown one, RSET; QUIT before DATA, so
// no mail is sent. Expected: 250 for the known, 550 for the unknown; 450 for both while the
// connector is inactive. The answers pass through everything that decides real mail (smtpd
// restrictions, domain tables, the milter) and are counted by mx-milter like real RCPTs.
#include <random>

#include "doctor/doctor.hpp"
#include "doctor/smtp_dialog.hpp"
#include "global/postfix_conf.hpp"

namespace mx::admin::doctor {
namespace {

struct probe_target {
    std::string connector;
    bool active = true;
    std::string known;    // empty: no mailbox yet
    std::string unknown;  // empty: a catch-all makes every address known
};

std::string random_tag() {
    std::random_device rd;
    return std::to_string(rd() % 1000000000u);
}

// One known and one unknown address per connector, read from the store as the state owner.
std::vector<probe_target> probe_targets(doctor_state& d) {
    auto j = nlohmann::json::parse(d.read_state([&] {
        nlohmann::json out = nlohmann::json::object();
        auto s = store::open(d.cfg().store_dir(), true);
        auto v = s.read();
        for (const auto& c : d.connectors) {
            std::string known, catch_all;
            v.for_each_mailbox(
                [&](const mailbox& m) {
                    if (m.address.front() == '@') {
                        catch_all = m.address;
                        return true;
                    }
                    known = m.address;
                    return false;
                },
                c.name);
            out[c.name] = {{"known", known}, {"catch_all", catch_all}};
        }
        return out.dump();
    }));
    std::vector<probe_target> v;
    for (const auto& c : d.connectors) {
        std::string domain;
        for (const auto& p : c.domains)
            if (p != "." && domain.empty()) domain = concrete_domain(p);
        if (domain.empty()) continue;
        probe_target t{c.name, c.active, j[c.name]["known"].get<std::string>(), {}};
        auto catch_all = j[c.name]["catch_all"].get<std::string>();
        if (t.known.empty() && !catch_all.empty()) t.known = "mx-doctor-probe" + catch_all;
        if (catch_all.empty()) t.unknown = "mx-doctor-no-such-user-" + random_tag() + "@" + domain;
        v.push_back(std::move(t));
    }
    return v;
}

// Where Postfix takes mail from the Internet: the first inet smtpd service.
std::optional<std::pair<std::string, std::string>> listener(doctor_state& d) {
    auto interfaces = d.pf->get("inet_interfaces").value_or("all");
    for (const auto& s : d.pf->services())
        if (s.command == "smtpd")
            if (auto l = postfix::smtpd_listen(s, interfaces)) return l;
    return std::nullopt;
}

void expect(doctor_state& d, smtp_dialog& s, const probe_target& t, const std::string& address,
            const std::string& want, const std::string& what) {
    auto reply = s.command("RCPT TO:<" + address + ">");
    std::string who = "connector " + t.connector + ": RCPT TO:<" + address + "> (" + what + ")";
    if (reply_code(reply) == want) {
        d.r.ok("probe", who + " -> " + reply);
        return;
    }
    std::string fix = reply_code(reply) == "451" || reply_code(reply) == "454"
                          ? "a table or the milter fails in Postfix: see the domains and milter "
                            "findings and Postfix's mail log"
                          : "see Postfix's mail log for this RCPT and the findings above";
    d.r.fail("probe", who + " got '" + reply + "', expected " + want, fix);
}

void probe_connector(doctor_state& d, smtp_dialog& s, const probe_target& t) {
    auto mail = s.command("MAIL FROM:<>");
    if (reply_code(mail) != "250") {
        d.r.fail("probe", "connector " + t.connector + ": MAIL FROM:<> got '" + mail + "'",
                 "Postfix refuses the null sender here; check smtpd_sender_restrictions");
        return;
    }
    if (t.known.empty())
        d.r.warn("probe", "connector " + t.connector + " has no mailbox to probe",
                 d.cmd_prefix() + " mailbox add ADDRESS --connector " + t.connector);
    else
        expect(d, s, t, t.known, t.active ? "250" : "450",
               t.active ? "known" : "known, connector inactive");
    if (!t.unknown.empty())
        expect(d, s, t, t.unknown, t.active ? "550" : "450",
               t.active ? "unknown" : "unknown, connector inactive");
    (void)s.command("RSET");
}

}  // namespace

void check_probe(doctor_state& d) {
    if (!d.opt.probe || !d.have_store) return;
    if (!d.pf) {
        d.r.fail("probe", "no Postfix configuration to probe through", "see the postfix findings");
        return;
    }
    auto where = listener(d);
    if (!where) {
        d.r.fail("probe", "no inet smtpd service in master.cf to probe",
                 "postconf -c " + d.opt.postfix_dir + " -M shows the services");
        return;
    }
    std::string addr = where->first + ":" + where->second;
    try {
        auto targets = probe_targets(d);
        smtp_dialog s(where->first, where->second, 30000);
        if (reply_code(s.greeting()) != "220") {
            d.r.fail("probe", "Postfix at " + addr + " greets with '" + s.greeting() + "'",
                     "see Postfix's mail log");
            return;
        }
        auto helo = d.cfg().hostname.empty() ? std::string("localhost") : d.cfg().hostname;
        if (auto r = s.command("EHLO " + helo); reply_code(r) != "250") {
            d.r.fail("probe", "Postfix at " + addr + " answers EHLO with '" + r + "'",
                     "check smtpd_helo_restrictions");
            return;
        }
        for (const auto& t : targets) probe_connector(d, s, t);
        s.quit();
    } catch (const std::exception& e) {
        d.r.fail("probe", "SMTP probe through Postfix at " + addr + " failed: " + e.what(),
                 "is Postfix running? (postfix -c " + d.opt.postfix_dir + " status)");
    }
}

}  // namespace mx::admin::doctor
