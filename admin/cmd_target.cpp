// mxctl target-test ADDRESS: sends a synthetic message to the mailbox's effective import
// target (its own target, else the connector's default, else the Maildir under mail_root)
// through the same target code mx-importer uses, and shows the receiver's answer.
//
// Promises: exit 0 when the target accepted (imported), 1 otherwise (the answer says whether
// the importer would retry: temporary, or fail the message: permanent). Each run sends a new
// message (unique Message-ID, so a new fingerprint and idempotency key): a deduplicating
// receiver processes it. Security: the target secret is read by the target and never printed;
// receiver text is shown made single-line and truncated, as in reason files. Run as root with
// `user` set, the whole command runs as that account (mxctl_context::as_state_owner(), reached
// through the store): Maildir folders it creates are the importer's, exec targets never run
// as root.
#include <unistd.h>

#include <iostream>

#include "global/mail_compose.hpp"
#include "import_target.hpp"
#include "message_parse.hpp"
#include "mxctl.hpp"
#include "target_http.hpp"
#include "util/fs.hpp"
#include "util/hex.hpp"

namespace mx::admin {
namespace {

struct temp_file {
    std::filesystem::path path;
    ~temp_file() {
        if (!path.empty()) ::unlink(path.c_str());
    }
};

int run_target_test(mxctl_context& ctx, const std::string& address_arg, bool json) {
    const auto& cfg = ctx.cfg();
    std::string key = normalize_mailbox_arg(address_arg);
    auto view = ctx.open_store_read_only().read();
    auto mb = view.find_mailbox(key);
    if (!mb) throw cli_error("no mailbox " + key + " (mxctl mailbox list)");
    auto conn = view.find_connector(mb->connector);
    std::string spec =
        importer::effective_target(cfg, mb->target, conn ? conn->default_target : "", mb->address);
    std::string rcpt = mb->address.front() == '@' ? "target-test" + mb->address : mb->address;
    std::string host = cfg.hostname.empty() ? "localhost" : cfg.hostname;
    std::string from = "postmaster@" + host;
    std::int64_t now = static_cast<std::int64_t>(::time(nullptr));
    std::string msgid = mail::make_message_id(host);
    std::string m;
    m += "Delivered-To: " + rcpt + "\r\n";
    m += "Return-Path: <" + from + ">\r\n";
    m += mail::header_line("From", "MX Connector target test <" + from + ">");
    m += mail::header_line("To", rcpt);
    m += "Subject: MX Connector target test\r\n";
    m += "Date: " + mail::rfc5322_date(now) + "\r\n";
    m += "Message-ID: " + msgid + "\r\n";
    m += "Auto-Submitted: auto-generated\r\n";
    m += "X-Mx-Target-Test: yes\r\n";
    m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
    m += "This is a test message from `mxctl target-test " + mb->address +
         "`.\r\nIt checks that this mailbox's import target accepts mail.\r\n";

    // The target reads the message from a file, like the importer's claimed copy.
    char tmpl[] = "/tmp/mxctl-target-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0) throw cli_error(std::string("mkstemp: ") + std::strerror(errno));
    ::close(fd);
    temp_file tf{tmpl};
    util::write_file_durable(tf.path, m, 0600);

    // What the parse worker would find in these bytes (our own message, so no parse: mxctl
    // links no MIME library).
    importer::message_info info;
    info.env.sender = from;
    info.env.sender_known = true;
    info.env.recipients = {rcpt};
    info.env.source = "delivered-to";
    info.message_id = msgid;
    info.subject = "MX Connector target test";
    info.from = "MX Connector target test <" + from + ">";
    info.header_bytes = m.find("\r\n\r\n") + 4;
    info.has_header_block = true;
    info.content_type = "text/plain; charset=utf-8";
    info.mime_parts = 1;
    info.structure_parsed = true;
    importer::delivery d{tf.path, m.size(), rcpt, mb->address, mb->connector, util::sha256_hex(m),
                         now,     &info};
    std::unique_ptr<importer::import_target> target;
    try {
        target = importer::make_target(cfg, spec);
    } catch (const std::exception& e) {
        throw cli_error("target '" + spec + "': " + e.what());
    }
    importer::sync_set sync(importer::sync_set::mode::fsync);
    auto planned = target->plan(d);
    auto r = target->deliver(d, planned, sync);
    if (r.kind == importer::result_kind::imported) {
        try {
            sync.sync();
        } catch (const std::exception& e) {
            r = {importer::result_kind::temporary, "4.3.0", std::string("sync: ") + e.what(), {}};
        }
    }
    std::string outcome(importer::to_string(r.kind));
    if (json) {
        nlohmann::json j = {{"address", mb->address},    {"target", target->describe()},
                            {"result", outcome},         {"status", r.status},
                            {"detail", r.detail},        {"message_id", msgid},
                            {"idempotency_key", planned}};
        if (r.retry_after) j["retry_after"] = r.retry_after->count();
        print_json(j);
    } else {
        print_table({{"mailbox:", mb->address},
                     {"target:", target->describe()},
                     {"result:", outcome + " " + r.status},
                     {"answer:", r.detail},
                     {"message-id:", msgid}});
        if (r.retry_after) std::cout << "retry-after: " << r.retry_after->count() << " s\n";
        if (r.kind == importer::result_kind::temporary)
            std::cout << "(mx-importer would keep the message and retry)\n";
        else if (r.kind == importer::result_kind::permanent)
            std::cout << "(mx-importer would move the message to ImportFailed and bounce it)\n";
    }
    return r.kind == importer::result_kind::imported ? 0 : 1;
}

}  // namespace

void add_target_commands(CLI::App& app, mxctl_context& ctx) {
    auto* cmd = app.add_subcommand(
        "target-test", "send a synthetic message to a mailbox's import target and show the answer");
    auto address = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    cmd->add_option("ADDRESS", *address, "mailbox address (local@domain or @domain)")->required();
    cmd->add_flag("--json", *json, "machine-readable output");
    cmd->callback([&ctx, address, json] { ctx.exit_code = run_target_test(ctx, *address, *json); });
}

}  // namespace mx::admin
