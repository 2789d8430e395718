// mxctl doctor: checks an installation end to end and prints every finding with its fix.
//
// What it looks at (each group a file in admin/doctor/, status ok | warn | fail):
//   config      the TOML file loads; the daemon user and the socket group exist
//   store       the LMDB store opens read-only and is owned by the daemon user
//   secrets     the secret store is 0700/0600 and owned by the daemon user
//   daemons     mx-milter / mx-importer run and their heartbeats in shared memory are fresh
//   postfix     smtpd_milters names our socket (chroot-aware), milter_default_action is
//               tempfail (also per-milter overrides), we are not in non_smtpd_milters
//   milter      the milter socket answers a milter OPTNEG, with the right group and mode; the
//               socketmap answers a netstring request
//   domains     every table Postfix uses for our domains and virtual(8)'s drop folders is of a
//               type this Postfix has (postconf -m) and answers the expected value for each
//               connector domain, looked up with postmap as Postfix's account
//   sendmail    ([sendmail] cf, or /etc/mail/sendmail.cf on a host without Postfix) the .cf has our
//               milter with F=T in InputMailFilters, mailertable and relay map on mx-milter's
//               socketmap (answering each active connector's drop folder), the mxdrop mailer
//               and its program executable by its U= account
//   drop        each connector's drop folder exists, the importer's account can claim files in
//               it and Postfix's delivery account can write into it
//   failed      files waiting in ImportFailed (warn) and an old backlog in the drop folder
//   smtp        each connector's SMTP server (deduplicated) accepts TCP and sends a 220 banner
//   oauth       Google/Microsoft mailboxes have a client id and a refresh token
//   probe       (--probe) RCPT TO a known and an unknown address of each connector through
//               Postfix's SMTP listener, QUIT before DATA: 250 / 550 (450 when inactive)
// Exit status: 0 when nothing failed, 1 when a check failed (with --strict also on warnings).
// Security: only reads (the probe sends no message); external programs run without a shell
// and with a deadline; no secret value is ever printed (only whether it is set).
#include <cstdlib>
#include <filesystem>

#include "doctor/doctor.hpp"

namespace mx::admin {
namespace doctor {

// The groups in the order they run: later groups read what earlier ones found.
const std::vector<check_group>& check_groups() {
    static const std::vector<check_group> groups = {
        {"store", check_store},       {"secrets", check_secrets},   {"daemons", check_daemons},
        {"postfix", check_postfix},   {"milter", check_milter},     {"domains", check_domains},
        {"sendmail", check_sendmail}, {"drop", check_drop_folders}, {"failed", check_failed},
        {"smtp", check_smtp},         {"oauth", check_oauth},       {"probe", check_probe},
        {"cluster", check_cluster},
    };
    return groups;
}

}  // namespace doctor

void add_doctor_command(CLI::App& app, mxctl_context& ctx) {
    using namespace doctor;
    auto* cmd = app.add_subcommand(
        "doctor",
        "check the installation (Postfix or Sendmail wiring and tables, daemons, store, drop "
        "folders, SMTP, "
        "OAuth2) and print each finding with its fix; exit 1 when something is wrong");
    auto o = std::make_shared<options>();
    // Postfix's own convention: MAIL_CONFIG names the configuration directory.
    if (const char* mc = std::getenv("MAIL_CONFIG"); mc && *mc) o->postfix_dir = mc;
    cmd->add_option("--postfix-config", o->postfix_dir,
                    "Postfix configuration directory, read with postconf -c (default: "
                    "$MAIL_CONFIG or /etc/postfix)")
        ->capture_default_str();
    cmd->add_flag("--json", o->json, "JSON output");
    cmd->add_flag("--strict", o->strict, "exit 1 on warnings too");
    cmd->add_flag("--probe", o->probe,
                  "also send RCPT TO a known and an unknown address of each connector through "
                  "Postfix (SMTP, QUIT before DATA; counted like real mail)");
    cmd->add_option("--skip", o->skip,
                    "checks to skip: store secrets daemons postfix milter domains sendmail drop "
                    "failed smtp oauth probe")
        ->delimiter(',');
    cmd->callback([&ctx, o] {
        // Postfix's tools run from its queue folder (postmap needs it), so a relative
        // --postfix-config given by the admin is made absolute first.
        std::error_code ec;
        if (auto abs = std::filesystem::absolute(o->postfix_dir, ec); !ec)
            o->postfix_dir = abs.lexically_normal().string();
        doctor_state d(ctx, *o);
        if (check_config(d))
            for (const auto& g : check_groups())
                if (d.want(g.name)) g.run(d);
        d.r.print(o->json, o->strict);
        if (d.r.any(level::fail) || (o->strict && d.r.any(level::warn))) ctx.exit_code = 1;
    });
}

}  // namespace mx::admin
