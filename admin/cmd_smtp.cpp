// mxctl smtp-test [CONNECTOR] | send --from MAILBOX | mailbox oauth MAILBOX: outbound SMTP
// through a connector's settings (server, TLS, Generic or Google/Microsoft OAuth2 credentials).
//
// Security: transcripts come from smtp_client, which masks every AUTH payload; secrets are read
// with read_secret_value ("-": one line from stdin) and stored in the 0600 secret store, never
// printed. Messages from stdin are hostile input: headers are parsed with the safe parser.
#include <chrono>
#include <iostream>
#include <iterator>

#include "global/mail_compose.hpp"
#include "global/mail_header.hpp"
#include "global/smtp_submit.hpp"
#include "mxctl.hpp"

namespace mx::admin {
namespace {

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

secret_store* try_secrets(mxctl_context& ctx) {
    try {
        return &ctx.secrets();
    } catch (const std::exception&) {
        return nullptr;  // unauthenticated routes still work
    }
}

nlohmann::json transcript_json(const std::vector<transcript_line>& t) {
    nlohmann::json a = nlohmann::json::array();
    for (auto& l : t) a.push_back(std::string(1, l.direction) + " " + l.text);
    return a;
}

void print_transcript(const std::vector<transcript_line>& t) {
    for (auto& l : t) std::cout << "  " << l.direction << " " << l.text << "\n";
}

std::string read_stdin_message() {
    std::string data;
    char buf[65536];
    while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0) {
        data.append(buf, static_cast<std::size_t>(std::cin.gcount()));
        if (data.size() > std::size_t{100} << 20)
            throw cli_error("message on stdin is larger than 100 MB");
    }
    return data;
}

std::string test_message(const std::string& from, const std::string& to, const config& cfg,
                         const std::string& server, std::string& message_id) {
    message_id = mail::make_message_id(cfg.hostname);
    std::string m;
    m += mail::header_line("From", from.empty() ? "MAILER-DAEMON@" + cfg.hostname : from);
    m += mail::header_line("To", to);
    m += "Subject: MX Connector SMTP test\r\n";
    m += "Date: " + mail::rfc5322_date(unix_now()) + "\r\n";
    m += "Message-ID: " + message_id + "\r\n";
    m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n";
    m += "This is a test message sent by `mxctl smtp-test` on " + mail::single_line(cfg.hostname) +
         "\r\nthrough " + mail::single_line(server) + ".\r\n";
    return m;
}

void smtp_test(mxctl_context& ctx, const std::string& name, const std::string& send_to,
               const std::string& from_arg, bool json) {
    const auto& cfg = ctx.cfg();
    std::optional<connector> conn;
    std::optional<mailbox> mb;
    std::string from = from_arg;
    {
        auto view = ctx.open_store_read_only().read();
        if (!name.empty()) {
            conn = view.find_connector(name);
            if (!conn) throw cli_error("no connector '" + name + "' (mxctl connector list)");
            if (from.empty()) from = conn->bounce_sender;
        }
        if (!from.empty()) {
            from = mail::to_lower(from);
            mb = view.find_mailbox(from);
            if (!mb) {
                mb = mailbox{};
                mb->address = from;
            }
        }
    }
    if (!send_to.empty() && !mail::is_sendable_address(send_to))
        throw cli_error("--send-to: not an address: " + mail::single_line(send_to, 100));
    smtp_submitter sub(cfg,
                       conn && conn->smtp.auth != auth_method::none ? try_secrets(ctx) : nullptr);
    auto route = sub.route_for(conn ? &*conn : nullptr, mb ? &*mb : nullptr);
    std::vector<transcript_line> tr;
    smtp_result res;
    std::string message_id;
    if (send_to.empty()) {
        res =
            sub.submit(conn ? &*conn : nullptr, mb ? &*mb : nullptr, nullptr, {}, &tr, unix_now());
    } else {
        smtp_envelope env;
        env.mail_from = from.empty() ? "postmaster@" + cfg.hostname : from;
        env.rcpt_to.push_back(send_to);
        auto msg = test_message(env.mail_from, send_to, cfg, route.describe(), message_id);
        res = sub.submit(conn ? &*conn : nullptr, mb ? &*mb : nullptr, &env, msg, &tr, unix_now());
    }
    if (json) {
        nlohmann::json j = {{"connector", name},
                            {"server", route.describe()},
                            {"ok", res.ok()},
                            {"result", std::string(to_string(res.kind))},
                            {"smtp_code", res.smtp_code},
                            {"detail", res.detail},
                            {"transcript", transcript_json(tr)}};
        if (!send_to.empty()) {
            j["sent_to"] = send_to;
            j["message_id"] = res.ok() ? message_id : "";
        }
        print_json(j);
    } else {
        std::cout << "connector: " << (name.empty() ? std::string("(installation default)") : name)
                  << "\nserver:    " << route.describe() << "\n";
        print_transcript(tr);
        if (res.ok())
            std::cout << "result:    OK"
                      << (send_to.empty()
                              ? " (connected, TLS as configured, authenticated, NOOP)"
                              : " (test message " + message_id + " accepted for <" + send_to + ">)")
                      << ": " << res.detail << "\n";
    }
    if (!res.ok())
        throw cli_error("smtp-test failed (" + std::string(to_string(res.kind)) +
                        "): " + res.detail);
}

void send_message(mxctl_context& ctx, const std::string& from_arg, std::vector<std::string> to,
                  bool json) {
    const auto& cfg = ctx.cfg();
    auto key = normalize_mailbox_arg(from_arg);
    std::optional<mailbox> mb;
    std::optional<connector> conn;
    {
        auto view = ctx.open_store_read_only().read();
        mb = view.find_mailbox(key);
        if (!mb) throw cli_error("--from: no mailbox '" + key + "' (mxctl mailbox list)");
        if (key.front() == '@') throw cli_error("--from: a catch-all cannot send; name a mailbox");
        conn = view.find_connector(mb->connector);
        if (!conn) throw cli_error("mailbox '" + key + "' names a missing connector");
    }
    std::string raw = read_stdin_message();
    if (raw.empty()) throw cli_error("no message on stdin");
    auto headers = mail::parse_header_block(raw);
    if (!headers.well_formed) throw cli_error("stdin does not start with a header section");
    if (to.empty()) {
        for (const char* f : {"To", "Cc", "Bcc"})
            for (auto& v : headers.get_all(f))
                for (auto& a : mail::extract_addresses(v)) to.push_back(a);
    }
    if (to.empty()) throw cli_error("no recipients: give --to ADDR or To/Cc/Bcc headers");
    for (auto& a : to)
        if (!mail::is_sendable_address(a))
            throw cli_error("not a deliverable address: " + mail::single_line(a, 100));
    // The Bcc list must not travel with the message.
    std::string msg = mail::remove_fields(raw, {"Bcc", "Resent-Bcc"});
    std::string added;
    if (!headers.get("From")) added += mail::header_line("From", mb->address);
    if (!headers.get("Date")) added += "Date: " + mail::rfc5322_date(unix_now()) + "\r\n";
    if (!headers.get("Message-ID"))
        added += "Message-ID: " + mail::make_message_id(cfg.hostname) + "\r\n";
    msg = mail::to_crlf(added + msg);

    smtp_envelope env;
    env.mail_from = mb->address;
    env.rcpt_to = to;
    smtp_submitter sub(cfg, conn->smtp.auth != auth_method::none ? try_secrets(ctx) : nullptr);
    auto route = sub.route_for(&*conn, &*mb);
    auto res = sub.submit(&*conn, &*mb, &env, msg, nullptr, unix_now());
    if (json) {
        print_json({{"ok", res.ok()},
                    {"from", mb->address},
                    {"to", to},
                    {"server", route.describe()},
                    {"result", std::string(to_string(res.kind))},
                    {"smtp_code", res.smtp_code},
                    {"detail", res.detail}});
    } else if (res.ok()) {
        std::cout << "sent from <" << mb->address << "> to " << to.size() << " recipient(s) via "
                  << route.describe() << ": " << res.detail << "\n";
    }
    if (!res.ok())
        throw cli_error("send failed (" + std::string(to_string(res.kind)) + "): " + res.detail);
}

void mailbox_oauth(mxctl_context& ctx, const std::string& arg, const std::string& client_id,
                   const std::string& tenant, const std::string& client_secret,
                   const std::string& refresh_token, bool clear) {
    // Secrets read first: a failure to read stdin changes nothing. The change itself is
    // ops::set_mailbox_oauth, the console's authorisation form runs the same.
    ops::oauth_update u{client_id, tenant, std::nullopt, std::nullopt, clear};
    if (!client_secret.empty()) u.client_secret = read_secret_value(client_secret);
    if (!refresh_token.empty()) u.refresh_token = read_secret_value(refresh_token);
    // The changed record as written (with --no-wait in cluster mode the local store may not
    // have it yet).
    const mailbox m = ops::set_mailbox_oauth(ctx, arg, u);
    const std::string& key = m.address;
    auto& secrets = ctx.secrets();
    std::cout << "mailbox " << key << ": oauth client id '" << m.oauth.client_id << "', tenant '"
              << m.oauth.tenant << "', client secret "
              << (secrets.get(secret_name::oauth_client_secret(key)) ? "***" : "(none)")
              << ", refresh token "
              << (secrets.get(secret_name::oauth_refresh_token(key)) ? "***" : "(none)") << "\n";
}

}  // namespace

void add_smtp_commands(CLI::App& app, mxctl_context& ctx) {
    auto* test = app.add_subcommand(
        "smtp-test",
        "connect to a connector's SMTP server (or the installation default), negotiate TLS, "
        "authenticate and optionally send a test message; prints the dialogue (secrets masked)");
    auto name = std::make_shared<std::string>();
    auto send_to = std::make_shared<std::string>();
    auto from = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    test->add_option("connector", *name, "connector (default: the installation's [smtp] server)");
    test->add_option("--send-to", *send_to, "also send a test message to this address");
    test->add_option("--from", *from,
                     "sender address / mailbox whose OAuth2 credentials to use (default: the "
                     "connector's bounce_sender)");
    test->add_flag("--json", *json, "JSON output");
    test->callback(
        [&ctx, name, send_to, from, json] { smtp_test(ctx, *name, *send_to, *from, *json); });

    auto* send = app.add_subcommand(
        "send", "submit the message on stdin through the connector of --from with its credentials");
    auto sfrom = std::make_shared<std::string>();
    auto sto = std::make_shared<std::vector<std::string>>();
    auto sjson = std::make_shared<bool>(false);
    send->add_option("--from", *sfrom, "sending mailbox (its connector's SMTP settings are used)")
        ->required();
    send->add_option("--to", *sto, "envelope recipient (repeatable; default: To/Cc/Bcc)");
    send->add_flag("--json", *sjson, "JSON output");
    send->callback([&ctx, sfrom, sto, sjson] { send_message(ctx, *sfrom, *sto, *sjson); });

    CLI::App* mailbox = nullptr;
    try {
        mailbox = app.get_subcommand("mailbox");
    } catch (const CLI::OptionNotFound&) {
        mailbox = app.add_subcommand("mailbox", "manage mailboxes");
    }
    auto* oauth = mailbox->add_subcommand(
        "oauth",
        "set a mailbox's OAuth2 credentials for Google/Microsoft SMTP (secrets: '-' reads "
        "one line from stdin; never printed)");
    auto addr = std::make_shared<std::string>();
    auto cid = std::make_shared<std::string>();
    auto tenant = std::make_shared<std::string>();
    auto csecret = std::make_shared<std::string>();
    auto rtoken = std::make_shared<std::string>();
    auto clear = std::make_shared<bool>(false);
    oauth->add_option("mailbox", *addr, "mailbox address")->required();
    oauth->add_option("--client-id", *cid, "OAuth2 client (application) id");
    oauth->add_option("--tenant", *tenant, "Microsoft Entra tenant id or domain");
    oauth->add_option("--client-secret", *csecret, "client secret (- reads stdin)");
    oauth->add_option("--refresh-token", *rtoken, "refresh token (- reads stdin)");
    oauth->add_flag("--clear", *clear, "remove all OAuth2 settings and secrets first");
    oauth->callback([&ctx, addr, cid, tenant, csecret, rtoken, clear] {
        mailbox_oauth(ctx, *addr, *cid, *tenant, *csecret, *rtoken, *clear);
    });
}

}  // namespace mx::admin
