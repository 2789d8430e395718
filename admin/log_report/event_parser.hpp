// event_parser: classifies the message of a Postfix log line into the events log-report counts.
//
// Events: smtpd connect/disconnect (with the command counts), "QID: client=", pickup
// "QID: uid=/sender= from=", "NOQUEUE|QID: reject|milter-reject|reject_warning|hold|discard: STAGE
// from host[ip]: CODE DSN text; from=<> to=<> proto= helo=<>" (smtpd, postscreen, and cleanup's
// header/body/END-OF-MESSAGE variant), cleanup "message-id=", qmgr "from=, size=, nrcpt=",
// "removed", "from=, status=expired, returned to sender", delivery lines of any agent parsed as
// key=value ("to=, orig_to=, relay=, conn_use=, delay=, delays=, dsn=, status=WORD (text)", plus
// any other key such as tls=), "sender non-delivery notification: QID", and known chatter
// (warnings, TLS, lost connections, statistics, master start/stop) as `info`.
//
// Promises: no allocation; all views point into the message. Never throws. Queue IDs are
// recognised in the short (hex) and long (base-52 with 'z') forms. Unknown messages give
// event_kind::unparsed.
//
// Security: the message is attacker-influenced (addresses, HELO, reply texts). Only bounded
// scans over string_view; an address is taken verbatim between "<" and ">" and never
// interpreted beyond splitting the domain off at the last '@'.
#pragma once

#include <cstdint>
#include <string_view>

#include "line_parser.hpp"

namespace mx::logreport {

enum class event_kind : std::uint8_t {
    unparsed,       // a line we do not understand
    info,           // understood, nothing to count (TLS, statistics, master, lost connection ...)
    warning,        // "warning:", "error:", "fatal:", "panic:"
    connect,        // smtpd "connect from host[ip]"
    disconnect,     // smtpd "disconnect from host[ip] ehlo=1 ... commands=n/m"
    client,         // smtpd "QID: client=host[ip]"
    pickup,         // pickup "QID: uid=N from=<s>"
    reject,         // any of reject_kind, at any stage
    message_id,     // cleanup "QID: message-id=<id>"
    queued,         // qmgr "QID: from=<s>, size=N, nrcpt=M (queue active)"
    removed,        // qmgr "QID: removed"
    expired,        // qmgr "QID: from=<s>, status=expired, returned to sender"
    delivery,       // "QID: to=<r>, ... status=WORD (text)"
    notification,   // bounce/defer/trace "QID: sender non-delivery notification: NEWQID"
    import_result,  // mx-importer "import connector= rcpt=<> mailbox= msgid= queue_id= outcome="
};

enum class import_outcome : std::uint8_t { other, imported, failed, deferred, duplicate };

enum class reject_kind : std::uint8_t {
    reject,
    milter_reject,
    reject_warning,
    hold,
    discard,
    milter_hold,
    milter_discard,
};

enum class delivery_status : std::uint8_t { other, sent, deferred, bounced, expired };

struct event {
    event_kind kind = event_kind::unparsed;
    std::string_view queue_id;  // empty for NOQUEUE and non-queue lines
    // connect/disconnect/client/reject: "host[ip]" split
    std::string_view client_host;
    std::string_view client_ip;
    std::string_view counts;  // disconnect: "ehlo=1 mail=1 rcpt=0/1 ... commands=3/4"
    // reject
    reject_kind rkind = reject_kind::reject;
    std::string_view stage;  // RCPT, MAIL, CONNECT, DATA, END-OF-MESSAGE, header, body ...
    std::string_view reply;  // "550 5.1.1 <r@d>: Recipient address rejected: ..."
    std::string_view code;   // "550"
    std::string_view helo;
    // shared by reject, queued, expired, delivery
    std::string_view from;
    std::string_view to;
    std::string_view dsn;  // "5.1.1"
    // cleanup
    std::string_view message_id;
    // qmgr
    std::int64_t size = -1;
    std::int32_t nrcpt = -1;
    // delivery
    std::string_view orig_to;
    std::string_view relay;
    std::string_view delays;
    std::string_view tls;
    std::string_view status_text;  // text inside the parentheses after status=WORD
    double delay = -1;
    delivery_status status = delivery_status::other;
    bool forwarded = false;  // local(8) "forwarded as QID": not a final delivery
    // notification
    std::string_view new_queue_id;
    // import_result (to = rcpt, message_id = msgid, queue_id = Postfix queue ID of the
    // delivery into the drop folder, reply = reason)
    std::string_view connector;
    std::string_view mailbox;
    import_outcome outcome = import_outcome::other;
};

// True for "0773DA721B1" (short) or "4Qv4Zs0bVBz5yk1" (long, base 52 with a 'z' separator).
bool is_queue_id(std::string_view s) noexcept;

// Parses line.message for a Postfix daemon (line.daemon). Returns ev.kind != unparsed.
bool parse_event(const log_line& line, event& ev) noexcept;

// Parses an mx-importer outcome line ("import connector=demo rcpt=<a@b> mailbox=a@b msgid=<id>
// size=N queue_id=QID outcome=imported|failed|deferred|duplicate status=... reason=...
// detail="..." file=..."); other mx-importer lines are info. Returns ev.kind != unparsed.
bool parse_importer_event(const log_line& line, event& ev) noexcept;

// Splits "host[ip]" (ip may be "ipv6:..." or have ":port" after the bracket).
void split_client(std::string_view s, std::string_view& host, std::string_view& ip) noexcept;

// Reason class of an SMTP reject by code and enhanced status code, as the report groups it.
enum class reject_reason : std::uint8_t {
    user_unknown,        // 550 5.1.1 (Postfix tables and our milter)
    connector_inactive,  // 450 4.2.1 (our milter: connector switched off)
    store_error,         // 451 4.3.0 (our milter: LMDB unavailable)
    milter_unavailable,  // 451 4.7.1 (Postfix: milter down, milter_default_action=tempfail)
    relay_denied,        // 554 5.7.1 Relay access denied
    other,
};
inline constexpr int reject_reason_count = 6;
reject_reason classify_reject(const event& ev) noexcept;
std::string_view reject_reason_name(reject_reason r) noexcept;
std::string_view reject_kind_name(reject_kind k) noexcept;

}  // namespace mx::logreport
