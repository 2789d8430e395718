// dsn: RFC 3464 delivery status notifications (non-delivery reports) and the RFC 3834 /
// RFC 5321 rules on when none may be sent.
//
// Promises:
// - build_dsn() returns a complete message with CRLF line ends: multipart/report;
//   report-type=delivery-status with (1) a human-readable text/plain part from a template,
//   (2) message/delivery-status (Reporting-MTA, Arrival-Date, per recipient Final-Recipient,
//   Original-Recipient when known, Action: failed, Status, Diagnostic-Code), and (3) the
//   original as message/rfc822, or only its header section as text/rfc822-headers when the
//   original is larger than size_limit. From MAILER-DAEMON@<host> (or a configured sender),
//   Auto-Submitted: auto-replied, a fresh Message-ID and a fresh boundary that does not occur in
//   the content.
// - Every value copied from the failed message or its envelope is reduced to one line
//   (single_line) and RFC 2047-encoded in headers: no CR/LF injection is possible; DSN fields
//   (ASCII only by RFC 3464) carry non-ASCII addresses as RFC 6533 utf-8 xtext.
// - suppression_reason() is pure: it says why no DSN may be sent for a message, or nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "global/mail_header.hpp"

namespace mx::dsn {

struct recipient {
    std::string final_recipient;
    std::string original_recipient;  // empty: unknown
    std::string status;              // RFC 3463 "5.x.y"; anything else becomes 5.0.0
    std::string diagnostic;          // free text or an SMTP reply ("550 5.1.1 ...")
};

inline constexpr const char* default_subject = "Undelivered Mail Returned to Sender";
inline constexpr std::size_t default_size_limit = 50 * 1024;
// Placeholders: {hostname} {sender} {recipients} {subject} {message_id} {arrival_date}.
extern const char* const default_template;

struct input {
    std::string reporting_mta;  // the configured host name
    std::string from_address;   // empty: MAILER-DAEMON@<reporting_mta>
    std::string from_display = "Mail Delivery System";
    std::string to;  // the original envelope sender (must be is_sendable_address)
    std::string subject = default_subject;  // may contain {subject}
    std::string human_template = default_template;
    std::size_t size_limit = default_size_limit;
    std::int64_t arrival_time = 0;
    std::int64_t now = 0;
    std::vector<recipient> recipients;
    std::string_view original;  // the failed message's bytes; empty: not available
};

struct message {
    std::string bytes;
    std::string message_id;
    std::string boundary;
    bool headers_only = false;  // text/rfc822-headers instead of message/rfc822
};

message build(const input& in);

// RFC 3463 class 5 status, or "5.0.0".
std::string normalize_status(std::string_view s);
// "rfc822;a@b" or, for non-ASCII, "utf-8;..." with \x{HEX} escapes (RFC 6533).
std::string address_field(std::string_view addr);

// Why no DSN may go to `envelope_sender` for this message (RFC 3834, RFC 3464 2.?, RFC 5321
// 6.1), or nothing. Reasons are short English phrases used in logs and reason files.
std::optional<std::string> suppression_reason(std::string_view envelope_sender,
                                              const mail::header_block& headers);

}  // namespace mx::dsn
